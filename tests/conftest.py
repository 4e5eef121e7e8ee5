"""Shared test helpers: tiny synthetic audio files, importable test extractors."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def write_tone(path: Path, *, seconds: float = 0.2, rate: int = 16000, channels: int = 1, subtype: str | None = None,
               format: str | None = None, seed: int = 0) -> Path:  # fmt: skip
    """Write a short tone plus noise; the folder is created."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(len(t))
    data = np.repeat(x[:, None], channels, axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype, format=format)
    return path


def write_voice(path: Path, f0: float, seed: int, *, seconds: float = 0.5) -> Path:
    """Write a voiced-like harmonic tone at ``f0`` Hz plus a little noise (16 kHz); the folder is created."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 4)) * 0.2 + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), 16000)
    return path


#: ravdess codes neutral, happy, sad, angry and EmoDB letters, each with a pitch: a learnable toy task
PITCH = {"01": 120.0, "03": 260.0, "04": 90.0, "05": 330.0}
EMODB = {"N": 120.0, "F": 260.0, "T": 90.0, "W": 330.0}


def write_two_corpora(root: Path) -> Path:
    """A tiny RAVDESS (4 actors) and EmoDB (4 speakers) whose emotions differ in pitch: 64 clips."""
    seed = 0
    for actor in range(1, 5):
        for code, f0 in PITCH.items():
            for st in ("01", "02"):
                seed += 1
                write_voice(root / "ravdess" / f"Actor_{actor:02d}" / f"03-01-{code}-01-{st}-01-{actor:02d}.wav",
                            f0 * (1 + 0.03 * actor), seed)  # fmt: skip
    for spk in ("03", "08", "09", "10"):
        for letter, f0 in EMODB.items():
            for text in ("a01", "b02"):
                seed += 1
                write_voice(root / "emodb" / "wav" / f"{spk}{text}{letter}a.wav", f0 * (1 + 0.02 * int(spk) / 10), seed)
    return root


def speechlike(seconds: float, *, seed: int = 0, rate: int = 16000, f0: float = 120.0) -> np.ndarray:
    """Syllable-like audio silero-vad takes for speech: voiced stretches of 120-300 ms (a sawtooth
    at a varying pitch through three formant resonators), some after a fricative-like noise burst,
    with short gaps; a little noise throughout."""
    import scipy.signal as ss

    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    out = np.zeros(n)
    vowels = [(700, 1200, 2600), (300, 2300, 3000), (500, 900, 2500), (400, 1900, 2600), (600, 1000, 2400)]
    i, phase = 0, 0.0
    while i < n:
        if rng.random() < 0.4:
            burst = int(rng.uniform(0.04, 0.08) * rate)
            b, a = ss.butter(2, [3000, 7000], btype="band", fs=rate)
            noise = 0.15 * ss.lfilter(b, a, rng.standard_normal(burst))
            out[i : i + burst] += noise[: max(0, min(burst, n - i))]
            i += burst
        m = min(int(rng.uniform(0.12, 0.3) * rate), n - i)
        if m <= 0:
            break
        t = np.arange(m) / rate
        pitch = f0 * rng.uniform(0.85, 1.25) * (1 + rng.uniform(-0.2, 0.2) * t / max(t[-1], 1e-3))
        ph = phase + 2 * np.pi * np.cumsum(pitch) / rate
        phase = ph[-1]
        voiced = np.zeros(m)
        for f in vowels[rng.integers(len(vowels))]:
            b, a = ss.iirpeak(f, 6, fs=rate)
            voiced += ss.lfilter(b, a, ss.sawtooth(ph))
        out[i : i + m] += voiced / max(np.abs(voiced).max(), 1e-9) * np.hanning(m) ** 0.5 * rng.uniform(0.5, 1.0)
        i += m + int(rng.uniform(0.02, 0.08) * rate)
    return (0.3 * out / max(np.abs(out).max(), 1e-9) + 0.003 * rng.standard_normal(n)).astype(np.float32)


def talk(pattern: list[tuple[str, float]], *, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """Speech and silence in turns, e.g. ``[("silence", 1.0), ("speech", 2.0)]``."""
    rng = np.random.default_rng(seed)
    parts = [speechlike(sec, seed=seed + i, rate=rate) if kind == "speech"
             else (0.001 * rng.standard_normal(int(sec * rate))).astype(np.float32)
             for i, (kind, sec) in enumerate(pattern)]  # fmt: skip
    return np.concatenate(parts)


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> str:
    """Folder of a tiny random Whisper (d_model 64, 2 encoder layers, 80 mels) with its feature extractor."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.WhisperConfig(
        d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=128, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=32, vocab_size=100, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1, begin_suppress_tokens=None, suppress_tokens=None,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-whisper")
    transformers.WhisperModel(cfg).save_pretrained(folder)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory, tiny_whisper) -> Path:
    """A pipeline folder trained by ``train_pipeline`` on 48 synthetic clips of 4 "emotions" (pitch
    differs by class) from 8 speakers, on the tiny Whisper's features: emotion, arousal, valence."""
    import pandas as pd

    from emolingua.train import TrainConfig, train_pipeline

    root = tmp_path_factory.mktemp("tiny-corpus")
    labels = ["angry", "happy", "neutral", "sad"]
    rows = []
    for spk in range(8):
        for k, label in enumerate(labels):
            for take in range(2):
                seed = spk * 100 + k * 10 + take
                path = root / f"s{spk}_{label}_{take}.wav"
                sf.write(path, speechlike(0.8 + 0.1 * take, seed=seed, f0=90 + 40 * k + 5 * spk), 16000)
                rows.append({"path": str(path), "corpus": "toy", "speaker": f"s{spk}", "language": "xx",
                             "label": label, "arousal": [0.9, 0.7, 0.5, 0.3][k], "valence": [0.2, 0.8, 0.5, 0.2][k]})
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    store = tmp_path_factory.mktemp("tiny-store")
    cfg = TrainConfig(corpora=str(manifest), output=str(tmp_path_factory.mktemp("pipe") / "toy"),
                      features=f"whisper:{tiny_whisper}", feature_options={"precision": "fp32"},
                      model_options={"C": [0.1, 1.0]}, valid_fraction=0.25, store=str(store))  # fmt: skip
    return train_pipeline(cfg, progress=False)


@pytest.fixture
def tone():
    return write_tone


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's cache out of the user's home."""
    monkeypatch.setenv("EMOLINGUA_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def extractor_module(tmp_path, monkeypatch):
    """Write a test extractor's source as an importable module and import it.

    Spawned worker processes must import the extractor class by module name, so it cannot be
    defined inside the test file. Its registry entry and module are removed afterwards.
    """
    from emolingua.features.base import _REGISTRY

    made: list[tuple[str, str]] = []

    def make(name: str, source: str, *, registers: str):
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        made.append((name, registers))
        return importlib.import_module(name)

    yield make
    for name, registered in made:
        _REGISTRY.pop(registered, None)
        sys.modules.pop(name, None)
