"""Does the ONNX export of the shipped model give the torch numbers, and how fast is it?

Exports the shipped default pipeline, takes ``--clips`` real recordings spread over the corpora
in ``--corpora`` (seeded), and scores each recording whole, one per call (as ``emolingua
predict --segments none`` does), with three backends in ONE run: torch with the model's own
feature precision (bf16 on CPUs with bfloat16 instructions), torch at fp32, and onnxruntime.
The backends take turns on every clip (the order rotating), so a busy machine slows all
alike; a few warm-up clips are scored first and not timed. The clips are scored ``--passes``
times: torch sets up its kernels once per new input shape (padded to 16 mel frames), so the
first pass shows a fresh process and the second one that has seen those shapes.

Parity: max |p_onnx - p_torch| over all clips and labels (and over arousal / valence), and the
top-label agreement; against torch fp32 it must stay within 1e-3 (the exit status says).

    EMOLINGUA_CACHE=/work/cache .venv/bin/python benchmarks/onnx_parity.py --corpora ../shared/corpora
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from emolingua.audio import is_audio_path, load_audio
from emolingua.export import OnnxRunner, export_onnx
from emolingua.pipelines import Pipeline, resolve_model
from emolingua.system import limited_threads, usable_cores

TOLERANCE = 1e-3
WARMUP = 3


def pick_files(root: Path, *, n: int, seed: int) -> list[Path]:
    """``n`` audio files, as evenly spread over the corpus folders under ``root`` as they allow."""
    rng = np.random.default_rng(seed)
    pools = []
    for corpus in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in corpus.rglob("*") if p.is_file() and is_audio_path(p))
        if files:
            pools.append([files[i] for i in rng.permutation(len(files))])
    picked: list[Path] = []
    while len(picked) < n and any(pools):
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(pool.pop())
    return picked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpora")
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=usable_cores(), help="torch and onnxruntime threads")
    parser.add_argument("--output", type=Path, default=None, help="keep the export here (default: a temporary folder)")
    args = parser.parse_args()

    if not args.corpora.is_dir() or not (files := pick_files(args.corpora, n=args.clips, seed=args.seed)):
        print(f"{args.corpora}: no corpora found (expected folders of audio files, e.g. ../shared/corpora); "
              "give --corpora DIR. Nothing measured.", file=sys.stderr)  # fmt: skip
        return 2
    clips = [load_audio(f).samples for f in files]
    seconds = np.array([len(c) / 16000 for c in clips])
    corpora = sorted({f.relative_to(args.corpora).parts[0] for f in files})
    print(f"{len(clips)} clips from {', '.join(corpora)}: {seconds.sum():.1f} s of audio "
          f"({seconds.min():.1f}..{seconds.max():.1f} s each); {args.threads} threads")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.output or Path(tmp) / "default-onnx"
        start = time.perf_counter()
        export_onnx(model="default", output=folder)
        print(f"exported the default model to {folder} in {time.perf_counter() - start:.1f} s")
        runner = OnnxRunner(folder, threads=args.threads)
        default = resolve_model("default")
        backends = {
            "torch (model's precision)": Pipeline(default, threads=args.threads).score,
            "torch fp32": Pipeline(default, threads=args.threads, precision="fp32").score,
            "onnx (onnxruntime fp32)": runner.score,
        }
        names = list(backends)
        with limited_threads(args.threads):  # as Pipeline.score runs the ONNX runner
            for clip in clips[:WARMUP]:
                for score in backends.values():
                    score([clip])
            wall = {(p, name): np.zeros(len(clips)) for p in range(args.passes) for name in names}
            for p in range(args.passes):
                scores: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in names}
                for i, clip in enumerate(clips):
                    for name in names[i % 3 :] + names[: i % 3]:
                        start = time.perf_counter()
                        scores[name].append(backends[name]([clip]))
                        wall[p, name][i] = time.perf_counter() - start

    stacked = {name: {k: np.concatenate([s[k] for s in rows]) for k in rows[0]} for name, rows in scores.items()}
    onnx = stacked[names[2]]
    print("\nparity of the ONNX scores (all clips)")
    print("| against | max abs diff proba | arousal | valence | same top label |\n|---|---|---|---|---|")
    worst_fp32 = 0.0
    for name in names[:2]:
        ref = stacked[name]
        diffs = {k: float(np.abs(onnx[k] - ref[k]).max()) for k in ref}
        agree = float((onnx["proba"].argmax(1) == ref["proba"].argmax(1)).mean())
        print(f"| {name} | {diffs['proba']:.2e} | {diffs.get('arousal', float('nan')):.2e} | "
              f"{diffs.get('valence', float('nan')):.2e} | {100 * agree:.0f} % |")  # fmt: skip
        if name == "torch fp32":
            worst_fp32 = max(diffs.values())

    print(f"\nspeed, one clip per call ({len(clips)} clips, {seconds.sum():.1f} s of audio; warm-up excluded)")
    print("| pass | backend | audio s / wall s | ms per clip (mean) | ms per clip (median) |\n|---|---|---|---|---|")
    for (p, name), w in wall.items():
        print(f"| {p + 1} | {name} | {seconds.sum() / w.sum():.1f} | {1000 * w.mean():.1f} | {1000 * np.median(w):.1f} |")

    # another busy process on the machine slows every backend (torch's thread team the most)
    print(f"load average over the last minute at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    ok = worst_fp32 <= TOLERANCE
    print(f"\nONNX vs torch fp32: max abs diff {worst_fp32:.2e} {'<=' if ok else '>'} {TOLERANCE:g}: "
          f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
