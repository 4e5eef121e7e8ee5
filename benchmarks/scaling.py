"""Ray against the local executor, on the same manifest and the same CPUs, in one run.

Extraction (default ``whisper-base``) of ``--clips`` clips of the corpora (a seeded sample; ``0``:
all), each time into a fresh store in a temporary folder, under five layouts (``LAYOUTS``):

1. the local executor, ``workers=2`` (two processes, one torch thread each);
2. Ray, one node of 2 CPUs (two tasks at a time, one torch thread each);
3. Ray, two nodes of 1 CPU each, both on this machine;
4. the local executor's default here, one process of two threads;
5. Ray, one node of 2 CPUs, one task at a time of two threads (``--threads 2``).

Each Ray layout is compared with the local one of the same threads per worker.
Then the benchmark's fold jobs (``--model``, LOSO, on the features just stored, so nothing is
extracted again) locally with ``workers=2`` and on Ray layouts 2 and 3. Every Ray cluster here is
started for its layout, bound to 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), and stopped
afterwards; its start-up is reported apart from the wall time. Each layout's store must equal
the local one array for array, and each Ray benchmark's results.json numbers the local ones;
the exit status says whether they did. ``--rounds 2`` repeats the layouts in reverse order, so
that a machine getting busier slows every layout alike; the load average is printed at the
start and the end (the numbers mean something only on an otherwise idle machine).

Also timed, for the cost model in docs/scaling.md: the driver's own work per batch in the Ray
runs (claiming, checking, writing the shard), the fold-job phase of each benchmark apart from
loading and scoring, listing a shard folder of ``--listing`` files (a Ray driver does that at
most every RELIST_SECONDS), and the driver's memory per clip for the work plan of ``--plan``
synthetic clips, what a fresh worker process pays before its first batch (imports, model load),
and decoding the sample on one thread. ``--micro-only`` runs only the listing, plan-memory and
start-up tests (no corpora needed); ``--layouts 4,5`` runs only those layouts.

    .venv/bin/python benchmarks/scaling.py --corpora ../shared/corpora --clips 1000
"""

from __future__ import annotations

import os

# Ray reads these when it is imported: loopback addresses only, no usage report
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Iterator  # noqa: E402

import numpy as np  # noqa: E402

LOOPBACK = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where extraction runs: locally with ``workers`` processes, or on Ray nodes of ``nodes`` CPUs;
    ``threads`` torch threads per worker or task. ``jobs``: also run the benchmark's fold jobs."""

    name: str
    threads: int
    workers: int = 0
    nodes: tuple[int, ...] = ()
    jobs: bool = True


LAYOUTS = [
    Layout("local, 2 workers x 1 thread", threads=1, workers=2),
    Layout("ray, 1 node x 2 CPUs, 1 thread per task", threads=1, nodes=(2,)),
    Layout("ray, 2 nodes x 1 CPU, 1 thread per task", threads=1, nodes=(1, 1)),
    # the local default on this machine (one process, two threads) and Ray's same shape
    Layout("local, 1 worker x 2 threads", threads=2, workers=1, jobs=False),
    Layout("ray, 1 node x 2 CPUs, 2 threads per task", threads=2, nodes=(2,), jobs=False),
]


