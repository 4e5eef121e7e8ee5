"""Extraction and benchmark fold jobs on Ray: identical to a local run, retried, resumable.

One Ray cluster serves the whole module: a head and a second node of 1 CPU each, both on
127.0.0.1 (no traffic leaves the machine), with this process connected as the driver; it is
shut down at the end. Ray's own addresses stay on the loopback because Ray is told, as on a
laptop, not to look for the machine's network address (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import write_two_corpora
from typer.testing import CliRunner

from emolingua.benchmark import BenchmarkConfig, run_benchmark
from emolingua.cli import app
from emolingua.config import fingerprint
from emolingua.errors import ConfigError
from emolingua.executors import RAY_RETRIES
from emolingua.features import get_extractor
from emolingua.features.extract import extract_to_store
from emolingua.features.store import FeatureStore

LOOPBACK = "127.0.0.1"

PROBE = '''
import os
import signal
import time
from dataclasses import dataclass
import numpy as np
from emolingua.features.base import ExtractorConfig, FeatureExtractor, Features, runtime

@dataclass(frozen=True)
class RayProbeConfig(ExtractorConfig):
    loud: str = "ok"             # a clip peaking over 0.5: "ok", or "garbled": features that are no
                                 # features (an extractor bug that no clip-by-clip retry isolates)
    log: str = runtime("")       # one line per call: "<pid> <clips> <loud clips>"
    die_once: str = runtime("")  # marker file: the first call with a loud clip creates it, then SIGKILLs its process
    delay: float = runtime(0.0)  # seconds per clip

class RayProbe(FeatureExtractor):
    name = "ray-probe"
    Config = RayProbeConfig

    @property
    def streams(self):
        return ["raw"]

    def extract(self, clips):
        loud = sum(float(np.abs(c).max()) > 0.5 for c in clips)
        if self.config.log:
            with open(self.config.log, "a") as f:
                f.write(f"{os.getpid()} {len(clips)} {loud}\\n")
        if loud and self.config.die_once and not os.path.exists(self.config.die_once):
            open(self.config.die_once, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        time.sleep(self.config.delay * len(clips))
        out = []
        for c in clips:
            x = np.asarray(c, dtype=np.float64)
            garbled = self.config.loud == "garbled" and np.abs(x).max() > 0.5
            out.append(Features(pooled=None if garbled else np.array([[x.mean(), x.std(), len(x)]], dtype=np.float32)))
        return out
'''


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The address of a two-node loopback Ray cluster this process is connected to; the test
    extractor ``ray_probe`` is importable here, in its workers and in child processes."""
    modules = tmp_path_factory.mktemp("ray-modules")
    (modules / "ray_probe.py").write_text(PROBE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every address 127.0.0.1
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(modules), os.environ.get("PYTHONPATH")) if p))
        ray = pytest.importorskip("ray")
        from ray._private import ray_constants
        from ray.cluster_utils import Cluster

        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # the same when ray was imported before
        mp.syspath_prepend(str(modules))
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": LOOPBACK,
                                                                 "include_dashboard": False})  # fmt: skip
        try:
            cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK)
            ray.init(address=cluster.address, logging_level="WARNING")
            assert ray.cluster_resources()["CPU"] == 2 and len(ray.nodes()) == 2
            assert all(n["NodeManagerAddress"] == LOOPBACK for n in ray.nodes())
            yield cluster.address
        finally:
            ray.shutdown()
            cluster.shutdown()
            from emolingua.features.base import _REGISTRY

            _REGISTRY.pop("ray-probe", None)
            sys.modules.pop("ray_probe", None)


@pytest.fixture
def probe(ray_cluster):
    import ray_probe

    return ray_probe


@pytest.fixture
def files(tmp_path, tone):
    return [str(tone(tmp_path / "audio" / f"clip{i:02d}.wav", seconds=0.1 + 0.02 * i, seed=i)) for i in range(24)]


