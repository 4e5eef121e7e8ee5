"""The Whisper extractors: a tiny random ``WhisperModel`` in a tmp folder, and the real offline whisper-base."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from emolingua.errors import ConfigError, EmolinguaError, InputFileError, NotAvailableError, UnknownNameError  # noqa: E402
from emolingua.features import get_extractor  # noqa: E402
from emolingua.features import whisper as whisper_module  # noqa: E402
from emolingua.features.whisper import WINDOW_SAMPLES, PackedLinear, WhisperExtractor, log_mel  # noqa: E402

SR = 16000
D_MODEL = 64
LAYERS = 2


@pytest.fixture(scope="module")
def tiny(tiny_whisper) -> str:
    """Folder of a tiny random Whisper (80 mels, 1500 positions; conftest's ``tiny_whisper``)."""
    return tiny_whisper


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    return (0.3 * np.sin(2 * np.pi * (180 + 50 * seed) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


#: different lengths, odd and even numbers of mel frames
CLIPS = [_clip(s, i) for i, s in enumerate([1.3, 0.5, 2.07, 0.91])]


def _pool(states, n: int) -> np.ndarray:
    return np.stack([np.concatenate([s[0, :n].double().mean(0), s[0, :n].double().std(0, unbiased=False)])
                     for s in states])  # fmt: skip


def test_padded_matches_transformers(tiny):
    ex = get_extractor(f"whisper:{tiny}", input="padded", precision="fp32")
    assert isinstance(ex, WhisperExtractor)
    assert ex.streams == [f"layer{i}" for i in range(LAYERS + 1)]
    fe = transformers.WhisperFeatureExtractor.from_pretrained(tiny)
    encoder = transformers.WhisperModel.from_pretrained(tiny).eval().get_encoder()
    got = ex.extract(CLIPS[:2])
    for clip, feats in zip(CLIPS[:2], got):
        features = fe(clip, sampling_rate=SR, return_tensors="pt").input_features
        with torch.no_grad():
            states = encoder(features, output_hidden_states=True).hidden_states
        assert len(states) == LAYERS + 1
        want = _pool(states, (len(clip) // 160 + 1) // 2)
        assert feats.pooled.shape == (LAYERS + 1, 2 * D_MODEL)
        np.testing.assert_allclose(feats.pooled, want, atol=1e-4)


def test_log_mel_matches_feature_extractor(tiny):
    fe = transformers.WhisperFeatureExtractor.from_pretrained(tiny)
    filters = torch.from_numpy(np.asarray(fe.mel_filters, dtype=np.float32))
    for clip in CLIPS[:2]:
        want = fe(clip, sampling_rate=SR, return_tensors="np").input_features[0]
        got = log_mel(clip, filters, pad_to=WINDOW_SAMPLES).numpy()
        assert got.shape == want.shape == (80, 3000)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_fitted_batched_equals_single(tiny):
    ex = get_extractor(f"whisper:{tiny}", input="fitted", precision="fp32")
    batched = ex.extract(CLIPS)
    for clip, b in zip(CLIPS, batched):
        assert b.pooled.shape == (LAYERS + 1, 2 * D_MODEL) and np.isfinite(b.pooled).all()
        np.testing.assert_allclose(b.pooled, ex.extract([clip])[0].pooled, atol=1e-5)


def test_int8_batched_equals_single_exactly(tiny):
    ex = get_extractor(f"whisper:{tiny}", input="fitted", precision="int8")
    batched = ex.extract(CLIPS)
    fp32 = get_extractor(f"whisper:{tiny}", input="fitted", precision="fp32").extract(CLIPS)
    for clip, b, f in zip(CLIPS, batched, fp32):
        np.testing.assert_array_equal(b.pooled, ex.extract([clip])[0].pooled)
        assert np.abs(b.pooled - f.pooled).max() < 0.1 * np.abs(f.pooled).max()


def test_long_clip_is_windowed(tiny):
    clip = _clip(65.0, 5)
    ex = get_extractor(f"whisper:{tiny}", input="fitted", precision="fp32", frame_layers=(LAYERS,))
    feats = ex.extract([clip])[0]
    assert feats.pooled.shape == (LAYERS + 1, 2 * D_MODEL)
    assert np.isfinite(feats.pooled).all()
    # windows of 30 + 30 + 5 s: 1500 + 1500 + 250 encoder frames, nothing dropped
    assert feats.frames[f"layer{LAYERS}"].shape == (1500 + 1500 + 250, D_MODEL)
    padded = get_extractor(f"whisper:{tiny}", input="padded", precision="int8").extract([clip])[0]
    assert padded.pooled.shape == (LAYERS + 1, 2 * D_MODEL) and np.isfinite(padded.pooled).all()


def test_frames_and_stride(tiny):
    clip = CLIPS[2]
    n = (len(clip) // 160 + 1) // 2
    ex = get_extractor(f"whisper:{tiny}", input="fitted", precision="fp32", frame_layers=(0, LAYERS), frame_stride=4)
    feats = ex.extract([clip])[0]
    assert set(feats.frames) == {"layer0", f"layer{LAYERS}"}
    for frames in feats.frames.values():
        assert frames.dtype == np.float16 and frames.shape == (len(range(0, n, 4)), D_MODEL)
    full = get_extractor(f"whisper:{tiny}", input="fitted", precision="fp32", frame_layers=(1,)).extract([clip])[0]
    assert full.frames["layer1"].shape == (n, D_MODEL)
    np.testing.assert_allclose(full.frames["layer1"].astype(np.float64).mean(0), full.pooled[1, :D_MODEL], atol=2e-2)
    np.testing.assert_array_equal(full.pooled, feats.pooled)


def test_fitted_tiny_trailing_window(tiny):
    """A clip 100 samples longer than 30 s leaves a 100-sample last window; it must not crash."""
    clip = _clip(30.0, 9)
    clip = np.concatenate([clip, clip[:100]])
    feats = get_extractor(f"whisper:{tiny}", input="fitted", precision="fp32").extract([clip])[0]
    assert np.isfinite(feats.pooled).all()


def test_options_and_fingerprint(tiny):
    spec = f"whisper:{tiny}"
    base = get_extractor(spec).fingerprint()
    assert get_extractor(spec, threads=1, batch_frames=100).fingerprint() == base
    assert get_extractor(spec, input="padded").fingerprint() != base
    assert len({get_extractor(spec, precision=p).fingerprint() for p in ("fp32", "int8", "bf16")}) == 3
    with pytest.raises(ConfigError, match="unknown option no_such_option; known options: batch_frames, frame_layers"):
        get_extractor(spec, no_such_option=True)
    with pytest.raises(ConfigError, match="input='cropped'"):
        get_extractor(spec, input="cropped")
    with pytest.raises(ConfigError, match="needs an argument"):
        get_extractor("whisper")


def _fails_if_loaded(self):
    raise AssertionError("the weights were loaded to check an option")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"frame_layers": [99]}, r"whisper-base option frame_layers=\[99\]: layer 99 is out of range; valid layers are 0\.\.6"),
        ({"frame_layers": [-1]}, r"frame_layers=\[-1\]: layer -1 is out of range; valid layers are 0\.\.6"),
        ({"frame_stride": 0}, r"whisper-base option frame_stride=0: must be >= 1"),
        ({"frame_stride": "abc"}, r"whisper-base option frame_stride='abc': expected an integer, got str"),
        ({"frame_layers": ["x"]}, r"frame_layers=\['x'\]: expected a list of integers"),
        ({"precision": "fp16"}, r"whisper-base option precision='fp16': must be auto, bf16, fp32, int8"),
        ({"batch_frames": 0}, r"batch_frames=0: must be >= 1"),
        ({"threads": 1.5}, r"threads=1.5: expected an integer or nothing"),
    ],
)
def test_bad_options_fail_when_read(monkeypatch, options, message):
    """Rejected by get_extractor itself, with one line naming option, value and range; no weights loaded."""
    monkeypatch.setattr(WhisperExtractor, "_load", _fails_if_loaded)
    monkeypatch.setattr("emolingua.features.whisper_convert.whisper_base_dir", _fails_if_loaded)
    with pytest.raises(ConfigError, match=message) as caught:
        get_extractor("whisper-base", **options)
    assert "\n" not in str(caught.value)
    assert get_extractor("whisper-base", frame_layers=[0, 6], frame_stride=2).config.frame_layers == (0, 6)


def test_layer_range_of_a_folder_comes_from_its_config(tiny, monkeypatch):
    monkeypatch.setattr(WhisperExtractor, "_load", _fails_if_loaded)
    with pytest.raises(ConfigError, match=rf"frame_layers=\[{LAYERS + 1}\]: .* valid layers are 0\.\.{LAYERS}"):
        get_extractor(f"whisper:{tiny}", frame_layers=[LAYERS + 1])


def test_unknown_extractor():
    with pytest.raises(UnknownNameError, match="unknown extractor 'whisper-huge'; known extractors: .*whisper-base") as caught:
        get_extractor("whisper-huge")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, EmolinguaError)
    assert str(caught.value).startswith("unknown extractor")  # not quoted as KeyError would


def test_missing_folder_and_offline_hub(tmp_path, monkeypatch):
    with pytest.raises(InputFileError, match=f"no model folder at {tmp_path / 'missing'}"):
        get_extractor(f"whisper:{tmp_path / 'missing'}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(NotAvailableError, match="not available offline .* whisper:/path/to/folder") as caught:
        get_extractor("whisper:emolingua-tests/never-cached-whisper")
    assert time.monotonic() - start < 5 and "\n" not in str(caught.value)


def test_unreachable_hub_fails_fast(monkeypatch):
    """Without offline mode: a hub that does not answer is given up after one quick probe, not 25 s of retries."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(NotAvailableError, match="not available offline"):
        get_extractor("whisper:emolingua-tests/never-cached-whisper")
    assert time.monotonic() - start < 5


def test_loading_is_quiet(tiny, capfd):
    """No "Loading weights" bars or deprecation warnings from transformers / torch while loading."""
    import transformers.utils.logging as tf_logging

    verbosity = tf_logging.get_verbosity()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for precision in ("fp32", "int8", "bf16"):
            get_extractor(f"whisper:{tiny}", precision=precision).extract(CLIPS[:1])
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err
    assert [str(w.message) for w in caught] == []
    assert tf_logging.get_verbosity() == verbosity  # silenced while loading only


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_bf16_close_to_fp32(tiny):
    fp32 = np.stack([f.pooled for f in get_extractor(f"whisper:{tiny}", precision="fp32").extract(CLIPS)])
    bf16 = np.stack([f.pooled for f in get_extractor(f"whisper:{tiny}", precision="bf16").extract(CLIPS)])
    assert np.isfinite(bf16).all() and not np.array_equal(bf16, fp32)  # bf16 did run
    assert np.abs(bf16 - fp32).mean() / np.abs(fp32).mean() < 0.01
    assert _cosines(bf16, fp32).min() > 0.99  # every clip, every layer


def test_bf16_weights_cast_once(tiny):
    ex = get_extractor(f"whisper:{tiny}", precision="bf16")
    enc = ex._load()
    linears = [m for m in enc.modules() if isinstance(m, PackedLinear)]
    assert len(linears) == 6 * LAYERS and all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert not any(isinstance(m, torch.nn.Linear) for m in enc.modules())
    assert enc.conv1.weight.dtype == enc.conv2.weight.dtype == torch.bfloat16
    norms = [m for m in enc.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    assert ex._load() is enc


def test_bf16_batched_equals_single(tiny):
    ex = get_extractor(f"whisper:{tiny}", precision="bf16")
    batched = ex.extract(CLIPS)
    for clip, b in zip(CLIPS, batched):
        single = ex.extract([clip])[0].pooled
        np.testing.assert_allclose(b.pooled, single, rtol=2e-2, atol=2e-2 * np.abs(single).max())
        assert _cosines(b.pooled, single).min() > 0.9999


@pytest.mark.parametrize("flags, resolved", [({"avx512_bf16", "avx2"}, "bf16"), ({"amx_bf16"}, "bf16"),
                                             ({"avx2", "avx512f"}, "fp32"), (set(), "fp32")])  # fmt: skip
def test_default_precision_follows_the_cpu(tiny, monkeypatch, flags, resolved):
    monkeypatch.setattr(whisper_module, "_cpu_flags", lambda: frozenset(flags))
    ex = get_extractor(f"whisper:{tiny}")
    assert ex.config.precision == resolved == ex.identity()["options"]["precision"]
    assert ex.fingerprint() == get_extractor(f"whisper:{tiny}", precision=resolved).fingerprint()
    assert get_extractor(f"whisper:{tiny}", precision="auto").fingerprint() == ex.fingerprint()


def test_whisper_base_offline(capfd):
    """The real multilingual base model, converted from the PyPI CTranslate2 copy (cached per session)."""
    ex = get_extractor("whisper-base", input="fitted", precision="fp32")
    clips = [_clip(1.0, 1), _clip(2.3, 2), _clip(0.6, 3)]
    batched = ex.extract(clips)
    assert "%|" not in capfd.readouterr().err  # no "Writing model shards" / "Loading weights" bars
    assert ex.streams == [f"layer{i}" for i in range(7)]
    for clip, b in zip(clips, batched):
        assert b.pooled.shape == (7, 1024) and np.isfinite(b.pooled).all()
        np.testing.assert_allclose(b.pooled, ex.extract([clip])[0].pooled, rtol=5e-5, atol=1e-4)
    assert "weights_sha256" in ex.model_identity()
    # bf16 on the real weights (the tiny random model barely moves in bf16): close to fp32 on every layer
    bf16 = get_extractor("whisper-base", input="fitted", precision="bf16").extract(clips)
    want, got = np.stack([b.pooled for b in batched]), np.stack([b.pooled for b in bf16])
    assert np.abs(got - want).mean() / np.abs(want).mean() < 0.02
    assert _cosines(got, want).min() > 0.99


def test_up_to_stops_the_encoder_with_the_same_numbers_below(tiny):
    ex = get_extractor(f"whisper:{tiny}", precision="fp32")
    full = ex.extract(CLIPS)
    early = ex.extract(CLIPS, up_to=1)
    for f, e in zip(full, early):
        assert e.pooled.shape == f.pooled.shape
        np.testing.assert_array_equal(e.pooled[:2], f.pooled[:2])
        assert np.isnan(e.pooled[2:]).all()
    with pytest.raises(ConfigError, match="up_to=3: hidden states are 0..2"):
        ex.extract(CLIPS, up_to=3)
    with pytest.raises(ConfigError, match="below frame_layers"):
        get_extractor(f"whisper:{tiny}", precision="fp32", frame_layers=(2,)).extract(CLIPS, up_to=1)
