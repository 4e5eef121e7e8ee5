"""A crash-safe feature store keyed by audio content and the extractor's full configuration.

Layout::

    STORE/<extractor fingerprint>/extractor.json          what the features are
    STORE/<extractor fingerprint>/shards/<id>-<sha>.npz    one batch of entries
    STORE/<extractor fingerprint>/shards/<id>-<sha>.keys   that shard's keys (JSON), its index
    STORE/<extractor fingerprint>/failures.jsonl           files that failed, with reasons
    STORE/<extractor fingerprint>/claims/<batch>.claim     batches a running extraction is computing

A shard is written to a temporary name and renamed into place, so a reader sees a shard
whole or not at all, and a killed run loses at most the batch in flight. The shard's name
carries the SHA-256 of its bytes: a damaged shard is detected on reading, moved aside, and
its entries are computed again by the next run.

Each shard has a small key index beside it, written (atomically) after the shard and naming
the shard's checksum and size. Listing a store (:meth:`FeatureStore.info`, ``keys(verify=False)``)
and choosing which shards a load must open read only these indexes; a missing, damaged or
stale index is rebuilt from its shard, so stores written before indexes existed keep working.
The trade-off: a cheap listing does not see a shard whose bytes were damaged in place (same
size, flipped bits). That damage is found when the shard is actually loaded (every load
verifies the checksum of each shard it opens) or by a verified listing (``keys()`` by
default, which extraction uses, and ``info(verify=True)``), both of which read every shard.

Entries are keyed by content, so files with the same bytes (a copy, a symbolic link, one
path listed twice) share one entry and every one of them reads it back.

A claim is created with ``O_CREAT | O_EXCL`` and names its owner (host, pid, start time):
several processes extracting into one store split the batches between them instead of each
computing everything. A claim whose process is gone from this host, or that is older than
:data:`CLAIM_TIMEOUT`, is stale and may be taken over.

>>> store = FeatureStore(root="features")                          # doctest: +SKIP
>>> pooled, found = store.load_pooled(paths=manifest.path, extractor=ex)   # doctest: +SKIP
>>> got = store.load_streams(paths=manifest.path, extractors=[whisper, egemaps], frames=True)  # doctest: +SKIP
>>> got["egemaps"].pooled.shape, got["egemaps"].found.sum(), got["egemaps"].frames[0]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
import uuid
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from emolingua.features.base import FeatureExtractor, Features
from emolingua.fileio import atomic_write, content_key, content_keys, file_sha256, path_list

try:
    import fcntl
except ImportError:  # not POSIX: appends to failures.jsonl go unlocked
    fcntl = None  # type: ignore[assignment]

__all__ = ["CLAIM_TIMEOUT", "FeatureStore", "Loaded", "StoreInfo", "content_key", "content_keys", "path_list"]

#: Seconds after which a claim is stale even when its owner cannot be checked (another host).
CLAIM_TIMEOUT = 3 * 3600.0


@dataclass(frozen=True)
class StoreInfo:
    """One extractor's part of a store, for ``emolingua features list``; ``problems`` names any damage."""

    fingerprint: str
    extractor: str
    options: dict[str, object]
    entries: int
    shards: int
    failures: int
    bytes: int
    problems: tuple[str, ...] = ()


class Loaded(NamedTuple):
    """One extractor's features aligned to the requested rows.

    ``pooled`` is (N, streams, dim) float32 with NaN rows where ``found`` is False; ``frames``
    maps each found row's frame streams to (T, d) float16 arrays (``None`` for a row without
    frames), and is ``None`` itself unless frames were asked for.
    """

    pooled: np.ndarray
    found: np.ndarray
    frames: list[dict[str, np.ndarray] | None] | None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    return start is None or _process_start(pid) in (None, start)


