"""Is extraction from original-rate WAV files as fast as from 16 kHz FLAC copies?

Decoding and resampling run in a thread beside the encoder, so a folder of 44.1/48 kHz WAV
files (what a user usually has) should extract at nearly the speed of the 16 kHz FLAC copy
(issue target: at least 70 %). This script takes ``--files`` random files of a corpus
manifest, writes them as 48 kHz 16-bit WAV (soxr, high quality) into a temporary folder, and
extracts both sets into fresh stores with the default extractor, alternating the order over
``--rounds`` rounds in one run (a busy machine then slows both alike).

    .venv/bin/python benchmarks/resampled_input.py --manifest manifest.parquet --files 200 --rounds 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from emolingua.corpora import read_manifest
from emolingua.features import get_extractor
from emolingua.features.extract import extract_to_store
from emolingua.features.store import FeatureStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--extractor", default="whisper-base")
    args = parser.parse_args()

    df = read_manifest(args.manifest)
    df = df[df["corpus"] == args.corpus]
    flac = df.sample(min(args.files, len(df)), random_state=0)["path"].tolist()
    extractor = get_extractor(args.extractor)
    extractor.extract([np.zeros(16000, dtype=np.float32)])  # load the model outside the timing
    with tempfile.TemporaryDirectory() as tmp:
        wav = []
        for i, path in enumerate(flac):
            x, rate = sf.read(path, dtype="float32")
            out = Path(tmp) / f"{i:04d}.wav"
            sf.write(out, soxr.resample(x, rate, 48000), 48000, subtype="PCM_16")
            wav.append(str(out))
        speed: dict[str, list[float]] = {"wav48k": [], "flac16k": []}
        for rnd in range(args.rounds):
            sets = [("wav48k", wav), ("flac16k", flac)]
            for name, paths in sets if rnd % 2 == 0 else sets[::-1]:
                with tempfile.TemporaryDirectory() as store:
                    s = extract_to_store(paths=paths, extractor=extractor, store=FeatureStore(root=store), progress=False)
                speed[name].append(s.realtime_factor)
                print(f"round {rnd} {name}: {s.done} files, {s.audio_seconds:.0f} s audio, {s.seconds:.1f} s, "
                      f"{s.realtime_factor:.1f}x real time", flush=True)
    ratio = np.mean(speed["wav48k"]) / np.mean(speed["flac16k"])
    print(f"{extractor.spec} ({extractor.config}): 48 kHz WAV speed / 16 kHz FLAC speed = {ratio:.2f}")


if __name__ == "__main__":
    main()
