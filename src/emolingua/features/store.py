"""A crash-safe feature store keyed by audio content and the extractor's full configuration.

Layout::

    STORE/<extractor fingerprint>/extractor.json          what the features are
    STORE/<extractor fingerprint>/shards/<id>-<sha>.npz    one batch of entries
    STORE/<extractor fingerprint>/failures.jsonl           files that failed, with reasons

A shard is written to a temporary name and renamed into place, so a reader sees a shard
whole or not at all, and a killed run loses at most the batch in flight. The shard's name
carries the SHA-256 of its bytes: a damaged shard is detected on reading, moved aside, and
its entries are computed again by the next run.

>>> store = FeatureStore(root="features")                          # doctest: +SKIP
>>> pooled, missing = store.load_pooled(paths=manifest.path, extractor=ex)   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from emolingua.features.base import FeatureExtractor, Features
from emolingua.fileio import content_key, content_keys

__all__ = ["FeatureStore", "StoreInfo", "content_key", "content_keys"]


@dataclass(frozen=True)
class StoreInfo:
    """One extractor's part of a store, for ``emolingua features list``."""

    fingerprint: str
    extractor: str
    options: dict[str, object]
    entries: int
    shards: int
    failures: int
    bytes: int


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class FeatureStore:
    """Features on disk, one folder per extractor configuration."""

    def __init__(self, *, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def folder(self, extractor: FeatureExtractor) -> Path:
        return self.root / extractor.fingerprint()

    def _prepare(self, extractor: FeatureExtractor) -> Path:
        folder = self.folder(extractor)
        (folder / "shards").mkdir(parents=True, exist_ok=True)
        meta = folder / "extractor.json"
        if not meta.exists():
            tmp = meta.with_name(f".extractor.{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps({"spec": extractor.spec, "streams": extractor.streams, **extractor.identity()},
                                      indent=2, default=str))  # fmt: skip
            os.replace(tmp, meta)
        return folder

    # -- writing ----------------------------------------------------------------------------
    def write(self, *, extractor: FeatureExtractor, keys: Sequence[str], features: Sequence[Features]) -> Path:
        """Store one batch atomically; returns the shard's path."""
        if len(keys) != len(features):
            raise ValueError("keys and features differ in length")
        folder = self._prepare(extractor)
        arrays: dict[str, np.ndarray] = {
            "keys": np.asarray(keys, dtype="U32"),
            "pooled": np.stack([f.pooled.astype(np.float32) for f in features]),
        }
        for i, f in enumerate(features):
            for stream, seq in (f.frames or {}).items():
                arrays[f"frames/{stream}/{i}"] = np.asarray(seq, dtype=np.float16)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        shards = folder / "shards"
        name = f"{uuid.uuid4().hex[:12]}-{_sha(data)}.npz"
        tmp = shards / f".{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, shards / name)
        return shards / name

    def record_failures(self, *, extractor: FeatureExtractor, failures: Iterable[tuple[str, str]]) -> None:
        """Append (path, reason) lines to the extractor's failures.jsonl."""
        lines = "".join(json.dumps({"path": p, "reason": r}) + "\n" for p, r in failures)
        if lines:
            with open(self._prepare(extractor) / "failures.jsonl", "a") as f:
                f.write(lines)

    # -- reading ----------------------------------------------------------------------------
    def _shards(self, folder: Path) -> list[Path]:
        shards = folder / "shards"
        return sorted(shards.glob("*.npz")) if shards.is_dir() else []

    def _read_shard(self, shard: Path) -> dict[str, np.ndarray] | None:
        """The shard's arrays, or ``None`` (and the shard moved aside) when it is damaged."""
        try:
            data = shard.read_bytes()
        except FileNotFoundError:
            return None
        expected = shard.stem.rsplit("-", 1)[-1]
        if _sha(data) != expected:
            self._quarantine(shard, "checksum mismatch")
            return None
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def _quarantine(self, shard: Path, reason: str) -> None:
        warnings.warn(f"feature shard {shard} is damaged ({reason}); its entries will be recomputed", stacklevel=3)
        try:
            os.replace(shard, shard.with_suffix(".damaged"))
        except FileNotFoundError:
            pass

    def keys(self, *, extractor: FeatureExtractor) -> set[str]:
        """Keys of every complete, undamaged entry."""
        out: set[str] = set()
        for shard in self._shards(self.folder(extractor)):
            arrays = self._read_shard(shard)
            if arrays is not None:
                out.update(arrays["keys"].tolist())
        return out

    def load(self, *, keys: Sequence[str | None], extractor: FeatureExtractor, frames: bool = False
             ) -> tuple[np.ndarray, np.ndarray, list[dict[str, np.ndarray] | None]]:  # fmt: skip
        """Pooled features aligned with ``keys`` (NaN rows where missing), the found mask, and frames."""
        index = {k: i for i, k in enumerate(keys) if k is not None}
        pooled: np.ndarray | None = None
        found = np.zeros(len(keys), dtype=bool)
        seqs: list[dict[str, np.ndarray] | None] = [None] * len(keys)
        for shard in self._shards(self.folder(extractor)):
            arrays = self._read_shard(shard)
            if arrays is None:
                continue
            if pooled is None:
                pooled = np.full((len(keys), *arrays["pooled"].shape[1:]), np.nan, dtype=np.float32)
            for j, key in enumerate(arrays["keys"].tolist()):
                i = index.get(key)
                if i is None:
                    continue
                pooled[i] = arrays["pooled"][j]
                found[i] = True
                if frames:
                    seqs[i] = {name.split("/")[1]: arrays[name] for name in arrays
                               if name.startswith("frames/") and name.endswith(f"/{j}")}  # fmt: skip
        if pooled is None:
            pooled = np.full((len(keys), 0, 0), np.nan, dtype=np.float32)
        return pooled, found, seqs

    def load_pooled(self, *, paths: Sequence[str | os.PathLike], extractor: FeatureExtractor, workers: int = 4
                    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """All pooled features of ``paths`` in one call: (N, streams, dim) float32 and the found mask.

        >>> X, ok = store.load_pooled(paths=manifest.path, extractor=get_extractor("whisper-base"))  # doctest: +SKIP
        """
        pooled, found, _ = self.load(keys=content_keys(list(paths), workers=workers), extractor=extractor)
        return pooled, found

    # -- inspection -------------------------------------------------------------------------
    def info(self) -> list[StoreInfo]:
        """What the store holds, one row per extractor configuration."""
        out: list[StoreInfo] = []
        if not self.root.is_dir():
            return out
        for folder in sorted(p for p in self.root.iterdir() if (p / "extractor.json").is_file()):
            meta = json.loads((folder / "extractor.json").read_text())
            shards = self._shards(folder)
            entries = 0
            for shard in shards:
                with np.load(shard, allow_pickle=False) as npz:
                    entries += len(npz["keys"])
            failures_file = folder / "failures.jsonl"
            failures = len({json.loads(x)["path"] for x in failures_file.read_text().splitlines()}) if failures_file.exists() else 0
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            out.append(StoreInfo(fingerprint=folder.name, extractor=str(meta.get("spec")), options=meta.get("options", {}),
                                 entries=entries, shards=len(shards), failures=failures, bytes=size))  # fmt: skip
        return out