class FeatureStore:
    """Features on disk, one folder per extractor configuration."""

    def __init__(self, *, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def folder(self, extractor: FeatureExtractor) -> Path:
        return self.root / extractor.fingerprint()

    def _prepare(self, extractor: FeatureExtractor) -> Path:
        """The extractor's folder, created; a missing or damaged ``extractor.json`` is (re)written."""
        folder = self.folder(extractor)
        (folder / "shards").mkdir(parents=True, exist_ok=True)
        meta = folder / "extractor.json"
        try:
            json.loads(meta.read_text())
        except (OSError, ValueError):
            with atomic_write(meta, "w") as f:
                f.write(json.dumps({"spec": extractor.spec, "streams": extractor.streams, **extractor.identity()},
                                   indent=2, default=str))  # fmt: skip
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
        shard = folder / "shards" / f"{uuid.uuid4().hex[:12]}-{_sha(data)}.npz"
        with atomic_write(shard) as f:
            f.write(data)
        # after the shard: an index never names a shard that is not there (a crash in between
        # leaves a shard without index, which the next reader rebuilds)
        _write_index(shard, keys=list(keys), size=len(data))
        return shard

    def record_failures(self, *, extractor: FeatureExtractor, failures: Iterable[tuple[str, str]]) -> None:
        """Add (path, reason) rows to the extractor's failures.jsonl, each pair once.

        A half-written last line (a run killed while appending) is cut off first, so a new
        row never continues a broken one.
        """
        rows = list(dict.fromkeys((str(p), str(r)) for p, r in failures))
        if not rows:
            return
        with open(self._prepare(extractor) / "failures.jsonl", "a+b") as f:
            if fcntl is not None:  # concurrent extractions append to the same file
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            f.seek(0)
            data = f.read()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                f.truncate(complete)
            known = {(row.get("path"), row.get("reason")) for row in _json_lines(data[:complete])}
            lines = "".join(json.dumps({"path": p, "reason": r}) + "\n" for p, r in rows if (p, r) not in known)
            if lines:
                f.write(lines.encode())
                f.flush()
                os.fsync(f.fileno())

    # -- claims -----------------------------------------------------------------------------
    def claim(self, *, extractor: FeatureExtractor, name: str, timeout: float = CLAIM_TIMEOUT) -> Path | None:
        """Claim the batch ``name`` for this process: the claim file, or ``None`` when a live process holds it."""
        claims = self._prepare(extractor) / "claims"
        claims.mkdir(exist_ok=True)
        path = claims / f"{name}.claim"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(path, timeout):
                    return None
                # two processes may both find it stale and both compute the batch: one batch twice, no harm
                path.unlink(missing_ok=True)
                continue
            owner = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid()),
                     "time": time.time()}  # fmt: skip
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(owner))
            return path
        return None

    @staticmethod
    def _stale(path: Path, timeout: float) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        try:
            owner = json.loads(path.read_text())
            host, pid, start = owner["host"], int(owner["pid"]), owner.get("start")
        except FileNotFoundError:
            return True
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return age > 60  # empty or garbled: its writer died between creating and filling it
        if age > timeout:
            return True
        if host == socket.gethostname():
            return pid <= 0 or not _alive(pid, start)
        return False

    @staticmethod
    def release(claim: Path) -> None:
        """Remove a claim made by :meth:`claim`."""
        claim.unlink(missing_ok=True)

    # -- reading ----------------------------------------------------------------------------
    def _shards(self, folder: Path) -> list[Path]:
        shards = folder / "shards"
        return sorted(shards.glob("*.npz")) if shards.is_dir() else []

    @staticmethod
    def _damage(shard: Path, data: bytes | None = None) -> str | None:
        """Why the shard is damaged, or ``None`` when its bytes match the checksum in its name."""
        expected = shard.stem.rsplit("-", 1)[-1]
        return None if (_sha(data) if data is not None else file_sha256(shard)[:16]) == expected else "checksum mismatch"

    @staticmethod
    def _keys_only(shard: Path) -> list[str] | None:
        """The shard's keys: from its index, else from the shard (rebuilding the index); ``None`` when unreadable.

        Raises ``FileNotFoundError`` when the shard is gone (a concurrent quarantine).
        """
        keys = _read_index(shard)
        if keys is not None:
            return keys
        try:
            with np.load(shard, allow_pickle=False) as npz:
                keys = npz["keys"].tolist()
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        _write_index(shard, keys=keys, size=shard.stat().st_size)
        return keys

    def _quarantine(self, shard: Path, reason: str) -> None:
        warnings.warn(f"feature shard {shard} is damaged ({reason}); its entries will be recomputed", stacklevel=3)
        try:
            os.replace(shard, shard.with_suffix(".damaged"))
        except FileNotFoundError:
            pass
        _index_path(shard).unlink(missing_ok=True)

    def shard_keys(self, *, extractor: FeatureExtractor, verify: bool = True, skip: Iterable[str] = ()
                   ) -> dict[str, list[str]]:  # fmt: skip
        """Keys per shard name, from the shards' key indexes; shards named in ``skip`` are not looked at.

        ``verify`` checks each shard's checksum first (a full read) and moves damaged ones aside;
        without it no shard is opened unless its index must be rebuilt.
        """
        skip = set(skip)
        out: dict[str, list[str]] = {}
        for shard in self._shards(self.folder(extractor)):
            if shard.name in skip:
                continue
            try:
                reason = self._damage(shard) if verify else None
                keys = None if reason else self._keys_only(shard)
            except FileNotFoundError:
                continue
            if keys is None:
                if verify:
                    self._quarantine(shard, reason or "unreadable")
                continue
            out[shard.name] = keys
        return out

    def keys(self, *, extractor: FeatureExtractor, verify: bool = True) -> set[str]:
        """Keys of every complete, undamaged entry (see :meth:`shard_keys`; ``verify=False`` reads only the indexes)."""
        return {k for keys in self.shard_keys(extractor=extractor, verify=verify).values() for k in keys}

    def _open_shards(self, folder: Path, wanted: set[str]) -> Iterator[tuple[list[str], Any]]:
        """(keys, open ``NpzFile``) of each undamaged shard holding a key in ``wanted``, one at a time.

        A shard whose index shows none of ``wanted`` is not read. Each opened shard's checksum is
        verified; damaged ones are moved aside.
        """
        for shard in self._shards(folder):
            indexed = _read_index(shard)
            if indexed is not None and wanted.isdisjoint(indexed):
                continue
            try:
                data = shard.read_bytes()
            except FileNotFoundError:
                continue
            reason = self._damage(shard, data)
            if reason is None:
                try:
                    npz = np.load(io.BytesIO(data), allow_pickle=False)
                    keys = npz["keys"].tolist()
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                    reason = f"unreadable: {exc}"
            if reason:
                self._quarantine(shard, reason)
                continue
            if keys != indexed:
                _write_index(shard, keys=keys, size=len(data))
            del data  # the NpzFile holds its own reference: one shard's bytes at a time
            with npz:
                if not wanted.isdisjoint(keys):
                    yield keys, npz

    def _gather(self, *, rows: dict[str, list[int]], n: int, extractor: FeatureExtractor, frames: bool) -> Loaded:
        """The entries of ``rows`` (key -> row numbers), read shard by shard into arrays of ``n`` rows."""
        pooled: np.ndarray | None = None
        found = np.zeros(n, dtype=bool)
        seqs: list[dict[str, np.ndarray] | None] = [None] * n
        for shard_keys, npz in self._open_shards(self.folder(extractor), set(rows)):
            shard_pooled = npz["pooled"]
            if pooled is None:
                pooled = np.full((n, *shard_pooled.shape[1:]), np.nan, dtype=np.float32)
            names = [name for name in npz.files if name.startswith("frames/")] if frames else []
            for j, key in enumerate(shard_keys):
                where = rows.get(key)
                if where is None:
                    continue
                pooled[where] = shard_pooled[j]
                found[where] = True
                if frames:
                    # one dict shared by every row of the same content: twins cost no extra memory
                    seq = {name.split("/")[1]: npz[name] for name in names if name.endswith(f"/{j}")}
                    for i in where:
                        seqs[i] = seq
        if pooled is None:
            pooled = np.full((n, 0, 0), np.nan, dtype=np.float32)
        return Loaded(pooled=pooled, found=found, frames=seqs if frames else None)

    def load(self, *, keys: Sequence[str | None], extractor: FeatureExtractor, frames: bool = False
             ) -> tuple[np.ndarray, np.ndarray, list[dict[str, np.ndarray] | None]]:  # fmt: skip
        """Pooled features aligned with ``keys`` (NaN rows where missing), the found mask, and frames.

        A key may appear several times (the same audio under several paths): every row gets it.
        """
        if isinstance(keys, (str, bytes)) or keys is None or not isinstance(keys, Iterable):
            raise TypeError(f"keys: expected a list of content keys, got {type(keys).__name__} {keys!r:.60}")
        keys = list(keys)
        got = self._gather(rows=_rows(keys), n=len(keys), extractor=extractor, frames=frames)
        return got.pooled, got.found, got.frames if got.frames is not None else [None] * len(keys)

    def load_streams(self, *, paths: Sequence[str | os.PathLike], extractors: Sequence[FeatureExtractor],
                     frames: bool = False, workers: int = 4) -> dict[str, Loaded]:  # fmt: skip
        """Several extractors' features aligned to one list of paths, hashed once: ``{spec: Loaded}``.

        Shards are read one at a time (only those holding a requested entry), so beyond the
        result at most one shard's raw data is held. ``frames`` adds each row's frame sequences.

        >>> got = store.load_streams(paths=manifest.path, extractors=[get_extractor("whisper-base"),
        ...                          get_extractor("egemaps")], frames=True)        # doctest: +SKIP
        >>> X, ok, seqs = got["egemaps"]                                             # doctest: +SKIP
        """
        paths = path_list(paths, "paths")
        if isinstance(extractors, FeatureExtractor) or not isinstance(extractors, Iterable):
            raise TypeError(f"extractors: expected a list of extractors, got {type(extractors).__name__}")
        extractors = list(extractors)
        specs = [ex.spec for ex in extractors]
        if len(set(specs)) < len(specs):
            raise ValueError(f"extractors: each spec may appear once, got {specs}")
        rows = _rows(content_keys(paths, workers=workers))
        return {ex.spec: self._gather(rows=rows, n=len(paths), extractor=ex, frames=frames) for ex in extractors}

    def load_pooled(self, *, paths: Sequence[str | os.PathLike], extractor: FeatureExtractor, workers: int = 4
                    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """All pooled features of ``paths`` in one call: (N, streams, dim) float32 and the found mask.

        >>> X, ok = store.load_pooled(paths=manifest.path, extractor=get_extractor("whisper-base"))  # doctest: +SKIP
        """
        got = self.load_streams(paths=paths, extractors=[extractor], workers=workers)[extractor.spec]
        return got.pooled, got.found

    # -- inspection -------------------------------------------------------------------------
    def info(self, *, verify: bool = False) -> list[StoreInfo]:
        """What the store holds, one row per extractor configuration; damage is reported, not raised.

        Entries are counted from the shards' key indexes (a missing or stale one is rebuilt from
        its shard); nothing else is moved or repaired. ``verify`` also checks every shard's
        checksum, a full read of the store (see the module docstring for the trade-off).
        """
        out: list[StoreInfo] = []
        if not self.root.is_dir():
            return out
        folders = [p for p in self.root.iterdir() if (p / "extractor.json").exists() or (p / "shards").is_dir()]
        for folder in sorted(folders):
            problems: list[str] = []
            try:
                meta = json.loads((folder / "extractor.json").read_text())
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                meta = {}
                problems.append(f"extractor.json is damaged or missing ({exc}); the next extraction rewrites it")
            shards = self._shards(folder)
            keys: set[str] = set()
            for shard in shards:
                try:
                    reason = self._damage(shard) if verify else None
                    found = None if reason else self._keys_only(shard)
                except OSError as exc:
                    reason, found = f"unreadable: {exc.strerror or exc}", None
                if found is None:
                    problems.append(f"shard {shard.name} is damaged ({reason or 'unreadable'}); "
                                    f"the next extraction recomputes its entries")  # fmt: skip
                    continue
                keys.update(found)
            set_aside = len(list((folder / "shards").glob("*.damaged")))
            if set_aside:
                problems.append(f"{set_aside} damaged shard(s) set aside as *.damaged (safe to delete)")
            failed, failure_problem = _read_failures(folder / "failures.jsonl")
            if failure_problem:
                problems.append(failure_problem)
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            options = meta.get("options", {})
            out.append(StoreInfo(fingerprint=folder.name, extractor=str(meta.get("spec", "?")),
                                 options=options if isinstance(options, dict) else {}, entries=len(keys),
                                 shards=len(shards), failures=failed, bytes=size,
                                 problems=tuple(problems)))  # fmt: skip
        return out


def _rows(keys: Sequence[str | None]) -> dict[str, list[int]]:
    """Each content key's row numbers in ``keys`` (``None``, an unreadable file, has no row)."""
    rows: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k is not None:
            if not isinstance(k, str):
                raise TypeError(f"keys[{i}]: expected a content key (str) or None, got {type(k).__name__}")
            rows.setdefault(k, []).append(i)
    return rows


def _index_path(shard: Path) -> Path:
    return shard.with_suffix(".keys")


def _read_index(shard: Path) -> list[str] | None:
    """The keys in the shard's index, or ``None`` when it is missing, damaged or not this shard's.

    The index must name the checksum in the shard's file name and the shard's current size, so an
    index left over from another shard or a truncated shard is not trusted.
    """
    try:
        index = json.loads(_index_path(shard).read_text())
        keys = index["keys"]
        valid = (index["shard_sha"] == shard.stem.rsplit("-", 1)[-1] and index["size"] == shard.stat().st_size
                 and isinstance(keys, list) and all(isinstance(k, str) for k in keys))  # fmt: skip
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return keys if valid else None


def _write_index(shard: Path, *, keys: list[str], size: int) -> None:
    """Write the shard's key index; a store we may not write to simply stays without one."""
    index = {"shard_sha": shard.stem.rsplit("-", 1)[-1], "size": size, "keys": keys}
    try:
        with atomic_write(_index_path(shard), "w") as f:
            f.write(json.dumps(index))
    except OSError:
        pass


def _json_lines(data: bytes) -> Iterator[dict[str, Any]]:
    """The JSON objects of ``data``'s lines, skipping damaged ones."""
    for line in data.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield row


def _read_failures(path: Path) -> tuple[int, str | None]:
    """Distinct failed paths in a failures.jsonl, and what is wrong with the file, if anything."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, None
    except OSError as exc:
        return 0, f"failures.jsonl is unreadable ({exc.strerror or exc})"
    lines = data.splitlines()
    rows = list(_json_lines(data))
    problem = None
    if data and not data.endswith(b"\n"):
        problem = "failures.jsonl ends in a half-written line; the next extraction cuts it off"
    elif len(rows) < len([x for x in lines if x.strip()]):
        problem = f"failures.jsonl has {len(lines) - len(rows)} damaged line(s), which are ignored"
    return len({r.get("path") for r in rows}), problem
