"""Find every supported corpus below a folder and list its utterances in one manifest.

>>> from emolingua.corpora import scan_corpora
>>> result = scan_corpora(root="../shared/corpora")              # doctest: +SKIP
>>> result.manifest.groupby("corpus").size()                    # doctest: +SKIP

Each file is offered to every reader; the reader whose naming it follows claims it (a
reader whose ``folder_hint`` matches a folder above the file wins a tie). A reader's files
are then split into *copies* of the corpus: two folders that hold the same utterance keys
are two copies (for example EmoDB and an unaltered subset of it), and each copy becomes
one corpus in the manifest. Unreadable files are reported with their reason and left out;
the rest of the corpus is still listed.

Folders reached through a symbolic link are scanned (data kept on another disk is the usual
case), each real folder once: a second link to a folder already seen, or a link back to an
ancestor, is skipped. Paths in the manifest are kept as reached below the root, through the
link, so they follow the user's layout and stay valid while the link does.

Every row carries its ``content`` key (:func:`emolingua.fileio.content_key`, the key of the
feature store); files with the same bytes under several paths are listed in
:attr:`ScanResult.duplicates`, and the split protocols keep them on one side of every fold.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from emolingua.audio import AudioError, is_audio_path, probe_audio
from emolingua.corpora.base import CorpusReader, Utterance, get_reader, name_list, readers
from emolingua.errors import ConfigError, InputFileError
from emolingua.fileio import atomic_write, content_keys
from emolingua.taxonomy import prior

__all__ = [
    "MANIFEST_COLUMNS",
    "CorpusSummary",
    "DuplicateGroup",
    "FileError",
    "ScanResult",
    "check_manifest_output",
    "find_audio_files",
    "read_manifest",
    "scan_corpora",
    "write_manifest",
]

MANIFEST_COLUMNS = [
    "path", "corpus", "reader", "language", "speaker", "gender", "label", "label_native", "intensity",
    "text_id", "duration", "sample_rate", "arousal", "valence", "dominance", "av_source", "content",
]  # fmt: skip


_TEXT_COLUMNS = frozenset(
    {"path", "corpus", "reader", "language", "speaker", "gender", "label", "label_native", "intensity", "text_id",
     "av_source", "content"}
)  # fmt: skip
_FORMATS = (".parquet", ".csv", ".jsonl")
_HOW_TO_WRITE = "write one with `emolingua corpora scan ROOT -o manifest.parquet`"


@dataclass(frozen=True)
class FileError:
    path: str
    reason: str


@dataclass
class CorpusSummary:
    """One found copy of a corpus: what ``corpora scan --json`` prints for it."""

    name: str
    reader: str
    language: str
    root: str
    files: int = 0
    speakers: int = 0
    minutes: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)
    unlabelled: int = 0
    errors: list[FileError] = field(default_factory=list)


@dataclass(frozen=True)
class DuplicateGroup:
    """Manifest rows whose files hold the same bytes: their content key, corpora and paths."""

    content: str
    corpora: list[str]
    paths: list[str]


@dataclass
class ScanResult:
    manifest: pd.DataFrame
    corpora: list[CorpusSummary]
    duplicates: list[DuplicateGroup] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"corpora": [asdict(c) for c in self.corpora],
                           "duplicates": [asdict(d) for d in self.duplicates]}, indent=2, ensure_ascii=False)  # fmt: skip

    def duplicate_counts(self) -> dict[str, int]:
        """Groups of duplicates per corpus, or per ``a+b`` for groups that span corpora."""
        return dict(sorted(Counter("+".join(d.corpora) for d in self.duplicates).items()))


def find_audio_files(root: str | os.PathLike) -> list[Path]:
    """Every file below ``root`` with an audio extension, sorted; linked folders are followed,
    each real folder once (so a link to an ancestor cannot loop)."""
    found: list[Path] = []
    seen = {_identity(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            # marked when listed, not when entered: the copy nearest the root wins over deeper links
            identity = _identity(os.path.join(dirpath, d))
            if identity is not None and identity not in seen:
                seen.add(identity)
                keep.append(d)
        dirnames[:] = keep
        found.extend(Path(dirpath, f) for f in filenames if is_audio_path(f) and not f.startswith("."))
    return sorted(found)


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """The real folder behind ``path`` (device, inode); None for a broken link."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _claim(path: Path, candidates: Sequence[CorpusReader]) -> tuple[CorpusReader, Utterance] | None:
    """The reader (and its parse) that claims ``path``; a hinted reader wins ties."""
    parsed = [(r, u) for r in candidates if (u := r.parse(path)) is not None]
    if not parsed:
        return None
    hinted = [(r, u) for r, u in parsed if r.hinted(path)]
    return (hinted or parsed)[0]