def _loud(path, *, seconds=0.3):
    """A float WAV peaking at 0.9 (its header holds a time stamp: its content key differs on every run)."""
    import soundfile as sf

    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(str(path), (0.9 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="FLOAT")
    return str(path)


def _contents(store, ex, paths):
    """Everything a store holds for ``paths``: the keys of each shard, and each key's arrays."""
    from emolingua.fileio import content_keys

    groups = sorted(sorted(keys) for keys in store.shard_keys(extractor=ex).values())
    keys = sorted({k for k in content_keys(paths) if k})
    pooled, found, frames = store.load(keys=keys, extractor=ex, frames=True)
    return groups, keys, pooled, found, frames


def _assert_same_store(a, b, ex, paths):
    groups_a, keys, pooled_a, found_a, frames_a = _contents(a, ex, paths)
    groups_b, _, pooled_b, found_b, frames_b = _contents(b, ex, paths)
    assert groups_a == groups_b  # the same batches, so the same shards
    assert np.array_equal(found_a, found_b) and found_a.any()
    assert np.array_equal(pooled_a, pooled_b, equal_nan=True)  # bit for bit
    for fa, fb in zip(frames_a, frames_b):
        assert (fa is None) == (fb is None)
        if fa is not None:
            assert fa.keys() == fb.keys() and all(np.array_equal(fa[s], fb[s]) for s in fa)


def _calls(log):
    """(pid, clips, loud clips) of every extract call logged by the probe."""
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines()] if log.exists() else []


# -- extraction ---------------------------------------------------------------------------------------
def test_a_store_filled_through_ray_equals_the_local_store(tmp_path, files, ray_cluster):
    twin = tmp_path / "audio" / "twin.wav"
    shutil.copy(files[3], twin)
    broken = tmp_path / "audio" / "broken.wav"
    broken.write_text("not audio")
    paths = [*files, str(twin), str(broken)]
    ex = get_extractor("mfcc", frames=True)
    local, on_ray = FeatureStore(root=tmp_path / "local"), FeatureStore(root=tmp_path / "ray")
    a = extract_to_store(paths=paths, extractor=ex, store=local, batch_seconds=0.6, workers=2, progress=False)
    b = extract_to_store(paths=paths, extractor=ex, store=on_ray, batch_seconds=0.6, progress=False, executor="ray",
                         ray_address=ray_cluster)  # fmt: skip
    assert (b.done, b.skipped, b.failed) == (a.done, a.skipped, a.failed) == (24, 0, 1)
    assert b.failures == a.failures and b.failures[0][0] == str(broken)
    assert b.audio_seconds == pytest.approx(a.audio_seconds)
    _assert_same_store(local, on_ray, ex, paths)
    failures = [(local.folder(ex) / "failures.jsonl").read_text(), (on_ray.folder(ex) / "failures.jsonl").read_text()]
    assert failures[0] == failures[1]
    assert not list((on_ray.folder(ex) / "claims").glob("*.claim"))
    again = extract_to_store(paths=paths, extractor=ex, store=on_ray, batch_seconds=0.6, progress=False, executor="ray")
    assert (again.done, again.skipped) == (0, 24)


