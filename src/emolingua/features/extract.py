"""Fill a feature store from a list of audio files: resumable, shared, batched, with progress.

>>> summary = extract_to_store(paths=manifest.path, extractor=get_extractor("whisper-base"),
...                            store=FeatureStore(root="features"))   # doctest: +SKIP

Files are hashed and every distinct content is computed once (a copy, a symbolic link or a
path listed twice shares the entry, and :meth:`FeatureStore.load` gives it to every row).
The contents are sorted by length (then key) and cut into batches of about
``batch_seconds`` of audio. The batches depend on the set of files only, not on what is
already stored, so processes working on the same list see the same batches: each batch is
claimed in the store before it is decoded, the claimed batch's keys are checked against the
store once more, and only what is still missing is computed. Two processes (or ``workers``)
on one store therefore share the work, each clip computed once (give or take one batch when
a stale claim is taken over by two at once). A process ends when every batch is stored: it
waits for batches others hold, and takes over those whose owner died.

Decoding and resampling run in a thread one batch ahead of the model. Every batch is written
as one atomic shard, so a killed run loses at most the batch in flight and a rerun resumes.

Failures stay with their clip and are recorded with path and reason (in the summary and in
the store's ``failures.jsonl``) while the rest of the batch is stored: a file that fails to
decode (see :func:`emolingua.audio.load_audio`, which also rejects absurd float amplitudes),
an extractor error (the batch is then retried clip by clip, so one file cannot block a
batch, nor every rerun at the same place), and features holding NaN or infinity (never
stored). A configuration error (:class:`~emolingua.errors.EmolinguaError`) stops the run.

Executors: by default batches run in this machine's processes (``workers``). With
``executor="ray"`` this process is the driver: it plans and claims the batches as above and
sends each one as a Ray task, which decodes and extracts it on whichever node Ray picks, with
the very code a local worker runs, and returns the features; the driver writes the shard. So
the store needs no filesystem shared with the nodes (only the audio must be readable on every
node, at the same path), each result is written exactly once (Ray may run a task again after
its worker died; only the result it hands back is stored), and the store holds the same
shards, array for array, as after a local run. A task that still fails after its retries
(:data:`emolingua.executors.RAY_RETRIES`) has its files recorded as failures and the run goes
on; a driver killed mid-run loses only the batches in flight, and a rerun resumes.

Cores are never oversubscribed: ``workers`` is capped at the cores this process may use, and
with several workers an extractor whose ``threads`` option is unset gets
``cores // workers`` threads in each (one worker and no ``threads``: the extractor decides).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from emolingua.audio import AudioError, load_audio, probe_audio
from emolingua.errors import ConfigError, EmolinguaError
from emolingua.executors import check_executor
from emolingua.features.base import FeatureExtractor, Features
from emolingua.features.store import FeatureStore
from emolingua.fileio import content_keys, path_list
from emolingua.system import usable_cores as _cores  # a module name, so tests can pin the cores

__all__ = ["ExtractSummary", "default_store_dir", "duration_batches", "extract_to_store"]

#: Batches decoded ahead of the one the model works on.
DECODE_AHEAD = 1
#: Seconds between looks at batches other processes hold.
POLL_SECONDS = 0.5
#: Seconds a Ray driver's list of stored keys may be old (see ``_Claims``).
RELIST_SECONDS = 5.0

NON_FINITE = "the extractor produced NaN or infinite features (not stored); the audio may be extreme or broken"

#: One clip to compute: its content key and every path holding that content.
Item = tuple[str, tuple[str, ...]]
#: A batch: its name (from the keys of the whole batch, the same in every process) and what it still lacks.
Batch = tuple[str, list[Item]]
#: Progress of one batch: audio seconds computed, clips computed, clips found stored, failures.
#: (audio seconds stored, keys stored, keys found stored by someone else, failures), after every batch.
OnBatch = Callable[[float, list[str], list[str], list[tuple[str, str]]], None]


def default_store_dir() -> Path:
    """``$EMOLINGUA_CACHE/features`` (default ``~/.cache/emolingua/features``)."""
    cache = os.environ.get("EMOLINGUA_CACHE")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache" / "emolingua") / "features"


@dataclass
class ExtractSummary:
    """What a run did: clips (distinct contents) computed, already stored, failed with reasons (per path)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    audio_seconds: float = 0.0
    disk_bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds else float("nan")