def _split_copies(items: list[tuple[PurePosixPath, str]]) -> list[list[int]]:
    """Group file indices into copies of one corpus.

    ``items`` are (path relative to the scan root, utterance key). Below the files' common
    folder, sub-folders that share a key are separate copies; otherwise they are parts of
    one corpus.
    """
    idx = list(range(len(items)))

    def split(members: list[int]) -> list[list[int]]:
        parents = [items[i][0].parent.parts for i in members]
        depth = 0
        while all(len(p) > depth for p in parents) and len({p[depth] for p in parents}) == 1:
            depth += 1
        groups: dict[str, list[int]] = defaultdict(list)
        for i, parts in zip(members, parents):
            groups[parts[depth] if len(parts) > depth else ""].append(i)
        if len(groups) < 2:
            return [members]
        owner: dict[str, str] = {}
        for name, group in groups.items():
            for i in group:
                if owner.setdefault(items[i][1], name) != name:
                    return [copy for g in groups.values() for copy in split(g)]
        return [members]

    return split(idx) if idx else []


def _copy_names(reader: str, roots: list[PurePosixPath]) -> list[str]:
    """Names for the copies of one corpus: the reader's name, or the folder that sets a copy apart."""
    if len(roots) == 1:
        return [reader]
    depth = 0
    while all(len(r.parts) > depth for r in roots) and len({r.parts[depth] for r in roots}) == 1:
        depth += 1
    names: list[str] = []
    for r in roots:
        folder = r.parts[depth] if len(r.parts) > depth else ""
        name = folder if folder.lower().startswith(reader) else f"{reader}-{folder}" if folder else reader
        base, n = name, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def _common_root(paths: Iterable[PurePosixPath]) -> PurePosixPath:
    return PurePosixPath(os.path.commonpath([str(p.parent) for p in paths]) or ".")


def _probe_all(paths: list[Path], workers: int) -> list[object]:
    def one(p: Path) -> object:
        try:
            return probe_audio(p)
        except AudioError as exc:
            return FileError(path=str(p), reason=exc.reason)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, paths))


def _load_ratings(path: str | os.PathLike) -> pd.DataFrame:
    return read_manifest(path, what="ratings file")


