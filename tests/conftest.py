"""Shared test helpers: tiny synthetic audio files."""

from __future__ import annotations

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


@pytest.fixture
def tone():
    return write_tone


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's cache out of the user's home."""
    monkeypatch.setenv("EMOLINGUA_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
