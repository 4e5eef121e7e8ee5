"""Speed of the extractors, measured: audio-seconds per wall-second and peak memory.

Each measurement runs in its own process, so its peak resident memory is its own. Files
are decoded batch by batch (decoding is not timed: it is the same for every extractor), so
memory is bounded by one batch, not by the number of files. The straightforward reference
is measured in the same run: transformers' ``WhisperModel`` called one clip at a time on the
30 s padded input, all hidden states requested.

>>> rows = bench_features(paths=manifest.path, extractors=[("whisper-base", {"precision": "bf16"})])  # doctest: +SKIP
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

__all__ = ["BATCH_SECONDS", "BenchRow", "DEFAULT_EXTRACTORS", "bench_features", "generated_clips", "rows_to_dicts"]

REFERENCE = "reference"
REFERENCE_NOTE = "transformers WhisperModel, whisper-base, fp32, 30 s padded, one clip per call"
#: The three precisions of whisper-base, side by side on the same files.
DEFAULT_EXTRACTORS: tuple[tuple[str, dict[str, Any]], ...] = tuple(
    ("whisper-base", {"precision": p}) for p in ("fp32", "int8", "bf16")
)
#: Audio per batch (and at most 64 clips), as ``features extract`` batches.
BATCH_SECONDS = 120.0
MAX_BATCH_ITEMS = 64


@dataclass(frozen=True)
class BenchRow:
    extractor: str
    options: str
    clips: int
    audio_seconds: float
    load_seconds: float
    wall_seconds: float
    peak_rss_mb: float

    @property
    def realtime(self) -> float:
        return self.audio_seconds / self.wall_seconds


def generated_clips(*, n: int = 40, seconds: tuple[float, float] = (1.0, 6.0), seed: int = 0) -> list[np.ndarray]:
    """Speech-like test signals: harmonic tones with a moving pitch plus noise, 16 kHz."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        length = int(rng.uniform(*seconds) * 16000)
        t = np.arange(length) / 16000
        f0 = 120 + 40 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t)
        phase = 2 * np.pi * np.cumsum(f0) / 16000
        x = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.1 + 0.01 * rng.standard_normal(length)
        clips.append(x.astype(np.float32))
    return clips


def path_batches(paths: Sequence[str], durations: Sequence[float] | None = None) -> list[list[str]]:
    """``paths`` sorted by duration (the manifest's, else the header's) and cut into batches as ``features extract`` does."""
    from emolingua.audio import AudioError, probe_audio
    from emolingua.features.extract import duration_batches

    def duration(i: int) -> float:
        if durations is not None and np.isfinite(durations[i]):
            return float(durations[i])
        try:
            return probe_audio(paths[i], check_tail=False).duration
        except AudioError:
            return 0.0

    secs = [duration(i) for i in range(len(paths))]
    order = sorted(range(len(paths)), key=lambda i: secs[i])
    batches = duration_batches(order, secs, batch_seconds=BATCH_SECONDS, max_items=MAX_BATCH_ITEMS)
    return [[paths[i] for i in b] for b in batches]


def _decoded(batches: list[list[str]] | None, generated: int) -> Iterator[list[np.ndarray]]:
    """Each batch decoded when it is needed; files that fail to decode are left out."""
    from emolingua.audio import AudioError, load_audio

    if batches is None:
        clips = generated_clips(n=generated)
        for start in range(0, len(clips), MAX_BATCH_ITEMS):
            yield clips[start : start + MAX_BATCH_ITEMS]
        return
    for batch in batches:
        clips = []
        for p in batch:
            try:
                clips.append(load_audio(p).samples)
            except AudioError:
                continue
        yield clips


def _measure(spec: str, options: dict[str, Any], batches: list[list[str]] | None, generated: int, threads: int
             ) -> dict[str, Any]:  # fmt: skip
    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if spec == REFERENCE:
        run = _reference_runner()
    else:
        from emolingua.features import get_extractor

        ex = get_extractor(spec, **options)

        def run(clips: list[np.ndarray]) -> None:
            ex.extract(clips)

    run(generated_clips(n=1))  # load weights, warm up
    load = time.perf_counter() - t0
    wall = audio = 0.0
    n = 0
    for clips in _decoded(batches, generated):
        t1 = time.perf_counter()
        run(clips)
        wall += time.perf_counter() - t1
        n += len(clips)
        audio += sum(len(c) for c in clips) / 16000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"clips": n, "audio_seconds": audio, "load_seconds": load, "wall_seconds": wall, "peak_rss_mb": peak}


def _reference_runner() -> Callable[[list[np.ndarray]], None]:
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    from emolingua.features.hf import quiet_loading
    from emolingua.features.whisper_convert import whisper_base_dir

    with quiet_loading():
        path = whisper_base_dir()
        model = WhisperModel.from_pretrained(path).eval()
        fe = WhisperFeatureExtractor.from_pretrained(path)

    def run(clips: list[np.ndarray]) -> None:
        with torch.inference_mode():
            for clip in clips:
                mel = fe(clip, sampling_rate=16000, return_tensors="pt").input_features
                out = model.encoder(mel, output_hidden_states=True)
                n = (len(clip) // 160 + 1) // 2
                for h in out.hidden_states:  # the same pooled statistics the extractor computes
                    torch.cat([h[0, :n].mean(0), h[0, :n].std(0)])

    return run


def bench_features(
    *,
    extractors: Sequence[tuple[str, dict[str, Any]]] = DEFAULT_EXTRACTORS,
    paths: Sequence[str] | None = None,
    durations: Sequence[float] | None = None,
    reference_paths: Sequence[str] | None = None,
    generated: int = 40,
    threads: int = 2,
    reference: bool = True,
) -> list[BenchRow]:
    """Time each (extractor, options) on ``paths`` (or generated clips), then the reference.

    ``durations`` (seconds, aligned with ``paths``) spare reading the headers to batch.
    ``reference_paths`` lets the slow reference run on a sample of the same files.
    Every extractor is built here first, so a wrong name or option fails before any timing.
    """
    from emolingua.features import get_extractor

    for spec, options in extractors:
        get_extractor(spec, **options)
    batches = path_batches(list(paths), durations) if paths is not None else None
    jobs: list[tuple[str, dict[str, Any], list[list[str]] | None]] = [(s, o, batches) for s, o in extractors]
    if reference:
        ref_batches = path_batches(list(reference_paths)) if reference_paths is not None else batches
        jobs.append((REFERENCE, {}, ref_batches))
    ctx = mp.get_context("spawn")
    rows = []
    for spec, options, job_batches in jobs:
        with ctx.Pool(1) as pool:
            res = pool.apply(_measure, (spec, options, job_batches, generated, threads))
        described = REFERENCE_NOTE if spec == REFERENCE else ", ".join(f"{k}={v}" for k, v in options.items())
        rows.append(BenchRow(extractor=spec, options=described or "defaults", **res))
    return rows


def rows_to_dicts(rows: Sequence[BenchRow]) -> list[dict[str, Any]]:
    return [{**asdict(r), "realtime": r.realtime} for r in rows]
