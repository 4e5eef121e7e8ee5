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