def scan_corpora(
    *,
    root: str | os.PathLike,
    corpora: Sequence[str] | None = None,
    ratings: str | os.PathLike | None = None,
    workers: int = 8,
) -> ScanResult:
    """Scan ``root`` for every supported corpus (or only ``corpora``) and build the manifest.

    ``corpora`` is a list of reader names (``None``: every registered reader); an unknown
    name raises :class:`~emolingua.errors.ConfigError` naming the known ones. ``ratings`` is
    an optional CSV/Parquet/JSONL with ``path`` and ``arousal`` / ``valence`` columns on the
    0..1 scale of :mod:`emolingua.taxonomy`; its values override the priors (matched on the
    resolved path, else on the file stem).

    >>> res = scan_corpora(root="corpora", corpora=["emodb"])      # doctest: +SKIP
    >>> res.duplicates                                              # doctest: +SKIP
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root: expected a folder path, got {type(root).__name__} {root!r}")
    root_path = Path(root).resolve()
    if not root_path.is_dir():
        raise InputFileError(f"{root}: not a folder; give the folder that holds the corpora")
    candidates = _readers_for(corpora)

    claimed: dict[str, list[tuple[Path, Utterance]]] = defaultdict(list)
    unclaimed: list[Path] = []
    by_name = {r.name: r for r in candidates}
    for path in find_audio_files(root_path):
        hit = _claim(path, candidates)
        if hit is None:
            unclaimed.append(path)
        else:
            claimed[hit[0].name].append((path, hit[1]))

    copies: list[tuple[CorpusReader, PurePosixPath, list[tuple[Path, Utterance]]]] = []
    for name, files in claimed.items():
        reader = by_name[name]
        rel = [(PurePosixPath(p.relative_to(root_path).as_posix()), u.key or p.stem) for p, u in files]
        for members in _split_copies(rel):
            copies.append((reader, _common_root(rel[i][0] for i in members), [files[i] for i in members]))

    names_of: dict[int, str] = {}
    for name in claimed:
        mine = [i for i, c in enumerate(copies) if c[0].name == name]
        for i, copy_name in zip(mine, _copy_names(name, [copies[i][1] for i in mine])):
            names_of[i] = copy_name

    all_paths = [p for _, _, files in copies for p, _ in files]
    probes = dict(zip(all_paths, _probe_all(all_paths, workers)))
    rating_table = _load_ratings(ratings) if ratings is not None else None

    rows: list[dict[str, object]] = []
    summaries: list[CorpusSummary] = []
    for i, (reader, rel_root, files) in enumerate(copies):
        summary = CorpusSummary(
            name=names_of[i], reader=reader.name, language=reader.language, root=str(root_path / rel_root)
        )
        seen: dict[str, Path] = {}
        for path, utt in files:
            info = probes[path]
            key = utt.key or path.stem
            if isinstance(info, FileError):
                summary.errors.append(info)
                continue
            if key in seen:
                summary.errors.append(FileError(str(path), f"duplicate of {seen[key]} (same utterance)"))
                continue
            seen[key] = path
            rows.append(_row(reader, summary.name, path, utt, info))
        root_abs = root_path / rel_root
        for path in unclaimed:
            if path.is_relative_to(root_abs) and not reader.ignores(path):
                summary.errors.append(FileError(str(path), f"file name does not follow the {reader.name} naming"))
        summaries.append(summary)

    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    keys = content_keys(manifest["path"].tolist(), workers=workers)
    manifest["content"] = pd.Series([k or "" for k in keys], dtype=object)  # "": unreadable since its probe
    if rating_table is not None:
        manifest = _apply_ratings(manifest, rating_table)
    for summary in summaries:
        part = manifest[manifest["corpus"] == summary.name]
        summary.files = len(part)
        summary.speakers = int(part["speaker"].replace("", np.nan).nunique())
        summary.minutes = round(float(part["duration"].sum()) / 60.0, 2)
        labelled = part[part["label"] != ""]
        summary.labels = dict(sorted(Counter(labelled["label"]).items()))
        summary.unlabelled = len(part) - len(labelled)
    summaries.sort(key=lambda s: s.name)
    manifest = manifest.sort_values(["corpus", "path"], kind="stable").reset_index(drop=True)
    return ScanResult(manifest=manifest, corpora=summaries, duplicates=_duplicates(manifest))


def _readers_for(corpora: object) -> list[CorpusReader]:
    """The readers to scan with: every registered one for ``None``, else the named ones."""
    known = readers()
    if corpora is None:
        return [cls() for cls in known.values()]
    names = name_list(corpora, argument="corpora")
    if not names:
        raise ValueError("corpora: empty list; name at least one corpus, or pass None for every corpus")
    if unknown := [n for n in names if n not in known]:
        raise ConfigError(f"unknown corpus {', '.join(map(repr, unknown))}; known corpora: {', '.join(sorted(known))}")
    return [get_reader(n) for n in dict.fromkeys(names)]


def _duplicates(manifest: pd.DataFrame) -> list[DuplicateGroup]:
    """Groups of rows with the same (known) content key, in a stable order."""
    content = manifest["content"]
    shared = manifest[(content != "") & content.duplicated(keep=False)]
    groups = [DuplicateGroup(content=str(key), corpora=sorted(set(rows["corpus"])), paths=sorted(rows["path"]))
              for key, rows in shared.groupby("content", sort=False)]  # fmt: skip
    return sorted(groups, key=lambda g: (g.corpora, g.paths))


def _row(reader: CorpusReader, corpus: str, path: Path, utt: Utterance, info: object) -> dict[str, object]:
    label = utt.label if utt.label is not None else reader.canonical(utt.label_native)
    if utt.arousal is not None or utt.valence is not None:
        arousal, valence, source = utt.arousal, utt.valence, "rating"
    else:
        arousal, valence = prior(label, intensity=utt.intensity)
        source = "prior" if label else ""
    return {
        "path": str(path),
        "corpus": corpus,
        "reader": reader.name,
        "language": reader.language,
        "speaker": f"{reader.name}:{utt.speaker}" if utt.speaker else "",
        "gender": utt.gender or "",
        "label": label,
        "label_native": utt.label_native,
        "intensity": utt.intensity or "",
        "text_id": utt.text_id or "",
        "duration": info.duration,  # type: ignore[attr-defined]
        "sample_rate": info.sample_rate,  # type: ignore[attr-defined]
        "arousal": np.nan if arousal is None else float(arousal),
        "valence": np.nan if valence is None else float(valence),
        "dominance": np.nan if utt.dominance is None else float(utt.dominance),
        "av_source": source,
    }


def _apply_ratings(manifest: pd.DataFrame, ratings: pd.DataFrame) -> pd.DataFrame:
    out = manifest.copy()
    by_path = {str(Path(p).resolve()): r for p, r in zip(ratings["path"], ratings.to_dict("records"))}
    stems = Counter(Path(p).stem for p in ratings["path"])
    by_stem = {Path(p).stem: r for p, r in zip(ratings["path"], ratings.to_dict("records")) if stems[Path(p).stem] == 1}
    for i, path in enumerate(out["path"]):
        rec = by_path.get(path) or by_stem.get(Path(path).stem)
        if rec is None:
            continue
        for col in ("arousal", "valence", "dominance"):
            if col in rec and pd.notna(rec[col]):
                out.at[i, col] = float(rec[col])
        out.at[i, "av_source"] = "user"
    return out


def _manifest_format(p: Path, *, what: str) -> str:
    suffix = p.suffix.lower()
    if suffix not in _FORMATS:
        raise InputFileError(f"{p}: unknown {what} format {suffix or '(no extension)'!r}; use .parquet, .csv or .jsonl")
    return suffix


def check_manifest_output(path: str | os.PathLike) -> Path:
    """Fail now, before any work, if a manifest cannot be written at ``path``."""
    p = Path(path)
    _manifest_format(p, what="manifest")
    if p.is_dir():
        raise InputFileError(f"{p}: is a folder; give a file name such as {p / 'manifest.parquet'}")
    folder = next((f for f in (p.parent, *p.parent.parents) if f.exists()), Path("."))
    if not folder.is_dir():
        raise InputFileError(f"{p}: cannot create the folder, {folder} is a file; choose another location")
    if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise InputFileError(f"{p}: not writable (permission denied on {p if p.exists() else folder}); "
                             "choose another location")  # fmt: skip
    return p


def write_manifest(manifest: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write by extension: ``.parquet``, ``.csv`` or ``.jsonl``; atomically (a reader sees the
    old file or the whole new one). An unwritable location raises InputFileError naming it."""
    p = check_manifest_output(path)
    suffix = p.suffix.lower()
    try:
        with atomic_write(p, "wb") as f:
            if suffix == ".parquet":
                manifest.to_parquet(f, index=False)
            elif suffix == ".csv":
                manifest.to_csv(f, index=False, encoding="utf-8")
            else:
                manifest.to_json(f, orient="records", lines=True, force_ascii=False)
    except OSError as exc:  # a full disk, a read-only mount, a race with the checks above
        raise InputFileError(f"{p}: cannot write the manifest ({exc.strerror or exc}); choose another location") from exc
    return p


