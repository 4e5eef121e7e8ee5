"""Peak memory of `emolingua predict` on a long recording: a two-hour file streams through.

    .venv/bin/python benchmarks/predict_long.py [--minutes 120] [--segments vad]

Writes a generated recording (syllable-like speech in stretches of 3-8 s between pauses, 16 kHz
mono FLAC, in a temporary folder), runs the command line on it in a child process, and prints
the child's peak resident memory beside the recording's own size as float32, the rows written and
the speed. A 2-minute recording is run first, so the difference shows what the length adds.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import talk  # noqa: E402  (the tests' speech-like generator)


def write_recording(path: Path, minutes: float, *, seed: int = 0) -> None:
    """``minutes`` of talk written block by block (never held whole)."""
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16", format="FLAC") as f:
        written, k = 0.0, 0
        while written < minutes * 60:
            pattern = [("speech", float(rng.uniform(3, 8))), ("silence", float(rng.uniform(0.5, 2.5)))]
            block = talk(pattern, seed=seed + k)
            f.write(block)
            written += len(block) / 16000
            k += 1


def run(path: Path, segments: str, out: Path) -> dict[str, float]:
    cmd = [str(Path(sys.executable).parent / "emolingua"), "predict", str(path), "--segments", segments,
           "--output", str(out)]  # fmt: skip
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(cmd, check=True, capture_output=True)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    seconds = time.perf_counter() - start
    rows = pd.read_csv(out)
    duration = float(sf.info(str(path)).duration)
    return {"minutes": duration / 60, "peak_rss_mb": max(peak_kb, before) / 1024, "whole_float32_mb": duration * 16000 * 4 / 1e6,
            "segments": int((rows["kind"] == "segment").sum()), "wall_s": seconds, "audio_s_per_s": duration / seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--segments", default="vad")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for minutes in (2.0, args.minutes):
            path = Path(tmp) / f"talk-{minutes:g}min.flac"
            write_recording(path, minutes)
            rows.append(run(path, args.segments, Path(tmp) / f"out-{minutes:g}.csv"))
            # ru_maxrss of children is the largest child so far: run the short one first
        table = pd.DataFrame(rows)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