def test_a_task_that_raises_is_retried_then_its_files_are_recorded_and_the_rest_completes(tmp_path, files, probe):
    # 0.33 s: a length no other clip has, so the batches are the same on every run (here the loud
    # clip shares its batch with the clips of 0.30 and 0.32 s)
    loud = _loud(tmp_path / "audio" / "loud.wav", seconds=0.33)
    paths = [*files, loud]
    log = tmp_path / "calls.log"
    ex = probe.RayProbe(loud="garbled", log=str(log))
    store = FeatureStore(root=tmp_path / "store")
    summary = extract_to_store(paths=paths, extractor=ex, store=store, batch_seconds=1.0, progress=False,
                               executor="ray")  # fmt: skip
    attempts = [c for c in _calls(log) if c[2]]
    assert len(attempts) == 1 + RAY_RETRIES  # bounded: then given up
    failed = {p for p, _ in summary.failures}
    assert failed == {loud, files[10], files[11]} and summary.failed == 3  # the loud clip and its batch mates
    assert all(clips == 3 for _, clips, _ in attempts)
    assert all(f"failed {1 + RAY_RETRIES} times (TypeError" in why for _, why in summary.failures)
    X, found = store.load_pooled(paths=paths, extractor=ex)
    assert summary.done == len(paths) - 3 == found.sum()
    assert all(found[i] != (p in failed) for i, p in enumerate(paths))
    rows = [json.loads(line) for line in (store.folder(ex) / "failures.jsonl").read_text().splitlines()]
    assert {r["path"] for r in rows} == failed


def test_a_worker_killed_mid_task_loses_only_that_task(tmp_path, files, probe):
    loud = _loud(tmp_path / "audio" / "loud.wav")
    paths = [*files, loud]
    marker, log = tmp_path / "killed", tmp_path / "calls.log"
    on_ray = FeatureStore(root=tmp_path / "ray")
    summary = extract_to_store(paths=paths, extractor=probe.RayProbe(die_once=str(marker), log=str(log)), store=on_ray,
                               batch_seconds=0.6, progress=False, executor="ray")  # fmt: skip
    assert marker.exists() and (summary.done, summary.failed) == (25, 0)
    killed, rerun = [c for c in _calls(log) if c[2]]  # the task that held the loud clip ran twice
    assert killed[0] != rerun[0] and killed[1] == rerun[1]  # in a new process, the same batch
    local = FeatureStore(root=tmp_path / "local")
    extract_to_store(paths=paths, extractor=probe.RayProbe(), store=local, batch_seconds=0.6, progress=False)
    _assert_same_store(local, on_ray, probe.RayProbe(), paths)


