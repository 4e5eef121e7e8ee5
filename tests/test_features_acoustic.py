"""Acoustic extractors on synthetic audio: mfcc, logmel, and (when installed) ge2e, egemaps, compare."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from emolingua.errors import ConfigError
from emolingua.features import extractor_names, get_extractor, pool_frames
from emolingua.features.acoustic import LogMelConfig, MfccConfig, log_mel_frames, mfcc_frames

SR = 16000


def tone(freq: float = 500.0, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float = 1.0, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def voiced(seconds: float = 2.0, f0: float = 140.0, seed: int = 1) -> np.ndarray:
    """A crude vowel train: harmonics of a gliding f0, syllable-rate amplitude modulation, a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 + 20 * np.sin(2 * np.pi * 0.7 * t)) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 10)) * np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return (0.2 * x + 0.003 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def clips() -> list[np.ndarray]:
    """Clips of different lengths, so a batch really mixes lengths."""
    return [tone(440, 0.7), noise(1.3), voiced(2.1), tone(1000, 0.05)]


def assert_same(batch, single) -> None:
    assert len(batch) == len(single)
    for b, s in zip(batch, single):
        np.testing.assert_array_equal(b.pooled, s.pooled)
        assert (b.frames is None) == (s.frames is None)
        if b.frames is not None:
            assert b.frames.keys() == s.frames.keys()
            for k in b.frames:
                np.testing.assert_array_equal(b.frames[k], s.frames[k])


def test_registered():
    names = extractor_names()
    for name in ("mfcc", "logmel", "ge2e", "egemaps", "compare"):
        assert name in names


# -- mfcc / logmel ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "dim"),
    [("mfcc", {}, 24), ("mfcc", {"deltas": 1}, 48), ("mfcc", {"deltas": 2, "n_mfcc": 13}, 39),
     ("logmel", {}, 80), ("logmel", {"n_mels": 64}, 64)],
)  # fmt: skip
def test_frame_extractor_shapes(name, options, dim):
    ex = get_extractor(name, **options)
    assert ex.streams == [name]
    assert ex.dim == dim
    feats = ex.extract(clips())
    assert len(feats) == 4
    for f in feats:
        assert f.pooled.shape == (1, 2 * dim)
        assert f.pooled.dtype == np.float32
        assert np.isfinite(f.pooled).all()
        assert f.frames is None


def test_defaults_follow_the_paper():
    cfg = get_extractor("mfcc").config
    assert (cfg.n_mfcc, cfg.n_mels, cfg.win_length, cfg.hop_length, cfg.fft_size) == (24, 40, 400, 160, 512)
    assert get_extractor("logmel").config.n_mels == 80


@pytest.mark.parametrize("name", ["mfcc", "logmel"])
def test_batch_equals_single(name):
    ex = get_extractor(name, frames=True, frame_stride=2, **({"deltas": 2} if name == "mfcc" else {}))
    batch = ex.extract(clips())
    single = [ex.extract([c])[0] for c in clips()]
    assert_same(batch, single)
    assert_same(ex.extract(clips()), batch)  # deterministic