class Timer:
    """Seconds spent in a function and its calls, while installed (it wraps the module attribute)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name, self.each = owner, name, []
        self.original = getattr(owner, name)

    @property
    def seconds(self) -> float:
        return float(sum(self.each))

    @property
    def calls(self) -> int:
        return len(self.each)

    @property
    def median(self) -> float:
        return float(np.median(self.each)) if self.each else 0.0

    def __enter__(self) -> "Timer":
        original = self.original

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.each.append(time.perf_counter() - start)

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc: Any) -> None:
        setattr(self.owner, self.name, self.original)


def listing_seconds(n: int) -> float:
    """Seconds to list a shard folder of ``n`` shards (empty files named like shards), best of 3."""
    import uuid

    from emolingua.features.store import FeatureStore

    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        shards.mkdir()
        for _ in range(n):
            (shards / f"{uuid.uuid4().hex[:12]}-{uuid.uuid4().hex[:16]}.npz").touch()
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            FeatureStore(root=tmp)._shards(Path(tmp))
            best = min(best, time.perf_counter() - start)
    return best


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def loopback_cluster(cpus: tuple[int, ...]) -> Iterator[float]:
    """A Ray cluster of ``len(cpus)`` nodes on 127.0.0.1, this process its driver; yields its start-up seconds."""
    import ray
    from ray.cluster_utils import Cluster

    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus[0], "node_ip_address": LOOPBACK,
                                                             "include_dashboard": False})  # fmt: skip
    try:
        for n in cpus[1:]:
            cluster.add_node(num_cpus=n, node_ip_address=LOOPBACK)
        ray.init(address=cluster.address, logging_level="WARNING")
        yield time.perf_counter() - start
    finally:
        ray.shutdown()
        cluster.shutdown()


def store_contents(store: Any, extractor: Any, keys: list[str]) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    groups = sorted(sorted(k) for k in store.shard_keys(extractor=extractor).values())
    pooled, found, _ = store.load(keys=keys, extractor=extractor)
    return groups, pooled, found


def same_store(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.array_equal(a[2], b[2]) and np.array_equal(a[1], b[1], equal_nan=True)


def numbers(results: dict[str, Any]) -> dict[str, Any]:
    """What a benchmark computed, without timings and settings."""
    return {k: v for k, v in results.items() if k not in ("seconds", "config")}


def plan_bytes_per_clip(n: int) -> float:
    """Bytes per clip of what a driver holds to plan ``n`` clips (paths, keys, lengths, batches)."""
    import hashlib
    import tracemalloc

    from emolingua.features.extract import _batch_name, duration_batches

    tracemalloc.start()
    try:
        paths = [f"/data/podcasts/show{i % 977:04d}/episode{i // 977:06d}/utterance_{i:09d}.flac" for i in range(n)]
        keys = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(n)]
        where = {k: [p] for p, k in zip(paths, keys)}
        secs = dict.fromkeys(where, 2.58)
        order = sorted(where, key=lambda k: (secs[k], k))
        groups = duration_batches(list(range(n)), [secs[k] for k in order], batch_seconds=120.0, max_items=64)
        batches = [(_batch_name([order[i] for i in g]), [(order[i], tuple(where[order[i]])) for i in g]) for g in groups]
        held = tracemalloc.get_traced_memory()[0]
        assert len(batches) == len(groups)
    finally:
        tracemalloc.stop()
    return held / n


def worker_startup(extractor: str) -> str:
    """What a fresh worker process pays before its first batch: imports, then the model's load."""
    code = ("import time; t = time.perf_counter()\n"
            "import numpy as np\nfrom emolingua.features import get_extractor\n"
            f"ex = get_extractor({extractor!r}, threads=1); t1 = time.perf_counter()\n"
            "ex.extract([np.zeros(16000, dtype=np.float32)]); t2 = time.perf_counter()\n"
            "print(f'imports {t1 - t:.2f} s, model load and first clip {t2 - t1:.2f} s')")  # fmt: skip
    import subprocess

    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return f"{out}; the whole process {time.perf_counter() - start:.2f} s"


