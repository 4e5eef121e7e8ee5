"""The extraction loop: failures isolated to their clip, shared work between processes, threads per worker."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile as sf

from emolingua.features import get_extractor
from emolingua.features import extract as extract_mod
from emolingua.features.extract import _plan_workers, extract_to_store
from emolingua.features.store import FeatureStore

PROBE = '''
import os
import time
from dataclasses import dataclass
import numpy as np
from emolingua.features.base import ExtractorConfig, FeatureExtractor, Features, runtime

@dataclass(frozen=True)
class ProbeConfig(ExtractorConfig):
    loud: str = "ok"                 # a clip peaking over 0.5: "ok", "raise" (fails the whole batch) or "nan"
    delay: float = runtime(0.0)      # seconds per clip
    log: str = runtime("")           # one line per clip computed: "<pid> <threads>"

class Probe(FeatureExtractor):
    name = "test-probe"
    Config = ProbeConfig

    @property
    def streams(self):
        return ["raw"]

    def extract(self, clips):
        if self.config.loud == "raise" and any(np.abs(c).max() > 0.5 for c in clips):
            raise ValueError("input too loud for this model")
        out = []
        for c in clips:
            time.sleep(self.config.delay)
            if self.config.log:
                with open(self.config.log, "a") as f:
                    f.write(f"{os.getpid()} {self.config.threads}\\n")
            x = np.asarray(c, dtype=np.float64)
            pooled = np.array([[x.mean(), x.std()]], dtype=np.float32)
            if self.config.loud == "nan" and np.abs(x).max() > 0.5:
                pooled[0, 1] = np.nan
            out.append(Features(pooled=pooled))
        return out
'''


@pytest.fixture
def probe(extractor_module):
    return extractor_module("probe_extractor", PROBE, registers="test-probe")


@pytest.fixture
def files(tmp_path, tone):
    return [str(tone(tmp_path / "audio" / f"clip{i:02d}.wav", seconds=0.1 + 0.02 * i, seed=i)) for i in range(24)]


def _loud(path, *, peak, seconds=0.3):
    """A float WAV whose samples reach ``peak``, with the length of the clips around it."""
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(str(path), (peak * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="FLOAT")
    return str(path)


def _failure_rows(store, ex):
    return [json.loads(line) for line in (store.folder(ex) / "failures.jsonl").read_text().splitlines()]


# -- one clip's failure stays with that clip -------------------------------------------------------
@pytest.mark.parametrize(("mode", "reason"), [("raise", "input too loud"), ("nan", "NaN or infinite")])
def test_a_failing_clip_is_isolated_and_the_rest_of_its_batch_is_stored(tmp_path, files, probe, mode, reason):
    loud = _loud(tmp_path / "audio" / "loud.wav", peak=0.9)  # legal audio this model cannot take
    ex = probe.Probe(loud=mode)
    store = FeatureStore(root=tmp_path / "store")
    paths = [*files, loud]
    summary = extract_to_store(paths=paths, extractor=ex, store=store, batch_seconds=100, progress=False)
    assert (summary.done, summary.failed) == (24, 1)  # one batch of 25: 24 stored
    ((path, why),) = summary.failures
    assert path == loud and reason in why
    assert _failure_rows(store, ex) == [{"path": loud, "reason": why}]
    X, found = store.load_pooled(paths=paths, extractor=ex)
    assert found[:24].all() and not found[24] and np.isfinite(X[:24]).all()
    again = extract_to_store(paths=paths, extractor=ex, store=store, batch_seconds=100, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 24, 1)
    assert len(_failure_rows(store, ex)) == 1


@pytest.mark.parametrize("spec", ["probe", "mfcc"])
def test_absurd_float_amplitude_fails_that_file_only(tmp_path, files, probe, spec):
    huge = _loud(tmp_path / "audio" / "huge.wav", peak=1e19)
    ex = probe.Probe(loud="raise") if spec == "probe" else get_extractor("mfcc")
    store = FeatureStore(root=tmp_path / "store")
    paths = [*files[:6], huge, *files[6:12]]
    summary = extract_to_store(paths=paths, extractor=ex, store=store, batch_seconds=100, progress=False)
    assert summary.done == 12 and summary.failures == [(huge, summary.failures[0][1])]
    assert "absurd amplitude" in summary.failures[0][1]
    X, found = store.load_pooled(paths=paths, extractor=ex)
    assert found.sum() == 12 and not found[6] and np.isfinite(X[found]).all()
    rerun = extract_to_store(paths=paths, extractor=ex, store=store, batch_seconds=100, progress=False)
    assert (rerun.done, rerun.skipped, rerun.failed) == (0, 12, 1)


def test_a_failing_file_reached_by_two_paths_is_reported_under_both(tmp_path, files, probe):
    loud = _loud(tmp_path / "audio" / "loud.wav", peak=0.9)
    twin = tmp_path / "audio" / "loud_copy.wav"
    twin.write_bytes(open(loud, "rb").read())
    summary = extract_to_store(paths=[*files[:4], loud, str(twin)], extractor=probe.Probe(loud="raise"),
                               store=FeatureStore(root=tmp_path / "store"), progress=False)  # fmt: skip
    assert summary.done == 4 and sorted(p for p, _ in summary.failures) == sorted([loud, str(twin)])


# -- two processes on one store ---------------------------------------------------------------------
def test_two_processes_share_the_work(tmp_path, files, probe):
    store_dir, log, go = tmp_path / "store", tmp_path / "computed.log", tmp_path / "go"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        import probe_extractor
        from emolingua.features.extract import extract_to_store
        from emolingua.features.store import FeatureStore
        ex = probe_extractor.Probe(delay=0.04, log={str(log)!r})
        open(sys.argv[1], "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        s = extract_to_store(paths={files!r}, extractor=ex, store=FeatureStore(root={str(store_dir)!r}),
                             batch_seconds=0.6, progress=False)
        print(s.done, s.skipped, s.failed)
    """)
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(r)], stdout=subprocess.PIPE, text=True) for r in ready]
    deadline = time.time() + 60
    while not all(r.exists() for r in ready) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()  # both start extracting at the same moment
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    lines = log.read_text().splitlines()
    largest_batch = 5  # 0.6 s of clips of 0.1 s and more
    assert len(lines) <= 24 + largest_batch
    assert len({line.split()[0] for line in lines}) == 2  # both did part of it
    counts = [tuple(map(int, out.split())) for out in outs]
    assert sum(done for done, _, _ in counts) == len(lines)
    assert all(done + skipped == 24 and failed == 0 for done, skipped, failed in counts)
    ex = probe.Probe()
    store = FeatureStore(root=store_dir)
    assert sum(len(k) for k in store.shard_keys(extractor=ex).values()) <= 24 + largest_batch
    assert store.load_pooled(paths=files, extractor=ex)[1].all()
    assert not list((store.folder(ex) / "claims").glob("*.claim"))  # every claim released


