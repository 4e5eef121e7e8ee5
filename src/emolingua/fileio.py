"""Small file helpers every layer shares: content keys and atomic writes.

>>> content_key("a.flac")                    # doctest: +SKIP
'3f1c...'
>>> with atomic_write("out/results.json") as f:   # doctest: +SKIP
...     f.write(b"{}")
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

from emolingua.errors import InputFileError

__all__ = ["atomic_write", "check_writable", "content_key", "content_keys", "file_sha256", "path_list"]

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """The full hex SHA-256 of a file's bytes, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_key(path: str | os.PathLike) -> str:
    """SHA-256 (hex, 32 chars) of a file's bytes: the audio's identity, wherever it lies."""
    return file_sha256(path)[:32]


def content_keys(paths: Sequence[str | os.PathLike], *, workers: int = 4) -> list[str | None]:
    """:func:`content_key` of many files in parallel; ``None`` for a file that cannot be read."""

    def one(p: str | os.PathLike) -> str | None:
        try:
            return content_key(p)
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, paths))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside ``path``; on success fsync it and rename it onto ``path``.

    A reader sees the old file or the whole new one, never half of it; a failed write leaves
    no temporary file behind.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(folder: str | os.PathLike, *, what: str) -> Path:
    """Create ``folder`` if needed and prove that a file can be written in it, before any work.

    >>> check_writable("runs/loso", what="output")      # doctest: +SKIP
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".emolingua-write-test-"):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc).splitlines()[0]
        raise InputFileError(f"{what} {path}: not writable ({why}); choose another folder or fix its permissions") from None
    return path


def path_list(value: Any, name: str) -> list[str]:
    """``value`` as a list of path strings; ``TypeError`` naming ``name`` for a bare path, ``None`` or a number."""
    if isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name}: expected a list of paths, got the single path {os.fsdecode(value)!r}; "
                        f"wrap it in a list")  # fmt: skip
    if value is None or not isinstance(value, Iterable):
        raise TypeError(f"{name}: expected a list of paths, got {type(value).__name__}")
    out = list(value)
    for i, p in enumerate(out):
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"{name}[{i}]: expected a path (str or Path), got {type(p).__name__} {p!r}")
    return [os.fspath(p) for p in out]