def read_manifest(path: str | os.PathLike, *, what: str = "manifest") -> pd.DataFrame:
    """Read a manifest (or a ratings table) written by :func:`write_manifest`.

    A file that is missing, unreadable, damaged, of an unknown format or without a ``path``
    column raises :class:`~emolingua.errors.InputFileError` with one line naming the file
    and the reason. A manifest written before ``content`` existed reads as it was (the
    split protocols then find duplicates themselves).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__} {path!r}")
    p = Path(path)
    hint = _HOW_TO_WRITE if what == "manifest" else "it needs a path column and arousal / valence columns"
    if p.is_dir():
        raise InputFileError(f"{p}: is a folder, not a {what} file; {hint}")
    suffix = _manifest_format(p, what=what)
    if not p.exists():
        raise InputFileError(f"{p}: no such file; {hint}")
    if p.stat().st_size == 0:
        raise InputFileError(f"{p}: empty file; {hint}")
    try:
        df = _read_table(p, suffix)
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read the {what} ({exc.strerror or exc}); check its permissions") from exc
    except Exception as exc:  # the parsers raise many types (ArrowInvalid, ParserError, ValueError ...)
        kind = {".parquet": "Parquet", ".csv": "CSV", ".jsonl": "JSON Lines"}[suffix]
        reason = " ".join(str(exc).split()).split(". ")[0] or type(exc).__name__  # the parsers' first sentence
        reason = reason if len(reason) <= 120 else reason[:119] + "…"
        raise InputFileError(f"{p}: not a {kind} file ({reason}); {hint}") from exc
    if "path" not in df.columns:
        columns = ", ".join(repr(str(c)[:30]) for c in df.columns[:8]) + (" ..." if len(df.columns) > 8 else "")
        raise InputFileError(f"{p}: no 'path' column (columns: {columns or 'none'}); {hint}")
    return df


def _read_table(p: Path, suffix: str) -> pd.DataFrame:
    if suffix == ".parquet":
        return pd.read_parquet(p)
    if suffix == ".csv":
        header = pd.read_csv(p, nrows=0).columns
        text = {c: str for c in header if c in _TEXT_COLUMNS}
        return pd.read_csv(p, dtype=text, keep_default_na=False, na_values={c: [""] for c in header if c not in text})
    return pd.read_json(p, orient="records", lines=True, dtype={c: str for c in _TEXT_COLUMNS})
