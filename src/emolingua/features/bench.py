"""Speed of the extractors, measured: audio-seconds per wall-second and peak memory.

Each measurement runs in its own process, so its peak resident memory is its own. The
straightforward reference is measured in the same run: transformers' ``WhisperModel``
called one clip at a time on the 30 s padded input, all hidden states requested.

>>> rows = bench_features(paths=manifest.path, extractors=["whisper-base"])   # doctest: +SKIP
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["BenchRow", "bench_features", "generated_clips"]

REFERENCE = "reference"
REFERENCE_NOTE = "transformers WhisperModel, whisper-base, fp32, 30 s padded, one clip per call"


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


def _load_clips(paths: Sequence[str] | None, generated: int) -> list[np.ndarray]:
    from emolingua.audio import AudioError, load_audio

    if paths is None:
        return generated_clips(n=generated)
    clips = []
    for p in paths:
        try:
            clips.append(load_audio(p).samples)
        except AudioError:
            continue
    return clips


def _measure(spec: str, options: dict[str, Any], paths: Sequence[str] | None, generated: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    clips = _load_clips(paths, generated)  # decoding is not timed: the same for every extractor
    t0 = time.perf_counter()
    if spec == REFERENCE:
        run = _reference_runner()
    else:
        from emolingua.features import get_extractor

        from emolingua.features.extract import duration_batches

        ex = get_extractor(spec, **options)
        ex.extract(clips[:1])  # load weights, warm up
        durations = [len(c) / 16000 for c in clips]
        order = sorted(range(len(clips)), key=lambda i: durations[i])
        batches = duration_batches(order, durations, batch_seconds=120.0, max_items=64)  # as `features extract` does

        def run(batch: list[np.ndarray]) -> None:
            for b in batches:
                ex.extract([batch[i] for i in b])

    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    run(clips)
    wall = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"clips": len(clips), "audio_seconds": sum(len(c) for c in clips) / 16000, "load_seconds": load,
            "wall_seconds": wall, "peak_rss_mb": peak}  # fmt: skip


def _reference_runner():  # type: ignore[no-untyped-def]
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    from emolingua.features.whisper_convert import whisper_base_dir

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

    run([np.zeros(16000, dtype=np.float32)])
    return run


def bench_features(
    *,
    extractors: Sequence[tuple[str, dict[str, Any]]],
    paths: Sequence[str] | None = None,
    reference_paths: Sequence[str] | None = None,
    generated: int = 40,
    threads: int = 2,
) -> list[BenchRow]:
    """Time each (extractor, options) on ``paths`` (or generated clips), then the reference.

    ``reference_paths`` lets the slow reference run on a sample of the same files.
    """
    ctx = mp.get_context("spawn")
    jobs: list[tuple[str, dict[str, Any], Sequence[str] | None]] = [(s, o, paths) for s, o in extractors]
    jobs.append((REFERENCE, {}, reference_paths if reference_paths is not None else paths))
    rows = []
    for spec, options, job_paths in jobs:
        with ctx.Pool(1) as pool:
            res = pool.apply(_measure, (spec, options, list(job_paths) if job_paths is not None else None, generated, threads))
        described = REFERENCE_NOTE if spec == REFERENCE else ", ".join(f"{k}={v}" for k, v in options.items())
        rows.append(BenchRow(extractor=spec, options=described or "defaults", **res))
    return rows


def rows_to_dicts(rows: Sequence[BenchRow]) -> list[dict[str, Any]]:
    return [{**asdict(r), "realtime": r.realtime} for r in rows]