def duration_batches(order: list[int], durations: list[float], *, batch_seconds: float, max_items: int
                     ) -> list[list[int]]:  # fmt: skip
    """Consecutive groups of ``order`` holding at most ``batch_seconds`` of audio and ``max_items`` clips."""
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0.0
    for i in order:
        if current and (total + durations[i] > batch_seconds or len(current) >= max_items):
            batches.append(current)
            current, total = [], 0.0
        current.append(i)
        total += durations[i]
    if current:
        batches.append(current)
    return batches



def _plan_workers(*, workers: int, threads: int | None, cores: int) -> tuple[int, int | None]:
    """Workers capped at ``cores``, and threads per worker so that workers x threads <= cores.

    Threads given explicitly are kept; one worker without threads leaves them to the extractor.
    """
    n = max(1, min(workers, cores))
    if n > 1 and threads is None:
        threads = max(1, cores // n)
    return n, threads


def _duration(path: str, known: float | None) -> float:
    """The manifest's duration when it has one, else the header's (0 for unreadable files)."""
    if known is not None and np.isfinite(known):
        return float(known)
    try:
        return probe_audio(path, check_tail=False).duration
    except AudioError:
        return 0.0


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _decode(paths: list[str], sample_rate: int) -> list[tuple[np.ndarray | None, str | None]]:
    out: list[tuple[np.ndarray | None, str | None]] = []
    for p in paths:
        try:
            out.append((load_audio(p, sample_rate=sample_rate).samples, None))
        except AudioError as exc:
            out.append((None, exc.reason))
        except Exception as exc:  # an unforeseen decoder error is still one file's problem
            out.append((None, f"could not decode ({_describe(exc)})"))
    return out


def _finite(f: Features) -> bool:
    return bool(np.isfinite(f.pooled).all()) and all(np.isfinite(v).all() for v in (f.frames or {}).values())


def _extract_each(extractor: FeatureExtractor, clips: list[np.ndarray]) -> list[Features | str]:
    """Features of each clip, or the reason it has none; a failing batch is retried clip by clip."""
    try:
        feats = extractor.extract(clips)
        if len(feats) != len(clips):
            raise RuntimeError(f"the extractor returned {len(feats)} results for {len(clips)} clips")
    except EmolinguaError:
        raise
    except Exception as exc:
        if len(clips) == 1:
            return [f"extraction failed ({_describe(exc)})"]
        return [r for clip in clips for r in _extract_each(extractor, [clip])]
    return [f if _finite(f) else NON_FINITE for f in feats]


def _batch_name(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]


@dataclass
class _Done:
    """One batch computed: what to store, its audio seconds, its failures (path, reason), and the
    fingerprint of the extractor that computed it (a Ray node's must match the driver's)."""

    keys: list[str]
    features: list[Features]
    audio_seconds: float
    failures: list[tuple[str, str]]
    fingerprint: str = ""


def _compute(extractor: FeatureExtractor, todo: list[Item], decoded: list[tuple[np.ndarray | None, str | None]]
             ) -> _Done:  # fmt: skip
    """Features of one decoded batch, whichever executor runs it: every executor stores the same arrays."""
    failures = [(p, err) for (_, paths), (_, err) in zip(todo, decoded) if err for p in paths]
    good = [(key, paths, s) for (key, paths), (s, _) in zip(todo, decoded) if s is not None]
    results = _extract_each(extractor, [s for _, _, s in good]) if good else []
    keep = [(key, s, f) for (key, _, s), f in zip(good, results) if isinstance(f, Features)]
    failures += [(p, f) for (_, paths, _), f in zip(good, results) if isinstance(f, str) for p in paths]
    return _Done(keys=[k for k, _, _ in keep], features=[f for _, _, f in keep],
                 audio_seconds=sum(len(s) for _, s, _ in keep) / extractor.sample_rate, failures=failures)  # fmt: skip


def _keep(store: FeatureStore, extractor: FeatureExtractor, done: _Done) -> None:
    """Write one computed batch as a shard and its failures to failures.jsonl."""
    if done.keys:
        store.write(extractor=extractor, keys=done.keys, features=done.features)
    if done.failures:
        store.record_failures(extractor=extractor, failures=done.failures)


class _Claims:
    """The batches this process has yet to see; each is claimed before it is computed (see the module docstring).

    ``relist_seconds``: how stale the list of stored keys may be when a claimed batch is checked
    against it; 0 (local workers): listed again after every claim. Listing reads the whole shard
    folder (about 1 s per 100,000 shards), so a Ray driver, which feeds many nodes, lists at most
    that often, and never spends more than about a tenth of its time on it; a batch another
    process stored in between is then computed twice (harmless: the entries are the same).
    """

    def __init__(self, *, extractor: FeatureExtractor, store: FeatureStore, batches: list[Batch], on_batch: OnBatch,
                 relist_seconds: float = 0.0) -> None:  # fmt: skip
        self.extractor, self.store, self.on_batch = extractor, store, on_batch
        self.pending = list(batches)
        self.seen: set[str] = set()  # shards whose keys are in ``stored``
        self.stored: set[str] = set()
        self.held: set[Path] = set()
        self.relist_seconds = relist_seconds
        self.next_listing = -float("inf")

    def take(self) -> tuple[list[Item], Path] | None:
        """The next batch this process may compute, claimed and without what is stored by now."""
        for batch in list(self.pending):
            name, items = batch
            claim = self.store.claim(extractor=self.extractor, name=name)
            if claim is None:
                continue
            self.pending.remove(batch)
            # after the claim: whoever held it before wrote its shard before letting it go
            if (start := time.monotonic()) >= self.next_listing:
                new = self.store.shard_keys(extractor=self.extractor, verify=False, skip=self.seen)
                self.seen.update(new)
                self.stored.update(k for keys in new.values() for k in keys)
                took = time.monotonic() - start
                self.next_listing = start + (max(self.relist_seconds, 10 * took) if self.relist_seconds else 0.0)
            todo = [item for item in items if item[0] not in self.stored]
            if len(todo) < len(items):
                self.on_batch(0.0, [], [k for k, _ in items if k in self.stored], [])
            if todo:
                self.held.add(claim)
                return todo, claim
            self.store.release(claim)
        return None

    def finish(self, claim: Path, done: _Done) -> None:
        """Store a computed batch, then let its claim go."""
        _keep(self.store, self.extractor, done)
        self.store.release(claim)
        self.held.discard(claim)
        self.on_batch(done.audio_seconds, done.keys, [], done.failures)

    def release_all(self) -> None:
        for claim in self.held:
            self.store.release(claim)
        self.held.clear()


def _run_batches(*, extractor: FeatureExtractor, store: FeatureStore, batches: list[Batch], on_batch: OnBatch) -> None:
    """Claim, re-check, decode ahead, extract and store batches until none is left (see the module docstring)."""
    claims = _Claims(extractor=extractor, store=store, batches=batches, on_batch=on_batch)
    window: deque[tuple[list[Item], Path, Future]] = deque()
    with ThreadPoolExecutor(max_workers=1) as decoder:

        def fill() -> None:
            while len(window) <= DECODE_AHEAD and (got := claims.take()) is not None:
                todo, claim = got
                window.append((todo, claim, decoder.submit(_decode, [paths[0] for _, paths in todo],
                                                           extractor.sample_rate)))  # fmt: skip

        try:
            while True:
                fill()
                if not window:
                    if not claims.pending:
                        break
                    time.sleep(POLL_SECONDS)  # what is left is held by other processes
                    continue
                todo, claim, decoding = window.popleft()
                fill()
                claims.finish(claim, _compute(extractor, todo, decoding.result()))
        finally:
            for _, _, decoding in window:
                decoding.cancel()
            claims.release_all()


def _worker(cls: type[FeatureExtractor], argument: str | None, options: dict[str, Any], store_root: str,
            batches: list[Batch], queue: Any) -> None:  # fmt: skip
    extractor = cls(argument, **options)
    _run_batches(extractor=extractor, store=FeatureStore(root=store_root), batches=batches,
                 on_batch=lambda *report: queue.put(report))  # fmt: skip


def _options(extractor: FeatureExtractor, threads: int | None) -> dict[str, Any]:
    """The extractor's options with ``threads`` set: what a worker process builds its copy from."""
    options = {f.name: getattr(extractor.config, f.name) for f in dataclasses.fields(extractor.config)}
    options["threads"] = threads
    return options


def extract_to_store(
    *,
    paths: Sequence[str | os.PathLike],
    extractor: FeatureExtractor,
    store: FeatureStore,
    durations: Sequence[float] | None = None,
    keys: Sequence[str | None] | None = None,
    batch_seconds: float = 120.0,
    max_batch_items: int = 64,
    workers: int = 1,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
) -> ExtractSummary:
    """Compute what the store lacks for ``paths``; see the module docstring.

    ``workers`` > 1 runs that many processes (at most one per core), each with its own copy of
    the model and, unless the extractor's ``threads`` option is set, cores / workers threads.
    ``executor="ray"`` runs every batch as a Ray task instead (on the cluster at ``ray_address``,
    else on a Ray instance started on this machine), ``threads`` (default 1) per task; ``workers``
    is then unused. ``keys``: the files' content keys when the caller has just computed them
    (``None`` for an unreadable file); by default every file is hashed here.

    >>> extract_to_store(paths=paths, extractor=ex, store=store, executor="ray", ray_address="10.0.0.5:6379")  # doctest: +SKIP
    """
    paths = path_list(paths, "paths")
    durations = None if durations is None else list(durations)
    keys = None if keys is None else list(keys)
    for name, values in (("durations", durations), ("keys", keys)):
        if values is not None and len(values) != len(paths):
            raise ValueError(f"{name}: expected one per path ({len(paths)}), got {len(values)}")
    if workers < 1:
        raise ConfigError(f"workers: must be 1 or more, got {workers}")
    check_executor(executor=executor, ray_address=ray_address)
    start = time.perf_counter()
    summary = ExtractSummary()
    where: dict[str, list[str]] = {}  # content key -> every path with that content
    for p, k in zip(paths, content_keys(paths) if keys is None else keys):
        if k is None:
            summary.failures.append((p, "file not found or not readable"))
        elif p not in where.setdefault(k, []):
            where[k].append(p)
    done = store.keys(extractor=extractor)
    summary.skipped = sum(k in done for k in where)
    batches: list[Batch] = []
    if summary.skipped < len(where):
        known = dict(zip(paths, durations)) if durations is not None else {}
        secs = {k: _duration(ps[0], known.get(ps[0])) for k, ps in where.items()}
        order = sorted(where, key=lambda k: (secs[k], k))
        groups = duration_batches(list(range(len(order))), [secs[k] for k in order], batch_seconds=batch_seconds,
                                  max_items=max_batch_items)  # fmt: skip
        for group in groups:
            keys = [order[i] for i in group]
            todo = [(k, tuple(where[k])) for k in keys if k not in done]
            if todo:
                batches.append((_batch_name(keys), todo))
        total_audio = sum(secs[k] for _, items in batches for k, _ in items)
    else:
        total_audio = 0.0

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[files]} files"),
               TextColumn("{task.fields[rate]}x real time"), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())  # fmt: skip
    from rich.console import Console

    # progress goes to stderr: stdout carries results only, so it can be piped
    with Progress(*columns, disable=not progress, transient=False, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"{extractor.spec}", total=max(total_audio, 1e-9), files=0, rate="-")

        computed: set[str] = set()
        found: set[str] = set()  # stored by another process (or, with workers, maybe by a sibling)

        def on_batch(audio: float, keys: list[str], stored: list[str], fails: list[tuple[str, str]]) -> None:
            summary.done += len(keys)
            computed.update(keys)
            found.update(stored)
            summary.audio_seconds += audio
            summary.failures.extend(fails)
            elapsed = time.perf_counter() - start
            bar.update(task, advance=audio, files=summary.done,
                       rate=f"{summary.audio_seconds / max(elapsed, 1e-9):.0f}")  # fmt: skip

        n_workers, threads = _plan_workers(workers=workers, threads=getattr(extractor.config, "threads", None),
                                           cores=_cores())  # fmt: skip
        if executor == "ray":
            if batches:  # nothing to compute: no cluster to start or join
                _run_ray(extractor=extractor, store=store, batches=batches, address=ray_address, on_batch=on_batch,
                         threads=getattr(extractor.config, "threads", None) or 1)  # fmt: skip
        elif n_workers <= 1 or len(batches) < 2:
            _run_batches(extractor=extractor, store=store, batches=batches, on_batch=on_batch)
        else:
            _run_parallel(extractor=extractor, store=store, batches=batches, workers=min(n_workers, len(batches)),
                          threads=threads, on_batch=on_batch)  # fmt: skip
        bar.update(task, completed=max(total_audio, 1e-9))
    summary.skipped += len(found - computed)  # what a sibling worker computed is done, not skipped
    # a failed clip stays missing, so each local worker that claims its batch after another tries it again: report it once
    summary.failures = list(dict.fromkeys(summary.failures))
    summary.failed = len(summary.failures)
    summary.seconds = time.perf_counter() - start
    folder = store.folder(extractor)
    summary.disk_bytes = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0
    return summary


