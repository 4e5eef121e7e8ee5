"""The ``hf`` extractor on tiny randomly initialised wav2vec2 / WavLM / HuBERT models (no hub access)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from emolingua.errors import ConfigError, InputFileError, NotAvailableError  # noqa: E402
from emolingua.features import extractor_names, get_extractor  # noqa: E402
from emolingua.features.hf import HFExtractor, _windows  # noqa: E402

SR = 16000
HIDDEN = 32
LAYERS = 2
#: wav2vec2's real convolution geometry (320 samples per frame, 400 receptive field), tiny widths.
CONV = dict(conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))
COMMON = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=64,
              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, **CONV)  # fmt: skip


def _configs() -> dict:
    t = transformers
    return {
        "wav2vec2-group": (t.Wav2Vec2Config(feat_extract_norm="group", **COMMON), False),
        "wavlm-layer": (t.WavLMConfig(feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=32,
                                      max_bucket_distance=100, **COMMON), True),  # fmt: skip
        "hubert-group": (t.HubertConfig(feat_extract_norm="group", **COMMON), False),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """Folder of each tiny model (weights + config + preprocessor config)."""
    out = {}
    for i, (name, (cfg, layer_norm)) in enumerate(_configs().items()):
        torch.manual_seed(i)
        folder = tmp_path_factory.mktemp(name)
        transformers.AutoModel.from_config(cfg).save_pretrained(folder)
        transformers.Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True, return_attention_mask=layer_norm
        ).save_pretrained(folder)
        out[name] = str(folder)
    return out


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    return (0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


#: different lengths, two of them equal (group-norm models batch those), one shorter than a frame
CLIPS = [_clip(s, i) for i, s in enumerate([0.9, 0.35, 1.6, 0.9, 0.01])]


def _reference(folder: str, clip: np.ndarray) -> np.ndarray:
    """Pooled stats straight from transformers, one clip, no padding."""
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    x = fe(clip, sampling_rate=SR, return_tensors="pt").input_values
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    states = list(out.hidden_states[:-1]) + [out.last_hidden_state]
    return np.stack([np.concatenate([s[0].double().mean(0), s[0].double().std(0, unbiased=False)]) for s in states])


@pytest.mark.parametrize("name", list(_configs()))
def test_shapes_streams_and_batching(models, name):
    ex = get_extractor(f"hf:{models[name]}", precision="fp32")
    assert isinstance(ex, HFExtractor)
    assert ex.n_states == LAYERS + 1
    assert ex.streams == [f"layer{i}" for i in range(LAYERS + 1)]
    assert ex.batches_with_mask is _configs()[name][1]
    batched = ex.extract(CLIPS)
    single = [ex.extract([c])[0] for c in CLIPS]
    for b, s in zip(batched, single):
        assert b.pooled.shape == (LAYERS + 1, 2 * HIDDEN) and b.pooled.dtype == np.float32
        assert b.frames is None
        assert np.isfinite(b.pooled).all()
        np.testing.assert_allclose(b.pooled, s.pooled, atol=1e-5)
    # equals transformers' own forward of the clip alone
    np.testing.assert_allclose(single[2].pooled, _reference(models[name], CLIPS[2]), atol=1e-5)


def test_a_thread_cap_is_undone_after_extraction(models):
    before = torch.get_num_threads()
    get_extractor(f"hf:{models['wav2vec2-group']}", threads=1).extract(CLIPS[:1])
    assert torch.get_num_threads() == before  # the caller's setting, not the extractor's


def test_groups_follow_the_batching_rule(models):
    lengths = [400, 800, 800, 1200]
    group_norm = get_extractor(f"hf:{models['wav2vec2-group']}", precision="fp32")
    assert group_norm._groups(lengths) == [[0], [1, 2], [3]]
    masked = get_extractor(f"hf:{models['wavlm-layer']}", precision="fp32")
    assert masked._groups(lengths) == [[0, 1, 2, 3]]
    assert get_extractor(f"hf:{models['wavlm-layer']}", precision="fp32", batch_seconds=0.1)._groups(lengths) == [
        [0, 1], [2], [3]]  # fmt: skip
    assert get_extractor(f"hf:{models['wavlm-layer']}", precision="int8")._groups(lengths) == [[0], [1], [2], [3]]


def test_windows_split_evenly():
    assert _windows(100, 100) == [(0, 100)]
    assert _windows(0, 100) == [(0, 0)]
    w = _windows(70 * SR, 30 * SR)
    assert len(w) == 3 and w[0] == (0, w[0][1]) and w[-1][1] == 70 * SR
    assert all(b[0] == a[1] for a, b in zip(w, w[1:]))  # contiguous: nothing dropped
    assert max(b - a for a, b in w) <= 30 * SR


def test_long_clip_is_windowed(models):
    ex = get_extractor(f"hf:{models['wavlm-layer']}", precision="fp32", frame_layers=(LAYERS,))
    clip = _clip(70.0, 7)
    feats = ex.extract([clip])[0]
    assert feats.pooled.shape == (LAYERS + 1, 2 * HIDDEN)
    assert np.isfinite(feats.pooled).all()
    # all three windows' frames are there
    expected = sum(ex.n_frames(b - a) for a, b in _windows(len(clip), 30 * SR))
    assert feats.frames[f"layer{LAYERS}"].shape == (expected, HIDDEN)
    assert expected > ex.n_frames(30 * SR) * 2


def test_frames_on_request(models):
    ex = get_extractor(f"hf:{models['hubert-group']}", precision="fp32", frame_layers=(0, LAYERS), frame_stride=3)
    clip = CLIPS[2]
    feats = ex.extract([clip])[0]
    n = ex.n_frames(len(clip))
    assert set(feats.frames) == {"layer0", f"layer{LAYERS}"}
    for frames in feats.frames.values():
        assert frames.dtype == np.float16 and frames.shape == (len(range(0, n, 3)), HIDDEN)
    full = get_extractor(f"hf:{models['hubert-group']}", precision="fp32", frame_layers=(1,)).extract([clip])[0]
    frames = full.frames["layer1"].astype(np.float64)
    assert frames.shape == (n, HIDDEN)
    np.testing.assert_allclose(frames.mean(0), full.pooled[1, :HIDDEN], atol=2e-2)
    np.testing.assert_array_equal(full.pooled, feats.pooled)  # frames do not change the pooled stats
    with pytest.raises(ConfigError, match=rf"frame_layers=\[{LAYERS + 1}\]: .* valid layers are 0\.\.{LAYERS}"):
        get_extractor(f"hf:{models['hubert-group']}", frame_layers=(LAYERS + 1,))  # before any weights are loaded


@pytest.mark.parametrize("name", ["wav2vec2-group", "wavlm-layer"])
def test_int8(models, name):
    fp32 = get_extractor(f"hf:{models[name]}", precision="fp32").extract(CLIPS[:3])
    ex = get_extractor(f"hf:{models[name]}", precision="int8")
    int8 = ex.extract(CLIPS[:3])
    for a, b in zip(int8, fp32):
        assert a.pooled.shape == b.pooled.shape and np.isfinite(a.pooled).all()
        scale = np.abs(b.pooled).max()
        assert np.abs(a.pooled - b.pooled).max() < 0.1 * scale
    # one sequence per pass: batching cannot change a thing
    for a, clip in zip(int8, CLIPS[:3]):
        np.testing.assert_array_equal(a.pooled, ex.extract([clip])[0].pooled)


def test_fallback_feature_extractor(models, tmp_path):
    """Without preprocessor_config.json: Wav2Vec2FeatureExtractor, do_normalize on for layer-norm models."""
    folder = tmp_path / "bare"
    shutil.copytree(models["wavlm-layer"], folder)
    (folder / "preprocessor_config.json").unlink()
    ex = get_extractor(f"hf:{folder}", precision="fp32")
    got = ex.extract(CLIPS[:2])
    assert ex._fe.do_normalize is True and ex._fe.sampling_rate == SR
    want = get_extractor(f"hf:{models['wavlm-layer']}", precision="fp32").extract(CLIPS[:2])
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.pooled, b.pooled)
    raw = get_extractor(f"hf:{folder}", precision="fp32", normalize=False).extract(CLIPS[:1])[0]
    assert not np.allclose(raw.pooled, got[0].pooled)


def test_fingerprint(models, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(models["wav2vec2-group"], folder)
    spec = f"hf:{folder}"
    base = get_extractor(spec).fingerprint()
    assert get_extractor(spec).fingerprint() == base
    # runtime options do not change the features
    assert get_extractor(spec, threads=1, batch_seconds=5.0).fingerprint() == base
    # options that do
    others = {
        get_extractor(spec, precision="int8").fingerprint(),
        get_extractor(spec, frame_layers=(1,)).fingerprint(),
        get_extractor(spec, frame_layers=(1,), frame_stride=2).fingerprint(),
        get_extractor(spec, max_seconds_per_window=10.0).fingerprint(),
        get_extractor(spec, normalize=False).fingerprint(),
    }
    assert len(others) == 5 and base not in others
    ident = get_extractor(spec).model_identity()
    assert "model.safetensors" in ident["files_sha256"] and "config.json" in ident["files_sha256"]
    # other weights in the same folder: another fingerprint
    torch.manual_seed(123)
    transformers.AutoModel.from_config(_configs()["wav2vec2-group"][0]).save_pretrained(folder)
    assert get_extractor(spec).fingerprint() != base


def test_errors(models, tmp_path):
    with pytest.raises(ConfigError, match="needs an argument"):
        get_extractor("hf")
    with pytest.raises(ConfigError, match="unknown option no_such_option; known options: batch_seconds, frame_layers"):
        get_extractor(f"hf:{models['wavlm-layer']}", no_such_option=1)
    with pytest.raises(ConfigError, match="precision='fp16': must be fp32 or int8"):
        get_extractor(f"hf:{models['wavlm-layer']}", precision="fp16")
    with pytest.raises(ConfigError, match="frame_stride=0: must be >= 1"):
        get_extractor(f"hf:{models['wavlm-layer']}", frame_stride=0)
    missing = tmp_path / "missing" / "folder"
    with pytest.raises(InputFileError, match=f"hf:{missing}: no model folder at {missing}"):
        get_extractor(f"hf:{missing}")
    assert "hf:<hub id or folder>" in extractor_names()
    assert get_extractor(f"hf:{models['wavlm-layer']}").extract([]) == []


def test_hub_id_offline_is_one_quick_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(NotAvailableError, match="not available offline .* hf:/path/to/folder") as caught:
        get_extractor("hf:emolingua-tests/never-cached-wav2vec2")
    assert time.monotonic() - start < 5 and "\n" not in str(caught.value)
