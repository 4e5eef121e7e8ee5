"""``emolingua predict``: many recordings through a pipeline, rows written as each file finishes.

>>> files = expand_inputs(["talks/", "extra/*.mp3"])                           # doctest: +SKIP
>>> failed = predict_to_file(ser=pipeline("emotion"), files=files, output="out.csv")  # doctest: +SKIP

Inputs are files, folders (searched recursively for audio by extension), globs, or ``-`` for a
list of paths on standard input. The table has one row per segment (``kind = segment``) and one
per file (``kind = file``: the duration-weighted summary), indexed by ``(file, start, end)``;
columns ``label``, ``score``, ``p:<label>`` per label, ``arousal``, ``valence``, ``error``. CSV
and JSONL are appended and flushed file by file, Parquet gets a row group per file, so a killed
run keeps every finished file.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Sequence

import pandas as pd

from emolingua.audio import is_audio_path
from emolingua.errors import InputFileError
from emolingua.pipelines import FileResult, Pipeline

__all__ = ["FORMATS", "expand_inputs", "predict_to_file", "result_rows"]

FORMATS = (".csv", ".jsonl", ".parquet")


def expand_inputs(items: Sequence[str], *, stdin: IO[str] | None = None) -> list[str]:
    """Paths from files, folders (recursive; audio extensions only), globs and ``-`` (one path per
    line of ``stdin``), in the order given, each once. A path that does not exist is kept, so that
    it is reported as not found with the other failures; a glob that matches nothing adds nothing.

    >>> expand_inputs(["no/such.wav"])
    ['no/such.wav']
    """
    out: list[str] = []
    for item in items:
        if item == "-":
            lines = (stdin or sys.stdin).read().splitlines()
            out += expand_inputs([line.strip() for line in lines if line.strip() and line.strip() != "-"])
        elif os.path.isdir(item):
            out += sorted(str(p) for p in Path(item).rglob("*") if p.is_file() and is_audio_path(p))
        elif any(c in item for c in "*?[") and not os.path.exists(item):
            out += sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
        else:
            out.append(item)
    return list(dict.fromkeys(out))


def result_rows(result: FileResult, labels: Sequence[str]) -> list[dict[str, Any]]:
    """The table rows of one file: its segments, then its summary."""
    rows = []
    summary = result.summary
    for kind, entries in (("segment", result.segments), ("file", [summary])):
        for s in entries:
            row: dict[str, Any] = {"file": result.file, "start": s["start"], "end": s["end"], "kind": kind,
                                   "label": s.get("label", ""), "score": s.get("score", math.nan)}  # fmt: skip
            scores = s.get("scores", {})
            row.update({f"p:{c}": scores.get(c, math.nan) for c in labels})
            row["arousal"] = s.get("arousal", math.nan)
            row["valence"] = s.get("valence", math.nan)
            row["error"] = result.error or s.get("note", "")
            rows.append(row)
    return rows


class _Writer:
    """Appends rows to CSV / JSONL (flushed) or Parquet (a row group per call)."""

    def __init__(self, path: Path) -> None:
        if path.suffix not in FORMATS:
            raise InputFileError(f"{path}: unknown output format; use {', '.join(FORMATS)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._parquet: Any = None
        self._file = None if path.suffix == ".parquet" else open(path, "w", encoding="utf-8", newline="")
        self._header = True

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        frame = pd.DataFrame(rows)
        if self.path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
            return
        assert self._file is not None
        if self.path.suffix == ".csv":
            frame.to_csv(self._file, header=self._header, index=False)
        else:
            for row in rows:
                self._file.write(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                             for k, v in row.items()}) + "\n")  # fmt: skip
        self._header = False
        self._file.flush()

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._file is not None:
            self._file.close()


def predict_to_file(*, ser: Pipeline, files: Iterable[str], output: str | os.PathLike | None = None,
                    segments: str | None = None, on_result: Callable[[FileResult], None] | None = None,
                    on_progress: Callable[[str, float], None] | None = None, **options: Any) -> dict[str, str]:  # fmt: skip
    """Run ``files`` through ``ser``, append each file's rows to ``output`` (when given) as it
    finishes, call ``on_result`` with each result (and ``on_progress`` as :meth:`Pipeline.predict`
    does); returns ``{file: reason}`` of the failures."""
    writer = _Writer(Path(output)) if output is not None else None
    failed: dict[str, str] = {}
    try:
        for result in ser.predict(files, segments=segments, on_progress=on_progress, **options):
            if result.error:
                failed[result.file] = result.error
            if writer is not None:
                writer.write(result_rows(result, ser.labels))
            if on_result is not None:
                on_result(result)
    finally:
        if writer is not None:
            writer.close()
    return failed
