"""Fill a feature store from a list of audio files: resumable, batched, with progress.

>>> summary = extract_to_store(paths=manifest.path, extractor=get_extractor("whisper-base"),
...                            store=FeatureStore(root="features"))   # doctest: +SKIP

Files are hashed, those already in the store are skipped, the rest are sorted by length and
cut into batches of about ``batch_seconds`` of audio; decoding of the next batch overlaps
the model's work on this one. Every batch is written as one atomic shard, so a killed run
loses at most the batch in flight and a rerun resumes. A file that fails to decode is
reported with its reason and the run goes on.
"""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from emolingua.audio import AudioError, load_audio, probe_audio
from emolingua.features.base import FeatureExtractor, get_extractor
from emolingua.features.store import FeatureStore, content_keys

__all__ = ["ExtractSummary", "default_store_dir", "extract_to_store"]


def default_store_dir() -> Path:
    """``$EMOLINGUA_CACHE/features`` (default ``~/.cache/emolingua/features``)."""
    cache = os.environ.get("EMOLINGUA_CACHE")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache" / "emolingua") / "features"


@dataclass
class ExtractSummary:
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


def _duration(path: str, known: float | None) -> float:
    """The manifest's duration when it has one, else the header's (0 for unreadable files)."""
    if known is not None and np.isfinite(known):
        return float(known)
    try:
        return probe_audio(path, check_tail=False).duration
    except AudioError:
        return 0.0


def _decode(paths: list[str], sample_rate: int) -> list[tuple[np.ndarray | None, str | None]]:
    out: list[tuple[np.ndarray | None, str | None]] = []
    for p in paths:
        try:
            out.append((load_audio(p, sample_rate=sample_rate).samples, None))
        except AudioError as exc:
            out.append((None, exc.reason))
    return out


def _run_batches(
    *,
    extractor: FeatureExtractor,
    store: FeatureStore,
    batches: list[list[tuple[str, str]]],
    on_batch: Callable[[float, int, list[tuple[str, str]]], None],
) -> None:
    """Decode ahead by one batch, extract, write one shard per batch."""
    with ThreadPoolExecutor(max_workers=1) as decoder:
        pending = decoder.submit(_decode, [p for p, _ in batches[0]], extractor.sample_rate) if batches else None
        for bi, batch in enumerate(batches):
            assert pending is not None
            decoded = pending.result()
            if bi + 1 < len(batches):
                pending = decoder.submit(_decode, [p for p, _ in batches[bi + 1]], extractor.sample_rate)
            good = [(key, samples) for (path, key), (samples, err) in zip(batch, decoded) if samples is not None]
            failures = [(path, err) for (path, _), (_, err) in zip(batch, decoded) if err is not None]
            if good:
                feats = extractor.extract([s for _, s in good])
                store.write(extractor=extractor, keys=[k for k, _ in good], features=feats)
            if failures:
                store.record_failures(extractor=extractor, failures=failures)
            on_batch(sum(len(s) for _, s in good) / extractor.sample_rate, len(good), failures)


def _worker(spec: str, options: dict[str, Any], store_root: str, batches: list[list[tuple[str, str]]], queue: Any) -> None:
    extractor = get_extractor(spec, **options)
    _run_batches(extractor=extractor, store=FeatureStore(root=store_root), batches=batches,
                 on_batch=lambda secs, n, fails: queue.put((secs, n, fails)))  # fmt: skip


def extract_to_store(
    *,
    paths: Sequence[str | os.PathLike],
    extractor: FeatureExtractor,
    store: FeatureStore,
    durations: Sequence[float] | None = None,
    batch_seconds: float = 120.0,
    max_batch_items: int = 64,
    workers: int = 1,
    progress: bool = True,
) -> ExtractSummary:
    """Compute what the store lacks for ``paths``; see the module docstring.

    ``workers`` > 1 runs that many processes, each with its own copy of the model (give each
    ``threads`` = cores / workers through the extractor's options).
    """
    start = time.perf_counter()
    summary = ExtractSummary()
    paths = [str(p) for p in paths]
    keys = content_keys(paths)
    done = store.keys(extractor=extractor)
    todo: dict[str, str] = {}  # content key -> first path with that content
    for p, k in zip(paths, keys):
        if k is None:
            summary.failures.append((p, "file not found or not readable"))
        elif k in done:
            summary.skipped += 1
        else:
            todo.setdefault(k, p)
    items = [(p, k) for k, p in todo.items()]
    known = dict(zip(paths, durations)) if durations is not None else {}
    secs = [_duration(p, known.get(p)) for p, _ in items]
    order = sorted(range(len(items)), key=lambda i: secs[i])
    groups = duration_batches(order, secs, batch_seconds=batch_seconds, max_items=max_batch_items)
    batches = [[items[i] for i in b] for b in groups]
    total_audio = float(sum(secs))

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[files]} files"),
               TextColumn("{task.fields[rate]}x real time"), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(f"{extractor.spec}", total=max(total_audio, 1e-9), files=0, rate="-")

        def on_batch(audio: float, n: int, fails: list[tuple[str, str]]) -> None:
            summary.done += n
            summary.audio_seconds += audio
            summary.failures.extend(fails)
            elapsed = time.perf_counter() - start
            bar.update(task, advance=audio, files=summary.done,
                       rate=f"{summary.audio_seconds / max(elapsed, 1e-9):.0f}")  # fmt: skip

        if workers <= 1 or len(batches) < 2:
            _run_batches(extractor=extractor, store=store, batches=batches, on_batch=on_batch)
        else:
            _run_parallel(extractor=extractor, store=store, batches=batches, workers=workers, on_batch=on_batch)
    summary.failed = len(summary.failures)
    summary.seconds = time.perf_counter() - start
    folder = store.folder(extractor)
    summary.disk_bytes = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0
    return summary


def _run_parallel(*, extractor: FeatureExtractor, store: FeatureStore, batches: list[list[tuple[str, str]]],
                  workers: int, on_batch: Callable[[float, int, list[tuple[str, str]]], None]) -> None:  # fmt: skip
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")
    options = {f.name: getattr(extractor.config, f.name) for f in dataclasses.fields(extractor.config)}
    with ctx.Manager() as manager:
        q = manager.Queue()
        procs = [
            ctx.Process(target=_worker, args=(extractor.spec, options, str(store.root), batches[w::workers], q))
            for w in range(workers)
        ]
        for p in procs:
            p.start()
        remaining = len(batches)
        while remaining:
            try:
                on_batch(*q.get(timeout=1.0))
                remaining -= 1
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs):
                    break
        for p in procs:
            p.join()
        bad = [p.exitcode for p in procs if p.exitcode]
        if bad:
            raise RuntimeError(f"{len(bad)} extraction worker(s) failed (exit codes {bad}); rerun to resume")