def _run_parallel(*, extractor: FeatureExtractor, store: FeatureStore, batches: list[Batch], workers: int,
                  threads: int | None, on_batch: OnBatch) -> None:  # fmt: skip
    """``workers`` processes, each going through every batch: the claims share the work out."""
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")
    options = _options(extractor, threads)
    with ctx.Manager() as manager:
        q = manager.Queue()
        procs = [ctx.Process(target=_worker, args=(type(extractor), extractor.argument, options, str(store.root),
                                                   batches, q))
                 for _ in range(workers)]  # fmt: skip
        for p in procs:
            p.start()
        while True:
            try:
                on_batch(*q.get(timeout=POLL_SECONDS))
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs):
                    break
        while True:  # reports sent just before the last worker ended
            try:
                on_batch(*q.get_nowait())
            except queue_mod.Empty:
                break
        for p in procs:
            p.join()
        bad = [p.exitcode for p in procs if p.exitcode]
        if bad:
            raise RuntimeError(f"{len(bad)} extraction worker(s) failed (exit codes {bad}); rerun to resume")


#: A Ray worker process's extractor (and its fingerprint), built for its first batch and kept for
#: the next ones: loading the model for every batch would cost more than the batch.
_WORKER_EXTRACTOR: dict[str, tuple[FeatureExtractor, str]] = {}


