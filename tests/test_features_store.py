"""The feature store and the resumable extraction run: atomic shards, checksums, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from emolingua.features.base import _REGISTRY
from emolingua.features.extract import extract_to_store
from emolingua.features.store import FeatureStore, content_key

FAKE = '''
import time
from dataclasses import dataclass
import numpy as np
from emolingua.features.base import ExtractorConfig, FeatureExtractor, Features

@dataclass(frozen=True)
class FakeConfig(ExtractorConfig):
    scale: float = 1.0
    delay: float = 0.0

class Fake(FeatureExtractor):
    """Pooled stats of the raw samples, with an optional delay per clip."""
    name = "test-fake"
    Config = FakeConfig

    @property
    def streams(self):
        return ["raw"]

    def extract(self, clips):
        out = []
        for c in clips:
            time.sleep(self.config.delay)
            x = np.asarray(c, dtype=np.float64)[:, None] * self.config.scale
            out.append(Features(pooled=np.concatenate([x.mean(0), x.std(0)])[None].astype(np.float32)))
        return out
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    module = tmp_path / "fake_extractor.py"
    module.write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import fake_extractor  # noqa: F401  (registers "test-fake")

    yield fake_extractor
    _REGISTRY.pop("test-fake", None)
    sys.modules.pop("fake_extractor", None)


@pytest.fixture
def files(tmp_path, tone):
    return [str(tone(tmp_path / "audio" / f"clip{i:02d}.wav", seconds=0.1 + 0.02 * i, seed=i)) for i in range(24)]


def _stats(path):
    import soundfile as sf

    x, _ = sf.read(path, dtype="float32")
    x = x.astype(np.float64)
    return np.array([x.mean(), x.std()], dtype=np.float32)


def test_extract_then_load_aligned(tmp_path, files, fake):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    summary = extract_to_store(paths=files, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (24, 0, 0)
    assert summary.disk_bytes > 0 and summary.audio_seconds == pytest.approx(sum(0.1 + 0.02 * i for i in range(24)), abs=0.01)
    X, found = store.load_pooled(paths=files[::-1] + [str(tmp_path / "missing.wav")], extractor=ex)
    assert X.shape == (25, 1, 2) and found[:24].all() and not found[24] and np.isnan(X[24]).all()
    assert np.allclose(X[0, 0], _stats(files[-1]), atol=1e-6)
    again = extract_to_store(paths=files, extractor=ex, store=store, progress=False)
    assert (again.done, again.skipped) == (0, 24)


def test_options_key_the_store_but_runtime_options_do_not(tmp_path, fake):
    assert fake.Fake(scale=2.0).fingerprint() != fake.Fake().fingerprint()
    assert fake.Fake(threads=1).fingerprint() == fake.Fake(threads=2).fingerprint()


def test_failures_are_listed_and_the_run_goes_on(tmp_path, files, fake):
    bad = tmp_path / "audio" / "broken.wav"
    bad.write_text("not audio")
    store = FeatureStore(root=tmp_path / "store")
    summary = extract_to_store(paths=[*files, str(bad), str(tmp_path / "gone.wav")], extractor=fake.Fake(), store=store,
                               progress=False)  # fmt: skip
    assert summary.done == 24 and summary.failed == 2
    reasons = dict(summary.failures)
    assert "not readable" in reasons[str(bad)] and "not found" in reasons[str(tmp_path / "gone.wav")]
    assert store.info()[0].failures == 1  # decode failures are recorded beside the features


def test_damaged_shard_is_detected_and_recomputed(tmp_path, files, fake):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files, extractor=ex, store=store, batch_seconds=0.5, progress=False)
    shard = sorted((store.folder(ex) / "shards").glob("*.npz"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged"):
        n_ok = len(store.keys(extractor=ex))
    assert n_ok < 24 and shard.with_suffix(".damaged").exists()
    rerun = extract_to_store(paths=files, extractor=ex, store=store, progress=False)
    assert rerun.done == 24 - n_ok
    X, found = store.load_pooled(paths=files, extractor=ex)
    assert found.all() and np.allclose(X[:, 0], np.stack([_stats(f) for f in files]), atol=1e-6)


def test_partial_files_are_invisible_to_readers(tmp_path, files, fake):
    ex = fake.Fake()
    store = FeatureStore(root=tmp_path / "store")
    extract_to_store(paths=files[:3], extractor=ex, store=store, progress=False)
    (store.folder(ex) / "shards" / ".abc-123.npz.tmp").write_bytes(b"PK\x03\x04 half written")
    assert len(store.keys(extractor=ex)) == 3


def test_kill_minus_9_loses_at_most_the_batch_in_flight(tmp_path, files, fake):
    store_dir = tmp_path / "store"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import fake_extractor
        from emolingua.features.extract import extract_to_store
        from emolingua.features.store import FeatureStore
        extract_to_store(paths={files!r}, extractor=fake_extractor.Fake(delay=0.05),
                         store=FeatureStore(root={str(store_dir)!r}), batch_seconds=0.4, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    shards = store_dir
    deadline = time.time() + 60
    while time.time() < deadline and len(list(shards.rglob("*.npz"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ex = fake.Fake(delay=0.05)
    store = FeatureStore(root=store_dir)
    survived = store.keys(extractor=ex)
    assert 0 < len(survived) < 24
    rerun = extract_to_store(paths=files, extractor=ex, store=store, progress=False)
    assert rerun.skipped == len(survived) and rerun.done == 24 - len(survived)
    X, found = store.load_pooled(paths=files, extractor=ex)
    clean = FeatureStore(root=tmp_path / "clean")
    extract_to_store(paths=files, extractor=ex, store=clean, progress=False)
    Y, _ = clean.load_pooled(paths=files, extractor=ex)
    assert found.all() and np.array_equal(X, Y)


def test_content_key_follows_content_not_name(tmp_path, tone):
    a = tone(tmp_path / "a.wav", seed=1)
    b = tmp_path / "b.wav"
    b.write_bytes(a.read_bytes())
    c = tone(tmp_path / "c.wav", seed=2)
    assert content_key(a) == content_key(b) != content_key(c)