# -- threads per worker -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("workers", "threads", "cores", "expected"),
    [(1, None, 8, (1, None)), (2, None, 8, (2, 4)), (3, None, 8, (3, 2)), (8, None, 2, (2, 1)),
     (2, 3, 8, (2, 3)), (4, None, 1, (1, None))],
)  # fmt: skip
def test_workers_never_oversubscribe_the_cores(workers, threads, cores, expected):
    assert _plan_workers(workers=workers, threads=threads, cores=cores) == expected


def test_threads_handed_to_worker_processes(tmp_path, files, probe, monkeypatch):
    monkeypatch.setattr(extract_mod, "_cores", lambda: 4, raising=False)
    log = tmp_path / "computed.log"
    store = FeatureStore(root=tmp_path / "store")
    summary = extract_to_store(paths=files, extractor=probe.Probe(log=str(log)), store=store, batch_seconds=0.6,
                               workers=2, progress=False)  # fmt: skip
    # a batch a sibling worker computed is done, not "skipped" (a fresh store skips nothing)
    assert (summary.done, summary.skipped) == (24, 0)
    lines = log.read_text().splitlines()
    assert len(lines) == 24 and {line.split()[1] for line in lines} == {"2"}  # 4 cores / 2 workers
    one = FeatureStore(root=tmp_path / "one")
    log.unlink()
    extract_to_store(paths=files[:3], extractor=probe.Probe(log=str(log)), store=one, progress=False)
    assert {line.split()[1] for line in log.read_text().splitlines()} == {"None"}  # the extractor decides


def test_workers_below_one_is_a_config_error(tmp_path, files, probe):
    with pytest.raises(ValueError, match="workers"):
        extract_to_store(paths=files, extractor=probe.Probe(), store=FeatureStore(root=tmp_path), workers=0)