def test_pooled_is_mean_then_std_of_frames():
    x = voiced(1.5)
    cfg = MfccConfig(deltas=1)
    frames = mfcc_frames(x, cfg)
    assert frames.shape == (1 + len(x) // 160, 48)
    pooled = get_extractor("mfcc", deltas=1).extract([x])[0].pooled[0]
    np.testing.assert_array_equal(pooled, pool_frames(frames))
    np.testing.assert_allclose(pooled[:48], frames.astype(np.float64).mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(pooled[48:], frames.astype(np.float64).std(0), rtol=1e-5, atol=1e-4)


def test_tone_and_noise_differ_as_expected():
    ex = get_extractor("mfcc")
    p_tone, p_noise = (f.pooled[0] for f in ex.extract([tone(500, 2.0), noise(2.0)]))
    assert not np.allclose(p_tone, p_noise)
    # white noise has a flat spectrum: its cepstrum beyond c0 averages near zero; a tone's does not
    assert np.abs(p_noise[1:24]).max() < 3
    assert np.abs(p_tone[1:24]).max() > 10
    # noise fluctuates frame to frame
    assert p_noise[24:].min() > 1


def test_steady_tone_has_small_frame_std():
    # 500 Hz repeats every 32 samples, so every 160-sample hop sees the same window:
    # away from the padded edges the MFCCs are constant; noise's are not
    frames_tone = mfcc_frames(tone(500, 2.0), MfccConfig())[3:-3]
    frames_noise = mfcc_frames(noise(2.0), MfccConfig())[3:-3]
    assert frames_tone.std(0).max() < 0.05
    assert frames_noise.std(0).min() > 1


def test_frames_on_request_with_stride():
    x = voiced(1.0)
    n_frames = 1 + len(x) // 160
    full = get_extractor("logmel", frames=True).extract([x])[0]
    assert full.frames is not None and list(full.frames) == ["logmel"]
    assert full.frames["logmel"].shape == (n_frames, 80)
    assert full.frames["logmel"].dtype == np.float16
    np.testing.assert_array_equal(full.frames["logmel"], log_mel_frames(x, LogMelConfig()).astype(np.float16))
    strided = get_extractor("logmel", frames=True, frame_stride=3).extract([x])[0]
    assert strided.frames["logmel"].shape == ((n_frames + 2) // 3, 80)
    np.testing.assert_array_equal(strided.frames["logmel"], full.frames["logmel"][::3])
    np.testing.assert_array_equal(strided.pooled, full.pooled)  # the stride thins frames, not statistics
    m = get_extractor("mfcc", frames=True, frame_stride=4, deltas=2).extract([x])[0]
    assert m.frames["mfcc"].shape == ((n_frames + 3) // 4, 72)


def test_short_clip_still_gives_features():
    f = get_extractor("mfcc", deltas=2).extract([tone(300, 0.004)])[0]  # 64 samples: one frame
    assert f.pooled.shape == (1, 144) and np.isfinite(f.pooled).all()


def test_options_and_errors():
    with pytest.raises(ConfigError, match="unknown option"):
        get_extractor("mfcc", n_cepstra=13)
    with pytest.raises(ConfigError, match="unknown option"):
        get_extractor("logmel", n_mfcc=13)
    with pytest.raises(ConfigError):
        get_extractor("mfcc", n_mfcc=50)  # more than n_mels
    with pytest.raises(ConfigError):
        get_extractor("mfcc", deltas=3)
    with pytest.raises(ConfigError):
        get_extractor("logmel", frame_stride=0)
    with pytest.raises(ConfigError):
        get_extractor("logmel", fmax=9000)
    with pytest.raises(ConfigError):
        get_extractor("logmel", n_fft=256)  # shorter than the 400-sample window
    with pytest.raises(ValueError, match="empty"):
        get_extractor("mfcc").extract([tone(), np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match="mono"):
        get_extractor("logmel").extract([np.zeros((2, 1600), np.float32)])


def test_fingerprint_ignores_runtime_options():
    assert get_extractor("mfcc").fingerprint() == get_extractor("mfcc", threads=2).fingerprint()
    assert get_extractor("mfcc").fingerprint() != get_extractor("mfcc", n_mfcc=13).fingerprint()
    assert get_extractor("mfcc").fingerprint() != get_extractor("logmel").fingerprint()


# -- ge2e (optional extra `speaker`) -------------------------------------------------------------------


def _importorskip(module: str):
    with warnings.catch_warnings():  # resemblyzer imports a deprecated scipy namespace
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip(module)


@pytest.fixture(scope="module")
def ge2e():
    _importorskip("resemblyzer")
    return get_extractor("ge2e")


def test_ge2e_shape_and_norm(ge2e):
    assert ge2e.streams == ["ge2e"]
    feats = ge2e.extract([voiced(2.0), noise(1.0)])
    for f in feats:
        assert f.pooled.shape == (1, 256) and f.pooled.dtype == np.float32
        assert f.frames is None
        np.testing.assert_allclose(np.linalg.norm(f.pooled[0]), 1.0, atol=1e-5)
        assert (f.pooled >= 0).all()  # ReLU before the normalisation
    assert not np.allclose(feats[0].pooled, feats[1].pooled)


def test_ge2e_batch_equals_single(ge2e):
    batch = ge2e.extract(clips())
    assert_same(batch, [ge2e.extract([c])[0] for c in clips()])
    assert_same(ge2e.extract(clips()), batch)


def test_ge2e_edge_cases(ge2e):
    # webrtcvad finds no voice in a 220 Hz tone (it does in 440 Hz): the untrimmed clip is
    # embedded; silence and a 10 ms clip still give a vector
    assert len(ge2e.preprocess(tone(220, 1.0))) == SR
    assert len(ge2e.preprocess(voiced(1.0))) < SR  # trimmed to whole 30 ms VAD windows
    for x in (tone(220, 1.0), np.zeros(SR, np.float32), tone(440, 0.01)):
        f = ge2e.extract([x])[0]
        assert np.isfinite(f.pooled).all()
        np.testing.assert_allclose(np.linalg.norm(f.pooled[0]), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        ge2e.extract([np.zeros(0, np.float32)])
    untrimmed = get_extractor("ge2e", trim_silence=False)
    assert untrimmed.fingerprint() != ge2e.fingerprint()
    assert len(ge2e.model_identity()["weights_sha256"]) == 64
    with pytest.raises(ConfigError, match="unknown option"):
        get_extractor("ge2e", device="cuda")


# -- openSMILE (optional extra `opensmile`) -------------------------------------------------------------


@pytest.fixture(scope="module")
def smile():
    pytest.importorskip("opensmile")
    return {"egemaps": get_extractor("egemaps"), "compare": get_extractor("compare")}


@pytest.mark.parametrize(("name", "dim"), [("egemaps", 88), ("compare", 6373)])
def test_opensmile_dims(smile, name, dim):
    ex = smile[name]
    assert ex.streams == [name]
    assert "non-commercial" in ex.licence_note
    assert len(ex.feature_names) == dim
    feats = ex.extract(clips()[:3])
    for f in feats:
        assert f.pooled.shape == (1, dim) and f.pooled.dtype == np.float32
        assert np.isfinite(f.pooled).all()
    assert not np.allclose(feats[0].pooled, feats[2].pooled)
    assert_same(feats, [ex.extract([c])[0] for c in clips()[:3]])


def test_opensmile_short_clips(smile):
    short = tone(300, 0.03)  # 30 ms: openSMILE's 60 ms windows get no frame
    with pytest.raises(ValueError, match="pad_short"):
        smile["egemaps"].extract([short])
    f = get_extractor("egemaps", pad_short=True).extract([short])[0]
    assert f.pooled.shape == (1, 88) and np.isfinite(f.pooled).all()
    with pytest.raises(ConfigError, match="unknown option"):
        get_extractor("compare", feature_level="lld")