def test_a_driver_killed_mid_run_is_resumed_by_the_next_run(tmp_path, files, probe, ray_cluster):
    store_dir, first, second = tmp_path / "store", tmp_path / "first.log", tmp_path / "second.log"
    script = textwrap.dedent(f"""
        import ray_probe
        from emolingua.features.extract import extract_to_store
        from emolingua.features.store import FeatureStore
        extract_to_store(paths={files!r}, extractor=ray_probe.RayProbe(delay=0.3, log={str(first)!r}),
                         store=FeatureStore(root={str(store_dir)!r}), batch_seconds=0.3, progress=False,
                         executor="ray", ray_address={ray_cluster!r})
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    store, ex = FeatureStore(root=store_dir), probe.RayProbe()
    deadline = time.time() + 90
    try:
        while len(store.keys(extractor=ex, verify=False)) < 6 and driver.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        driver.send_signal(signal.SIGKILL)
        _, err = driver.communicate(timeout=30)
    before = store.keys(extractor=ex)
    assert 6 <= len(before) < 24, err[-2000:]  # killed mid-run
    summary = extract_to_store(paths=files, extractor=probe.RayProbe(log=str(second)), store=store,
                               batch_seconds=0.3, progress=False, executor="ray")  # fmt: skip
    assert (summary.skipped, summary.done, summary.failed) == (len(before), 24 - len(before), 0)
    assert sum(clips for _, clips, _ in _calls(second)) == summary.done  # only what was missing was computed
    assert store.load_pooled(paths=files, extractor=ex)[1].all()
    assert not list((store.folder(ex) / "claims").glob("*.claim"))  # the dead driver's claims were taken over


# -- benchmark ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_two_corpora(tmp_path_factory.mktemp("corpora"))


def _numbers(results):
    """What a benchmark computed: every score, CI, confusion and choice, without timings and settings."""
    return {k: v for k, v in results.items() if k not in ("seconds", "config")}


def test_a_benchmark_through_ray_gives_the_same_results_and_resumes(tree, tmp_path, ray_cluster):
    def cfg(name, **kw):
        return BenchmarkConfig(corpora=str(tree), output=str(tmp_path / name), features="mfcc", protocol="loso",
                               model="logreg", store=str(tmp_path / f"{name}-store"), n_boot=200, **kw)  # fmt: skip

    local = run_benchmark(cfg("local"), progress=False)
    on_ray = run_benchmark(cfg("ray", executor="ray", ray_address=ray_cluster), progress=False)
    assert on_ray["jobs"] == local["jobs"] == {"total": 8, "reused": 0, "computed": 8, "skipped": 0}
    saved = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("local", "ray")]
    assert _numbers(saved[0]) == _numbers(saved[1])  # identical numbers, and the same job files (keys)
    assert saved[1]["config"]["executor"] == "ray" and len(saved[1]["corpora"]) == 2
    again = run_benchmark(cfg("ray", executor="ray"), progress=False)  # resumes: every job is in its job file
    assert again["jobs"] == {"total": 8, "reused": 8, "computed": 0, "skipped": 0}
    assert {**_numbers(again), "jobs": None} == {**_numbers(on_ray), "jobs": None}


def test_executor_and_address_are_runtime_settings():
    cfg = BenchmarkConfig(corpora="x", output="y")
    assert fingerprint(cfg) == fingerprint(dataclasses.replace(cfg, executor="ray", ray_address="10.0.0.5:6379"))
    for bad, match in (({"executor": "spark"}, "executor 'spark': unknown"),
                       ({"ray_address": "10.0.0.5:6379"}, "only used with executor ray")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            dataclasses.replace(cfg, **bad).validate()


def test_an_address_where_no_cluster_listens_fails_at_once():
    import socket

    from emolingua.errors import NotAvailableError
    from emolingua.executors import check_reachable

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        free = s.getsockname()[1]  # closed again below: nothing listens there
    start = time.time()
    with pytest.raises(NotAvailableError, match=f"ray_address {LOOPBACK}:{free}: no Ray cluster answers there"):
        check_reachable(f"{LOOPBACK}:{free}")
    assert time.time() - start < 5
    check_reachable("auto")  # left to Ray


# -- command line -------------------------------------------------------------------------------------
def test_the_command_line_runs_extraction_on_ray(tmp_path, files, ray_cluster):
    import pandas as pd

    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"path": files}).to_csv(manifest, index=False)
    runner = CliRunner()
    args = ["features", "extract", str(manifest), "-e", "mfcc", "--store", str(tmp_path / "store")]
    res = runner.invoke(app, [*args, "--executor", "ray", "--ray-address", ray_cluster])
    assert res.exit_code == 0, res.output
    assert "mfcc: done 24, skipped 0, failed 0" in res.stdout
    assert FeatureStore(root=tmp_path / "store").load_pooled(paths=files, extractor=get_extractor("mfcc"))[1].all()
    res = runner.invoke(app, [*args, "--ray-address", ray_cluster])
    assert res.exit_code == 2 and "only used with executor ray" in res.output


def test_the_benchmark_command_hands_executor_and_address_to_the_run(tmp_path, monkeypatch):
    import emolingua.benchmark as bm

    seen = []

    def stop(cfg, **kw):
        seen.append(cfg)
        raise ConfigError("stopped by the test before any work")

    monkeypatch.setattr(bm, "run_benchmark", stop)
    res = CliRunner().invoke(app, ["benchmark", "--corpora", str(tmp_path), "--output", str(tmp_path / "out"),
                                   "--executor", "ray", "--ray-address", "10.0.0.5:6379"])  # fmt: skip
    assert res.exit_code == 2 and "stopped by the test" in res.output
    assert (seen[0].executor, seen[0].ray_address) == ("ray", "10.0.0.5:6379")