def _ray_batch(cls: type[FeatureExtractor], argument: str | None, options: dict[str, Any], todo: list[Item]) -> _Done:
    """One batch as a Ray task: decode and extract on the node, exactly as a local worker does,
    and hand the features back to the driver, which stores them."""
    key = json.dumps([cls.__module__, cls.__qualname__, argument, options], sort_keys=True, default=str)
    if key not in _WORKER_EXTRACTOR:
        _WORKER_EXTRACTOR.clear()  # one model per worker process at a time
        extractor = cls(argument, **options)
        _WORKER_EXTRACTOR[key] = (extractor, extractor.fingerprint())
    extractor, fingerprint = _WORKER_EXTRACTOR[key]
    done = _compute(extractor, todo, _decode([paths[0] for _, paths in todo], extractor.sample_rate))
    done.fingerprint = fingerprint
    return done


def _run_ray(*, extractor: FeatureExtractor, store: FeatureStore, batches: list[Batch], threads: int,
             address: str | None, on_batch: OnBatch) -> None:  # fmt: skip
    """Every batch as a Ray task; this process (the driver) claims, stores and records.

    At most two tasks per slot are out at a time (one running, one queued behind it), so the
    claims held and the results waiting in Ray's object store stay bounded.
    """
    from emolingua.executors import RayTasks, describe_error, ray_session

    claims = _Claims(extractor=extractor, store=store, batches=batches, on_batch=on_batch,
                     relist_seconds=RELIST_SECONDS)  # fmt: skip
    options = _options(extractor, threads)
    fingerprint = extractor.fingerprint()
    with ray_session(address=address):
        tasks: RayTasks[tuple[list[Item], Path]] = RayTasks(_ray_batch, num_cpus=threads, per_slot=2)
        try:
            while True:
                while tasks.has_room and (got := claims.take()) is not None:
                    tasks.submit(got, type(extractor), extractor.argument, options, got[0])
                if not tasks.running:
                    if not claims.pending:
                        break
                    time.sleep(POLL_SECONDS)  # what is left is held by other processes
                    continue
                for (todo, claim), done, error in tasks.wait():
                    if error is not None:  # Ray ran it 1 + retries times: the batch's files fail, the run goes on
                        why = f"its Ray task failed {tasks.retries + 1} times ({describe_error(error)})"
                        done = _Done(keys=[], features=[], audio_seconds=0.0,
                                     failures=[(p, why) for _, paths in todo for p in paths])  # fmt: skip
                    elif done.fingerprint != fingerprint:
                        raise ConfigError(f"{extractor.spec}: a Ray node computes it with another identity "
                                          f"({done.fingerprint}, here {fingerprint}); every node needs the same "
                                          "emolingua, extractor code and model files")  # fmt: skip
                    claims.finish(claim, done)
        finally:
            tasks.cancel()
            claims.release_all()