def micro(args: argparse.Namespace) -> None:
    print(f"a fresh worker process ({args.extractor}): {worker_startup(args.extractor)}", flush=True)
    if args.listing:
        print(f"listing a shard folder of {args.listing} shards: {listing_seconds(args.listing):.3f} s", flush=True)
    if args.plan:
        print(f"driver's work plan: {plan_bytes_per_clip(args.plan):.0f} bytes per clip ({args.plan} clips)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default="../shared/corpora")
    parser.add_argument("--clips", type=int, default=1000, help="a seeded sample of this many files; 0: all")
    parser.add_argument("--extractor", default="whisper-base")
    parser.add_argument("--batch-seconds", type=float, default=120.0)
    parser.add_argument("--model", default="logreg")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-benchmark", action="store_true", help="extraction only")
    parser.add_argument("--listing", type=int, default=100_000, help="shards in the listing test (0: none)")
    parser.add_argument("--plan", type=int, default=1_000_000, help="clips in the plan-memory test (0: none)")
    parser.add_argument("--micro-only", action="store_true", help="only the listing and plan-memory tests")
    parser.add_argument("--layouts", default="1,2,3,4,5", help="which of the layouts, by number (the first is the reference)")
    args = parser.parse_args()
    if args.micro_only:
        micro(args)
        return 0
    root = Path(args.corpora)
    if not root.is_dir():
        print(f"error: {root}: no such folder; give the folder of the shared corpora with --corpora", file=sys.stderr)
        return 2

    import ray

    from emolingua import benchmark as benchmark_module
    from emolingua.benchmark import BenchmarkConfig, run_benchmark
    from emolingua.features import extract as extract_module
    from emolingua.corpora import scan_corpora, write_manifest
    from emolingua.features import get_extractor
    from emolingua.features.extract import extract_to_store
    from emolingua.features.store import FeatureStore
    from emolingua.fileio import content_keys

    print(f"load average at start: {load()}; cores {os.cpu_count()}; ray {ray.__version__}", flush=True)
    manifest = scan_corpora(root=root).manifest
    if "duration" in manifest:  # the clip lengths of the whole collection, for the store's volume per hour
        d = manifest["duration"].dropna().to_numpy()
        print(f"corpora: {len(manifest)} files, {d.sum() / 3600:.2f} h; clip length mean {d.mean():.2f} s, "
              f"p10 {np.percentile(d, 10):.2f}, median {np.median(d):.2f}, p90 {np.percentile(d, 90):.2f}, "
              f"max {d.max():.1f} s", flush=True)  # fmt: skip
    if args.clips and args.clips < len(manifest):
        manifest = manifest.sample(args.clips, random_state=0).reset_index(drop=True)
    paths = manifest["path"].astype(str).tolist()
    start = time.perf_counter()
    keys = content_keys(paths)  # hashed once for all layouts (this also brings the files into the page cache)
    hashing = time.perf_counter() - start
    size = sum(os.path.getsize(p) for p in paths)
    print(f"hashing (what a driver does first): {size / 1e6:.0f} MB in {hashing:.1f} s = {size / 1e6 / hashing:.0f} MB/s "
          "(from disk or the page cache)", flush=True)  # fmt: skip
    start = time.perf_counter()
    extract_module._decode(paths, 16000)
    print(f"decoding and resampling to 16 kHz, one thread: {time.perf_counter() - start:.1f} s", flush=True)
    durations = manifest["duration"].tolist() if "duration" in manifest else None
    distinct = sorted({k for k in keys if k})
    print(f"{len(paths)} files, {len(distinct)} distinct clips, {sum(durations or [0]):.0f} s of audio "
          f"(median clip {np.median(durations or [0]):.2f} s)", flush=True)  # fmt: skip

    ok = True
    rows: dict[Layout, list[dict[str, float]]] = {}
    jobs: dict[Layout, list[tuple[float, float]]] = {}  # (whole benchmark, fold-job phase) seconds
    with tempfile.TemporaryDirectory(prefix="emolingua-scaling-") as tmp:
        tmp_path = Path(tmp)
        manifest_file = tmp_path / "manifest.parquet"
        write_manifest(manifest, manifest_file)
        reference: tuple | None = None
        reference_store: Path | None = None
        reference_results: dict[str, Any] | None = None
        chosen = [LAYOUTS[int(i) - 1] for i in args.layouts.split(",")]
        for rnd in range(args.rounds):
            for layout in chosen if rnd % 2 == 0 else chosen[::-1]:
                name = f"{rnd}-{LAYOUTS.index(layout)}"
                extractor = get_extractor(args.extractor, threads=layout.threads)  # threads do not enter the key
                store_dir = tmp_path / f"store-{name}"
                store = FeatureStore(root=store_dir)
                common = dict(paths=paths, keys=keys, durations=durations, extractor=extractor, store=store,
                              batch_seconds=args.batch_seconds, progress=False)  # fmt: skip
                with contextlib.ExitStack() as stack:
                    startup = 0.0
                    take = stack.enter_context(Timer(extract_module._Claims, "take"))
                    finish = stack.enter_context(Timer(extract_module._Claims, "finish"))
                    if not layout.nodes:  # (the timers see nothing of the worker processes)
                        summary = extract_to_store(**common, workers=layout.workers)
                    else:
                        startup = stack.enter_context(loopback_cluster(layout.nodes))
                        summary = extract_to_store(**common, executor="ray")
                    contents = store_contents(store, extractor, distinct)
                    same = True
                    if reference is None:
                        reference, reference_store = contents, store_dir
                    else:
                        same = same_store(reference, contents)
                        ok &= same
                    # medians: the first claim also checks the model's identity (reads its weights once)
                    driver = take.median + finish.median
                    rows.setdefault(layout, []).append({"wall": summary.seconds, "audio": summary.audio_seconds,
                                                        "startup": startup, "done": summary.done,
                                                        "failed": summary.failed, "bytes": summary.disk_bytes,
                                                        "batches": finish.calls, "driver": driver})  # fmt: skip
                    print(f"round {rnd} {layout.name}: {summary.done} clips ({summary.failed} failed), "
                          f"{summary.audio_seconds:.0f} s of audio in {summary.seconds:.1f} s = "
                          f"{summary.realtime_factor:.1f}x real time; cluster start {startup:.1f} s; "
                          f"store {'identical' if same else 'DIFFERENT'}"
                          + (f"; driver {1000 * driver:.1f} ms per batch, median ({finish.calls} batches)"
                             if layout.nodes else ""), flush=True)  # fmt: skip
                    if args.no_benchmark or not layout.jobs:
                        continue
                    # the fold jobs, on the reference store (complete: nothing is extracted again)
                    cfg = BenchmarkConfig(corpora=str(manifest_file), output=str(tmp_path / f"bench-{name}"),
                                          features=args.extractor, feature_options={"threads": 1}, model=args.model,
                                          protocol="loso", store=str(reference_store), workers=2, threads=1,
                                          executor="ray" if layout.nodes else "local")  # fmt: skip
                    start = time.perf_counter()
                    with Timer(benchmark_module, "_run_jobs") as phase:
                        results = run_benchmark(cfg, progress=False)
                    wall = time.perf_counter() - start
                    jobs.setdefault(layout, []).append((wall, phase.seconds))
                    same_numbers = True
                    if reference_results is None:
                        reference_results = numbers(results)
                    else:
                        same_numbers = numbers(results) == reference_results
                        ok &= same_numbers
                    print(f"round {rnd} {layout.name}: benchmark {args.model} loso in {wall:.1f} s, of which "
                          f"{results['jobs']['computed']} fold jobs {phase.seconds:.1f} s; results "
                          f"{'identical' if same_numbers else 'DIFFERENT'}", flush=True)  # fmt: skip

    def mean_wall(layout: Layout) -> float:
        return float(np.mean([r["wall"] for r in rows[layout]]))

    local = {lay.threads: lay for lay in rows if not lay.nodes}  # what each Ray layout is compared with
    print(f"\n| layout | clips | audio s | wall s (mean of {args.rounds}) | x real time | per core "
          "| Ray overhead vs local, same threads | cluster start s | driver ms per batch |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for layout, runs in rows.items():
        wall, audio = mean_wall(layout), runs[0]["audio"]
        same = local.get(layout.threads)
        overhead = f"{100 * (wall / mean_wall(same) - 1):+.1f} %" if layout.nodes and same else "-"
        start = f"{np.mean([r['startup'] for r in runs]):.1f}" if layout.nodes else "-"
        driver = f"{1000 * np.mean([r['driver'] for r in runs]):.1f} ({runs[0]['batches']} batches)" if layout.nodes else "-"
        print(f"| {layout.name} | {runs[0]['done']} | {audio:.0f} | {wall:.1f} | {audio / wall:.1f} | "
              f"{audio / wall / 2:.1f} | {overhead} | {start} | {driver} |")  # fmt: skip
    if jobs and LAYOUTS[0] in jobs:
        base = np.mean(jobs[LAYOUTS[0]], axis=0)
        print("\n| layout | benchmark wall s | fold-job phase s | phase vs local |\n|---|---|---|---|")
        for layout, walls in jobs.items():
            wall, phase = np.mean(walls, axis=0)
            rel = f"{100 * (phase / base[1] - 1):+.1f} %" if layout.nodes else "-"
            print(f"| {layout.name} | {wall:.1f} | {phase:.1f} | {rel} |")
    first = next(iter(rows.values()))[0]
    print(f"\nstore: {first['bytes'] / 1e6:.1f} MB for {first['done']} clips = {first['bytes'] / max(first['done'], 1) / 1e3:.1f} "
          f"kB per clip, {first['bytes'] / max(first['audio'], 1e-9) * 3600 / 1e6:.1f} MB per audio hour")  # fmt: skip
    micro(args)
    print(json.dumps({"identical": ok, "load_average_end": load()}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
