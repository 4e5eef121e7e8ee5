"""Split protocols over a manifest: speaker-independent by default, folds made per corpus.

>>> from emolingua.protocols import make_splits, describe_splits
>>> splits = make_splits(manifest, protocol="speaker-kfold:5", seed=0)   # doctest: +SKIP
>>> describe_splits(splits)                                              # doctest: +SKIP

Protocols (spec strings, see :func:`parse_protocol`):

``loso``
    Leave one speaker out: fold *k* tests the *k*-th speaker (sorted by id).
``speaker-kfold:K``
    ``StratifiedGroupKFold`` over speakers (``K`` defaults to 5).
``random:A/B/C``
    One stratified utterance-level train/valid/test split in percent, as in Wang et al.
    (2022); ``random`` alone means ``random:70/10/20``. Default seed 12345. Speaker-dependent.
``emobox:DIR``
    EmoBox's published folds, ``DIR/<reader>/fold_k/<reader>_{train,test}_fold_k.jsonl``.

Under ``loso``, ``speaker-kfold`` and ``emobox`` the validation set is carved from each fold's
training rows *by speaker* when the fold allows it, otherwise as a stratified utterance split.
A corpus with fewer than 3 speakers, or with rows lacking a speaker id, cannot be split by
speaker: it gets a stratified utterance-level K-fold split instead (5 folds under ``loso``).

Twins, rows whose files hold the same bytes (the manifest's ``content`` column) or that list
the same path, always take the same role in a fold, or the audio of a test row could be
learnt from its copy. Speaker protocols merge speakers that share a twin into one split group
(a union-find over speakers; a note names them), so both stay together in test, train or
valid; utterance-level splits draw whole twin groups. EmoBox's own folds and the transfer
protocols can still put a twin in two roles; then the copy in the weaker role (train <
valid < test) leaves the fold, with a note. A manifest without a ``content`` column (written
before it existed) gets its twins from the files themselves: every path that exists is hashed
with :func:`emolingua.fileio.content_keys`; a path that does not is its own content.

Everything the caller should know about (fallbacks, fewer folds than asked, skipped corpora,
unmatched EmoBox entries, merged speakers) is emitted as a :class:`SplitNote` warning; catch
them with ``warnings.catch_warnings(record=True)`` to show or log them.

The result is a long table, one row per (utterance, fold): see :data:`SPLIT_COLUMNS`.
``speaker_independent`` states one thing, read from the fold's roles: no test speaker is in
train or valid of that fold. A missing speaker id on a test row, or on a train / valid row of
a corpus that has test rows, could be anyone, so it makes the fold speaker dependent.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import warnings
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold, train_test_split

from emolingua.corpora.base import name_list
from emolingua.errors import ConfigError, InputFileError
from emolingua.fileio import content_keys

__all__ = [
    "KNOWN_PROTOCOLS",
    "valid_speakers",
    "ROLES",
    "SHARED_LABELS",
    "TRANSFER_PROTOCOLS",
    "SPLIT_COLUMNS",
    "Protocol",
    "SplitNote",
    "describe_splits",
    "make_splits",
    "make_transfer_splits",
    "parse_protocol",
    "read_splits",
    "write_splits",
]

#: Spec forms :func:`parse_protocol` understands.
KNOWN_PROTOCOLS = ("loso", "speaker-kfold:K", "random:A/B/C", "emobox:DIR")
#: Roles of a row within one fold.
ROLES = ("train", "valid", "test")
#: Columns of a split table, in order.
SPLIT_COLUMNS = ("path", "corpus", "speaker", "fold", "role", "protocol", "seed", "speaker_independent")

#: Fewer distinct speakers than this and a corpus cannot be split by speaker.
MIN_SPEAKERS = 3
#: Folds of the utterance-level fallback under ``loso``.
LOSO_FALLBACK_FOLDS = 5
#: Random speaker subsets tried when choosing validation speakers.
VALID_CANDIDATES = 64
_FORMATS = (".parquet", ".csv", ".jsonl")


class SplitNote(UserWarning):
    """Something the caller should know about a split (fallback, skipped rows, ...)."""


def _note(message: str) -> None:
    warnings.warn(message, SplitNote, stacklevel=4)  # from most helpers: the caller of make_splits


# --------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol spec; ``str(protocol)`` gives the canonical spec back.

    >>> parse_protocol("speaker-kfold:5")
    Protocol(name='speaker-kfold', k=5, percents=None, folder=None)
    """

    name: str
    k: int | None = None
    percents: tuple[float, float, float] | None = None
    folder: str | None = None

    def __post_init__(self) -> None:
        if self.name not in {spec.split(":")[0] for spec in KNOWN_PROTOCOLS}:
            raise ConfigError(f"unknown protocol {self.name!r}; known: {', '.join(KNOWN_PROTOCOLS)}")
        if self.name == "speaker-kfold" and (self.k is None or self.k < 2):
            raise ConfigError(f"speaker-kfold needs K >= 2, got {self.k}")
        if self.name == "random":
            p = self.percents
            if p is None or len(p) != 3 or p[0] <= 0 or p[1] < 0 or p[2] <= 0 or abs(sum(p) - 100) > 1e-6:
                raise ConfigError(f"random needs train/valid/test percentages summing to 100, got {p}")
        if self.name == "emobox" and not self.folder:
            raise ConfigError("emobox needs a folder: emobox:DIR")

    def __str__(self) -> str:
        if self.name == "speaker-kfold":
            return f"speaker-kfold:{self.k}"
        if self.name == "random":
            return "random:" + "/".join(f"{p:g}" for p in self.percents)
        if self.name == "emobox":
            return f"emobox:{self.folder}"
        return self.name

    @property
    def default_seed(self) -> int:
        """12345 for ``random`` (the seed of Wang et al. 2022), 0 otherwise."""
        return 12345 if self.name == "random" else 0


def parse_protocol(spec: str) -> Protocol:
    """Parse a spec string; unknown names raise ValueError listing the known ones.

    >>> str(parse_protocol("random"))
    'random:70/10/20'
    """
    if not isinstance(spec, str):
        raise TypeError(f"protocol: expected a spec string such as 'loso', got {type(spec).__name__} {spec!r}")
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name == "loso":
        if arg:
            raise ConfigError(f"loso takes no argument, got {spec!r}; known: {', '.join(KNOWN_PROTOCOLS)}")
        return Protocol("loso")
    if name == "speaker-kfold":
        if arg and not arg.strip().isdigit():
            raise ConfigError(f"speaker-kfold:K needs an integer K, got {arg!r}")
        return Protocol("speaker-kfold", k=int(arg) if arg else 5)
    if name == "random":
        try:
            parts = tuple(float(x) for x in (arg or "70/10/20").split("/"))
        except ValueError:
            raise ConfigError(f"random:A/B/C needs three numbers, got {arg!r}") from None
        return Protocol("random", percents=parts)  # type: ignore[arg-type]
    if name == "emobox":
        return Protocol("emobox", folder=arg.strip())
    raise ConfigError(f"unknown protocol {spec!r}; known: {', '.join(KNOWN_PROTOCOLS)}")


# --------------------------------------------------------------------------- make_splits

# One fold of one corpus: its number and a role (or None: not in this fold) per row.
_Fold = tuple[int, np.ndarray]


def make_splits(
    manifest: pd.DataFrame,
    *,
    protocol: str | Protocol,
    seed: int | None = None,
    valid_fraction: float = 0.15,
    stratify_on: str = "label",
) -> pd.DataFrame:
    """Split every corpus of ``manifest`` into folds; one row per (utterance, fold).

    Rows whose ``stratify_on`` value is missing or empty are left out (so unlabelled rows by
    default). ``seed=None`` takes the protocol's default; ``valid_fraction`` is unused by
    ``random`` (whose spec fixes the valid share). Notes arrive as :class:`SplitNote` warnings.

    >>> make_splits(manifest, protocol="loso", seed=1)                       # doctest: +SKIP
    >>> make_splits(manifest, protocol="random:70/10/20")                    # doctest: +SKIP
    >>> make_splits(manifest, protocol="emobox:EmoBox/data", stratify_on="intensity")  # doctest: +SKIP
    """
    proto = protocol if isinstance(protocol, Protocol) else parse_protocol(protocol)
    seed = proto.default_seed if seed is None else _check_seed(seed)
    _check_fraction(valid_fraction)
    _check_manifest(manifest, {"path", "corpus", "speaker", _column(stratify_on, "stratify_on")}
                    | ({"reader"} if proto.name == "emobox" else set()))  # fmt: skip
    if proto.name == "emobox" and not Path(proto.folder).is_dir():
        raise InputFileError(f"{proto.folder}: EmoBox folder not found; give the folder that holds <corpus>/fold_k/")

    table = _normalise(manifest, stratify_on)
    blocks = []
    for corpus, rows in table.groupby("corpus", sort=True):
        rows = rows.sort_values("path", kind="stable").reset_index(drop=True)  # input order must not matter
        eligible = rows[rows["_y"] != ""].reset_index(drop=True)
        eligible["_unit"] = _speaker_units(eligible, note=None if proto.name == "random" else f"{corpus}: ")
        if proto.name == "emobox":
            folds = _emobox_folds(rows, eligible, Path(proto.folder), seed, valid_fraction)
        elif eligible.empty:
            continue
        elif proto.name == "random":
            folds = _random_folds(eligible, proto.percents, seed)
        else:
            folds = _speaker_folds(eligible, proto, seed, valid_fraction)
        # folds ascend and rows are sorted by path, so the blocks come in (corpus, fold, path) order
        blocks += [_block(eligible, fold, roles, where=corpus) for fold, roles in folds]

    splits = pd.concat(blocks, ignore_index=True) if blocks else _coerce(pd.DataFrame(columns=list(SPLIT_COLUMNS)))
    splits["protocol"] = pd.Series([str(proto)] * len(splits), dtype=object)
    splits["seed"] = np.full(len(splits), seed, dtype=np.int64)
    return splits[list(SPLIT_COLUMNS)]


def valid_speakers(manifest: pd.DataFrame, *, fraction: float = 0.15, seed: int = 0, stratify_on: str = "label"
                   ) -> np.ndarray:  # fmt: skip
    """Which rows go to validation when a final model trains on everything: in each corpus about
    ``fraction`` of its speakers (never all; none when it has one), chosen as the folds choose them.

    >>> roles = valid_speakers(manifest, fraction=0.2)        # array of "train" / "valid"  # doctest: +SKIP
    """
    _check_fraction(fraction)
    _check_manifest(manifest, {"path", "corpus", "speaker", _column(stratify_on, "stratify_on")})
    table = _normalise(manifest.reset_index(drop=True), stratify_on)
    table["_row"] = np.arange(len(table))
    roles = np.full(len(table), "train", dtype=object)
    for corpus, rows in table.groupby("corpus", sort=True):
        rows = rows.sort_values("path", kind="stable").reset_index(drop=True)  # input order must not matter
        rows["_unit"] = _speaker_units(rows, note=f"{corpus}: ")
        rng = np.random.default_rng([_check_seed(seed), zlib.crc32(str(corpus).encode())])
        chosen = _valid_speakers(rows["_unit"].to_numpy(), rows["_y"].to_numpy(), fraction, rng)
        roles[rows.loc[rows["_unit"].isin(chosen), "_row"].to_numpy()] = "valid"
    return roles.astype(str)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def _check_fraction(valid_fraction: object) -> None:
    if isinstance(valid_fraction, bool) or not isinstance(valid_fraction, (int, float)) or not 0 <= valid_fraction < 1:
        raise ConfigError(f"valid_fraction: expected a number in [0, 1), got {valid_fraction!r}")


def _column(value: object, argument: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{argument}: expected a column name, got {type(value).__name__} {value!r}")
    return value


def _check_manifest(manifest: object, needed: set[str]) -> None:
    if not isinstance(manifest, pd.DataFrame):
        raise TypeError(f"manifest: expected a pandas DataFrame (read_manifest), got {type(manifest).__name__}")
    if missing := sorted(needed - set(manifest.columns)):
        raise ConfigError(f"manifest lacks column(s): {', '.join(missing)}")


def _normalise(manifest: pd.DataFrame, stratify_on: str) -> pd.DataFrame:
    """Plain-object str columns (fast to index): missing speaker as "", stratification value as ``_y``,
    and the twin group as ``_twin``."""

    def text(column: str, strip: bool = True) -> pd.Series:
        values = manifest[column].astype("string").fillna("")
        return pd.Series((values.str.strip() if strip else values).to_numpy(dtype=object), dtype=object)

    out = pd.DataFrame({"path": text("path", strip=False), "corpus": text("corpus", strip=False)})
    for column in ("speaker", "reader"):
        if column in manifest.columns:
            out[column] = text(column)
    out["_y"] = text(stratify_on)
    content = text("content") if "content" in manifest.columns else _content_of_existing(out["path"])
    out["_twin"] = _twin_groups(out["path"].to_numpy(), content.to_numpy())
    return out


def _content_of_existing(paths: pd.Series) -> pd.Series:
    """Content keys of the paths that are files ("" for the rest): for manifests without ``content``."""
    exists = np.array([os.path.isfile(p) for p in paths], dtype=bool)
    keys = np.full(len(paths), "", dtype=object)
    if exists.any():
        keys[exists] = [k or "" for k in content_keys(list(paths[exists]))]
    return pd.Series(keys, dtype=object)


def _components(n: int, links: Iterable[tuple[int, int]]) -> np.ndarray:
    """Connected components over ``n`` items: each item's component, named by its smallest member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.asarray(list(links), dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    smallest = np.full(label.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(smallest, label, np.arange(n))
    return smallest[label]


def _first_links(keys: Iterable[str]) -> list[tuple[int, int]]:
    """Links from each item to the first item with the same (non-empty) key."""
    first: dict[str, int] = {}
    return [(first.setdefault(k, i), i) for i, k in enumerate(keys) if k]


def _twin_groups(paths: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Rows that share a path or a content key, transitively, get one group id."""
    return _components(len(paths), [*_first_links(paths), *_first_links(content)])


def _speaker_units(rows: pd.DataFrame, *, note: str | None = None) -> np.ndarray:
    """Each row's speaker split unit: its speaker, where speakers linked by twins form one unit
    named by the first of them (so no speaker grouping can put two twins apart). With ``note``
    (a prefix), each merge is reported."""
    codes, names = pd.factorize(rows["speaker"].to_numpy(), sort=True)
    pairs = pd.DataFrame({"twin": rows["_twin"].to_numpy(), "speaker": codes}).drop_duplicates()
    shared = pairs[pairs["twin"].duplicated(keep=False)]  # twin groups spanning speakers
    links = list(zip(shared.groupby("twin")["speaker"].transform("first"), shared["speaker"]))
    if not links:
        return rows["speaker"].to_numpy()
    roots = _components(len(names), links)
    if note is not None:
        for root in sorted(set(roots[roots != np.arange(len(names))])):
            merged = ", ".join(repr(names[i]) for i in np.flatnonzero(roots == root))
            _note(f"{note}speakers {merged} share byte-identical files; split as one speaker")
    return np.asarray(names, dtype=object)[roots][codes]


def _drop_twin_conflicts(rows: pd.DataFrame, roles: np.ndarray, *, where: str, fold: int) -> np.ndarray:
    """Roles where no twin group holds two roles: copies in a weaker role than the group's
    strongest (train < valid < test) leave the fold."""
    rank = np.select([roles == "train", roles == "valid", roles == "test"], [1, 2, 3], 0)
    twin = rows["_twin"].to_numpy()
    top = np.zeros(twin.max() + 1 if len(twin) else 0, dtype=rank.dtype)
    np.maximum.at(top, twin, rank)
    drop = (rank > 0) & (rank < top[twin])
    if not drop.any():
        return roles
    _note(f"{where}: fold {fold}: {int(drop.sum())} row(s) left out, byte-identical to a row in a stronger role "
          f"(e.g. {rows['path'].iat[int(np.flatnonzero(drop)[0])]})")
    roles = roles.copy()
    roles[drop] = None
    return roles


def _representatives(rows: pd.DataFrame, positions: np.ndarray | None = None) -> np.ndarray:
    """The first position of each twin group among ``positions`` (default: every row)."""
    positions = np.arange(len(rows)) if positions is None else positions
    return positions[~pd.Series(rows["_twin"].to_numpy()[positions]).duplicated().to_numpy()]


def _with_twins(rows: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
    """``positions`` and the positions of all their twins, sorted."""
    twin = rows["_twin"].to_numpy()
    return np.flatnonzero(np.isin(twin, twin[positions]))


def _block(rows: pd.DataFrame, fold: int, roles: np.ndarray, *, where: str) -> pd.DataFrame:
    """The output rows of one fold: those of ``rows`` with a role."""
    roles = _drop_twin_conflicts(rows, roles, where=where, fold=fold)
    keep = np.flatnonzero(pd.notna(roles))
    speakers = rows["speaker"].to_numpy()[keep]
    origin = rows["reader"] if "reader" in rows.columns else rows["corpus"]
    origin = np.where(origin == "", rows["corpus"], origin)[keep]
    independent = _speaker_independent(speakers, origin, roles[keep])
    return pd.DataFrame({
        "path": pd.Series(rows["path"].to_numpy()[keep], dtype=object),
        "corpus": pd.Series(rows["corpus"].to_numpy()[keep], dtype=object),
        "speaker": pd.Series(speakers, dtype=object),
        "fold": np.full(len(keep), fold, dtype=np.int64),
        "role": pd.Series(roles[keep], dtype=object),
        "speaker_independent": np.full(len(keep), independent, dtype=bool),
    })


def _speaker_independent(speakers: np.ndarray, origin: np.ndarray, roles: np.ndarray) -> bool:
    """True when no test speaker is in train or valid. A missing id on a test row, or on a
    train / valid row from a corpus (reader, copies included) with test rows, may be a test
    speaker, so it counts as shared."""
    test = roles == "test"
    seen = ~test
    near_test = pd.Series(origin[seen]).isin(set(origin[test])).to_numpy()  # hashing: np.isin sorts objects
    if (speakers[test] == "").any() or (speakers[seen] == "")[near_test].any():
        return False
    return set(speakers[test]).isdisjoint(speakers[seen])


def _speaker_disjoint(speakers: np.ndarray, roles: np.ndarray) -> bool:
    """True when every speaker is known and sits in one role only."""
    if (speakers == "").any():
        return False
    return len(set(zip(speakers, roles))) == len(set(speakers))


def _speaker_folds(rows: pd.DataFrame, proto: Protocol, seed: int, valid_fraction: float) -> list[_Fold]:
    """``loso`` / ``speaker-kfold`` for one corpus, with the utterance-level fallback."""
    corpus = rows["corpus"].iat[0]
    speakers, y = rows["_unit"], rows["_y"]  # speakers merged by twins
    names = sorted(set(speakers) - {""})
    k = LOSO_FALLBACK_FOLDS if proto.name == "loso" else proto.k
    unknown = int((rows["speaker"] == "").sum())
    if unknown or len(names) < MIN_SPEAKERS:
        reason = f"{unknown} of {len(rows)} rows have no speaker id" if unknown else f"only {len(names)} speaker(s)"
        _note(f"{corpus}: {reason}, so a speaker-independent split is impossible; "
              f"using a stratified random utterance-level {k}-fold split (speaker_independent=False)")
        return _utterance_folds(rows, k, seed, valid_fraction)

    if proto.name == "loso":
        tests = [np.flatnonzero(speakers == name) for name in names]
    else:
        if k > len(names):
            _note(f"{corpus}: {proto} asks for {k} folds but there are only {len(names)} speakers; "
                  f"using {len(names)} folds")
            k = len(names)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        strata = y if y.value_counts().max() >= k else np.zeros(len(rows))  # too few per class: groups only
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*least populated class", category=UserWarning)
            tests = [test for _, test in splitter.split(np.zeros(len(rows)), strata, groups=speakers)]
        if empty := sum(len(test) == 0 for test in tests):  # rare: the greedy fold filling can leave one empty
            _note(f"{corpus}: {empty} of {k} speaker folds came out empty; dropped")
            tests = [test for test in tests if len(test)]

    return _folds_from_tests(rows, tests, valid_fraction, seed=seed, by_speaker=True)


def _utterance_folds(rows: pd.DataFrame, k: int, seed: int, valid_fraction: float) -> list[_Fold]:
    """Stratified (when possible) utterance-level K-fold over twin groups; valid carved from train
    by utterance. Without twins, a group is one row."""
    corpus = rows["corpus"].iat[0]
    reps = _representatives(rows)
    y = rows["_y"].to_numpy()[reps]
    k = min(k, len(reps))
    if k < 2:
        _note(f"{corpus}: {len(reps)} usable row(s), too few to split; skipped")
        return []
    stratify = max(Counter(y).values()) >= k
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class", category=UserWarning)
        tests = [_with_twins(rows, reps[test]) for _, test in splitter.split(np.zeros(len(reps)), y)]
    return _folds_from_tests(rows, tests, valid_fraction, seed=seed, by_speaker=False)


def _folds_from_tests(rows: pd.DataFrame, tests: list[np.ndarray], valid_fraction: float, *, seed: int,
                      by_speaker: bool) -> list[_Fold]:  # fmt: skip
    """One fold per test index set: the rest is train, with valid carved from it."""
    folds = []
    for fold, test in enumerate(tests, start=1):
        roles = np.full(len(rows), "train", dtype=object)
        roles[test] = "test"
        _carve_valid(rows, roles, valid_fraction, seed=seed, fold=fold, by_speaker=by_speaker)
        folds.append((fold, roles))
    return folds


def _random_folds(rows: pd.DataFrame, percents: tuple[float, float, float], seed: int) -> list[_Fold]:
    """One stratified split with train/valid/test shares ``percents``, drawn over twin groups
    (a group is one row when there are no twins)."""
    reps = _representatives(rows)
    y = rows["_y"].to_numpy()[reps]
    n = len(reps)
    if n < 2:
        _note(f"{rows['corpus'].iat[0]}: {n} usable row(s), too few to split; skipped")
        return []
    n_test = min(n - 1, max(1, round(n * percents[2] / 100)))
    n_valid = min(n - n_test - 1, round(n * percents[1] / 100))
    roles = np.full(len(rows), "train", dtype=object)
    rest, test = _split_off(np.arange(n), y, n_test, seed)
    roles[_with_twins(rows, reps[test])] = "test"
    _, valid = _split_off(rest, y[rest], n_valid, seed)
    roles[_with_twins(rows, reps[valid])] = "valid"
    return [(1, roles)]


def _split_off(positions: np.ndarray, y: np.ndarray, n_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``train_test_split`` of ``positions`` taking ``n_out`` of them, stratified when feasible."""
    if n_out <= 0 or len(positions) < 2:
        return positions, positions[:0]
    counts = Counter(y)
    feasible = min(counts.values()) >= 2 and len(counts) <= min(n_out, len(positions) - n_out)
    keep, out = train_test_split(positions, test_size=n_out, random_state=seed, stratify=y if feasible else None)
    return np.sort(keep), np.sort(out)


def _carve_valid(
    rows: pd.DataFrame, roles: np.ndarray, fraction: float, *, seed: int, fold: int, by_speaker: bool
) -> None:
    """Turn some ``train`` roles into ``valid`` in place: whole speaker units (``_unit``:
    speakers merged by twins), or whole twin groups of utterances."""
    pool = np.flatnonzero(roles == "train")
    reps = _representatives(rows, pool)
    if fraction <= 0 or len(reps) < 2:
        return
    corpus = rows["corpus"].iat[0]
    rng = np.random.default_rng([seed, zlib.crc32(corpus.encode()), fold])
    if by_speaker:
        speakers = rows["_unit"].to_numpy()[pool]
        chosen = _valid_speakers(speakers, rows["_y"].to_numpy()[pool], fraction, rng)
        if not chosen:
            _note(f"{corpus}: fold {fold} has a single training speaker, so no validation set")
        roles[pool[pd.Series(speakers).isin(chosen).to_numpy()]] = "valid"
    else:
        n_valid = min(len(reps) - 1, max(1, round(fraction * len(reps))))
        _, valid = _split_off(reps, rows["_y"].to_numpy()[reps], n_valid, int(rng.integers(2**31)))
        roles[np.intersect1d(pool, _with_twins(rows, valid))] = "valid"


def _valid_speakers(speakers: np.ndarray, y: np.ndarray, fraction: float, rng: np.random.Generator) -> list[str]:
    """About ``fraction`` of the speakers (at least one, never all), chosen among seeded random
    candidate subsets as the one whose class mix is closest (total variation) to the rest's."""
    speaker_codes, names = pd.factorize(speakers, sort=True)
    if len(names) < 2:
        return []
    n = min(len(names) - 1, max(1, round(fraction * len(names))))
    class_codes, classes = pd.factorize(y)
    counts = np.zeros((len(names), len(classes)))  # speakers x classes
    np.add.at(counts, (speaker_codes, class_codes), 1)
    total = counts.sum(axis=0)

    if math.comb(len(names), n) <= VALID_CANDIDATES:
        candidates = list(itertools.combinations(range(len(names)), n))
        candidates = [candidates[i] for i in rng.permutation(len(candidates))]  # seed breaks ties
    else:
        candidates = [tuple(rng.choice(len(names), size=n, replace=False)) for _ in range(VALID_CANDIDATES)]

    def distance(subset: tuple[int, ...]) -> float:
        valid = counts[list(subset)].sum(axis=0)
        train = total - valid
        return 0.5 * float(np.abs(valid / valid.sum() - train / train.sum()).sum())

    return [names[i] for i in min(candidates, key=distance)]


# --------------------------------------------------------------------------- transfer

#: Transfer protocols: zero-shot to a held-out corpus or language, and few-shot adaptation.
TRANSFER_PROTOCOLS = ("leave-one-corpus-out", "leave-one-language-out", "few-shot:K")
#: The label set scored across corpora unless the caller gives another.
SHARED_LABELS = ("neutral", "happy", "sad", "angry")
#: Shots per class of the few-shot protocol, and how many seeds each is repeated with.
DEFAULT_SHOTS = (0, 1, 5, 10, 20)
DEFAULT_REPEATS = 5
#: Columns a transfer split table adds to :data:`SPLIT_COLUMNS`.
TRANSFER_COLUMNS = ("target", "labels", "shots", "repeat")


def make_transfer_splits(
    manifest: pd.DataFrame,
    *,
    protocol: str,
    labels: tuple[str, ...] = SHARED_LABELS,
    target_column: str = "label",
    seed: int = 0,
    valid_fraction: float = 0.15,
    shots: tuple[int, ...] = DEFAULT_SHOTS,
    repeats: int = DEFAULT_REPEATS,
) -> pd.DataFrame:
    """Cross-corpus / cross-language splits: one fold per held-out target (and per K and seed).

    * ``leave-one-corpus-out``: the target is one corpus, with every copy of it (the same
      ``reader``: copies share speakers and sentences, so they leave together);
    * ``leave-one-language-out``: the target is every corpus of one language;
    * ``few-shot:K`` (K optional; default shots ``shots``): per target language and repeat,
      half of its speakers (by seed) form an adaptation pool from which K utterances per
      class join the training data; the other half is the test set.

    Training rows come from the other targets; valid is carved from them by speaker, per
    source corpus (never from the target). The scored labels of a fold are ``labels`` that
    both the target and the sources have; ``labels=()`` keeps every value (for ``intensity``
    targets). Extra columns: ``target``, ``labels`` (the scored ones, ``|``-joined),
    ``shots`` and ``repeat`` (0 outside few-shot).

    >>> make_transfer_splits(manifest, protocol="leave-one-language-out")   # doctest: +SKIP
    >>> make_transfer_splits(manifest, protocol="few-shot", shots=(0, 5))   # doctest: +SKIP
    """
    if not isinstance(protocol, str):
        raise TypeError(f"protocol: expected a spec string such as 'leave-one-corpus-out', got {protocol!r}")
    name, _, arg = protocol.strip().lower().partition(":")
    if name not in {p.split(":")[0] for p in TRANSFER_PROTOCOLS}:
        raise ConfigError(f"unknown transfer protocol {protocol!r}; known: {', '.join(TRANSFER_PROTOCOLS)}")
    if name == "few-shot" and arg:
        try:
            shots = tuple(int(k) for k in arg.split(","))
        except ValueError:
            raise ConfigError(f"few-shot:K needs comma-separated integers, got {arg!r}") from None
    labels = tuple(name_list(labels, argument="labels"))
    shots = _counts(shots, argument="shots")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ConfigError(f"repeats: expected a positive integer, got {repeats!r}")
    seed = _check_seed(seed)
    _check_fraction(valid_fraction)
    group_of = "language" if name in ("leave-one-language-out", "few-shot") else "reader"
    _check_manifest(manifest, {"path", "corpus", "speaker", group_of, _column(target_column, "target_column")})
    table = _normalise(manifest, target_column)
    table[group_of] = manifest[group_of].astype("string").fillna("").to_numpy(dtype=object)
    table = table[table["_y"] != ""].sort_values("path", kind="stable").reset_index(drop=True)
    if labels:
        table = table[table["_y"].isin(labels)].reset_index(drop=True)
    # A corpus with one class (BAVED's level-1 rows are its only "neutral") teaches no contrast
    # between classes; with per-corpus normalisation it would teach "this corpus's mean is that
    # class" and pull every held-out corpus, centred the same way, towards it.
    classes = table.groupby("corpus")["_y"].nunique()
    if len(single := sorted(classes.index[classes < 2])):
        _note(f"{', '.join(single)}: a single class among the scored labels; left out of transfer folds")
        table = table[~table["corpus"].isin(single)].reset_index(drop=True)
    table["_unit"] = _speaker_units(table, note="")
    blocks = []
    fold = 0
    for target in sorted(set(table[group_of])):
        is_target = (table[group_of] == target).to_numpy()
        scored = sorted(set(table.loc[is_target, "_y"]) & set(table.loc[~is_target, "_y"]))
        if len(scored) < 2:
            _note(f"{target}: fewer than two labels shared with the other corpora ({scored}); skipped")
            continue
        rows = table[table["_y"].isin(scored)].reset_index(drop=True)
        is_target = (rows[group_of] == target).to_numpy()
        if name == "few-shot":
            for repeat in range(repeats):
                pool, test = _adaptation_pool(rows, is_target, seed=seed + repeat, target=target)
                for k in shots:
                    fold += 1  # the same valid speakers for every K of a repeat
                    roles = _source_roles(rows, is_target, seed + repeat, 1, valid_fraction)
                    roles[test] = "test"
                    roles[_shots(rows, pool, k, seed=seed + repeat)] = "train"
                    blocks.append(_transfer_block(rows, fold, roles, target, scored, k, repeat))
        else:
            fold += 1
            roles = _source_roles(rows, is_target, seed, fold, valid_fraction)
            roles[is_target] = "test"
            blocks.append(_transfer_block(rows, fold, roles, target, scored, 0, 0))
    columns = [*SPLIT_COLUMNS, *TRANSFER_COLUMNS]
    if not blocks:
        return pd.DataFrame(columns=columns)
    splits = pd.concat(blocks, ignore_index=True)
    splits["protocol"] = protocol
    splits["seed"] = seed
    return splits[columns]


def _counts(values: object, *, argument: str) -> tuple[int, ...]:
    """``values`` as a tuple of non-negative integers, or an error naming ``argument``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{argument}: expected a list of non-negative integers, got {type(values).__name__} {values!r}")
    out = tuple(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in out):
        raise ConfigError(f"{argument}: expected a non-empty list of non-negative integers, got {list(out)!r}")
    return tuple(int(v) for v in out)


def _source_roles(rows: pd.DataFrame, is_target: np.ndarray, seed: int, fold: int, fraction: float) -> np.ndarray:
    """train for every source row, valid carved by speaker per source corpus (copies of a corpus
    together, as they share speakers); None for the target."""
    roles = np.full(len(rows), None, dtype=object)
    unit = "reader" if "reader" in rows.columns else "corpus"
    for name in sorted(set(rows.loc[~is_target, unit])):
        idx = np.flatnonzero((rows[unit] == name).to_numpy() & ~is_target)
        sub = rows.iloc[idx].reset_index(drop=True)
        sub_roles = np.full(len(sub), "train", dtype=object)
        by_speaker = not (sub["speaker"] == "").any() and sub["_unit"].nunique() >= MIN_SPEAKERS
        _carve_valid(sub, sub_roles, fraction, seed=seed, fold=fold, by_speaker=by_speaker)
        roles[idx] = sub_roles
    return roles


def _adaptation_pool(rows: pd.DataFrame, is_target: np.ndarray, *, seed: int, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Split the target's rows into an adaptation pool and a test set: by speaker when possible."""
    idx = np.flatnonzero(is_target)
    speakers = rows["_unit"].to_numpy()[idx]  # speakers merged by twins
    names = sorted(set(speakers) - {""})
    rng = np.random.default_rng([seed, zlib.crc32(target.encode())])
    if (rows["speaker"].to_numpy()[idx] == "").any() or len(names) < 2:
        _note(f"{target}: no speaker-independent adaptation pool possible; pool and test split by utterance")
        reps = _representatives(rows, idx)  # whole twin groups go to the pool or to test
        chosen = reps[rng.permutation(len(reps))[: len(reps) // 2]]
        mask = np.isin(idx, _with_twins(rows, chosen))
    else:
        pool_speakers = [names[i] for i in rng.permutation(len(names))[: len(names) // 2]]
        mask = np.isin(speakers, pool_speakers)
    return idx[mask], idx[~mask]


def _shots(rows: pd.DataFrame, pool: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """K utterances per class from ``pool`` (all of a class when it has fewer); the same K-shot
    draw is a prefix of every larger K, so curves over K are nested."""
    if k <= 0:
        return pool[:0]
    rng = np.random.default_rng([seed, 7919])
    y = rows["_y"].to_numpy()[pool]
    chosen = [pool[y == c][rng.permutation(int((y == c).sum()))][:k] for c in sorted(set(y))]
    return np.sort(np.concatenate(chosen)) if chosen else pool[:0]


def _transfer_block(rows: pd.DataFrame, fold: int, roles: np.ndarray, target: str, scored: list[str], shots: int,
                    repeat: int) -> pd.DataFrame:  # fmt: skip
    block = _block(rows, fold, roles, where=target)
    block["target"] = target
    block["labels"] = "|".join(scored)
    block["shots"] = shots
    block["repeat"] = repeat
    return block


# --------------------------------------------------------------------------- EmoBox


def _emobox_folds(
    rows: pd.DataFrame, eligible: pd.DataFrame, folder: Path, seed: int, valid_fraction: float
) -> list[_Fold]:
    """EmoBox folds for one corpus: ``rows`` (all of the corpus) for matching, ``eligible`` to split."""
    corpus = rows["corpus"].iat[0]
    readers = sorted(set(rows["reader"]) - {""})
    if len(readers) != 1:
        _note(f"{corpus}: needs exactly one reader name for EmoBox, found {readers or 'none'}; skipped")
        return []
    reader = readers[0]
    if not (folder / reader).is_dir():
        _note(f"{corpus}: EmoBox has no folder {folder / reader}; {len(rows)} rows skipped")
        return []

    listed: dict[int, dict[str, list[str]]] = {}
    for fold_dir in sorted((folder / reader).glob("fold_*")):
        if not re.fullmatch(r"fold_\d+", fold_dir.name):
            continue
        k = int(fold_dir.name.removeprefix("fold_"))
        files = {role: fold_dir / f"{reader}_{role}_fold_{k}.jsonl" for role in ("train", "test")}
        if missing := [str(f) for f in files.values() if not f.is_file()]:
            _note(f"{corpus}: EmoBox fold {k} lacks {', '.join(missing)}; fold skipped")
            continue
        listed[k] = {role: _read_emobox_wavs(f) for role, f in files.items()}
    if not listed:
        _note(f"{corpus}: no usable EmoBox folds under {folder / reader}; skipped")
        return []

    wavs = sorted({w for fold in listed.values() for ws in fold.values() for w in ws})
    match = _match_suffixes(wavs, list(rows["path"]))
    position = {path: i for i, path in enumerate(eligible["path"])}
    unmatched = len(wavs) - len(match)
    unlabelled = sum(path not in position for path in match.values())
    if unmatched or unlabelled:
        _note(f"{corpus}: of {len(wavs)} EmoBox entries of {reader}, {unmatched} match no manifest row"
              + (f" and {unlabelled} match rows without a usable label" if unlabelled else ""))

    folds = []
    for k in sorted(listed):
        roles = np.full(len(eligible), None, dtype=object)
        for role in ("train", "test"):  # test last: it wins should a file be listed in both
            hits = [position[match[w]] for w in listed[k][role] if w in match and match[w] in position]
            roles[hits] = role
        in_fold = pd.notna(roles)
        if not in_fold.any():
            continue
        # EmoBox's lists may put twins in train and test: drop the train copy before carving valid
        roles = _drop_twin_conflicts(eligible, roles, where=corpus, fold=k)
        in_fold = pd.notna(roles)
        # by speaker only when train and test already share no speaker (and all ids are known)
        by_speaker = _speaker_disjoint(eligible["speaker"].to_numpy()[in_fold], roles[in_fold])
        _carve_valid(eligible, roles, valid_fraction, seed=seed, fold=k, by_speaker=by_speaker)
        folds.append((k, roles))
    return folds


def _read_emobox_wavs(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["wav"] for line in f if line.strip()]


def _suffix_parts(path: str) -> tuple[str, ...]:
    """Lower-cased path components, extension dropped from the last: 'a/B/239.wav' -> ('a','b','239').

    Case is ignored: copies of a corpus made on case-insensitive file systems differ in case
    (EmoBox lists CASIA's ``zhaozuoxiang``, the public copy has ``ZhaoZuoxiang``).
    """
    parts = [p for p in path.replace("\\", "/").lower().split("/") if p]
    return (*parts[:-1], os.path.splitext(parts[-1])[0]) if parts else ()


def _match_suffixes(wavs: list[str], paths: list[str]) -> dict[str, str]:
    """Map EmoBox wavs to manifest paths on the shortest extension-less path suffix (stem,
    parent/stem, ...) that is unique among the wavs *and* among the paths (case-insensitive).

    >>> _match_suffixes(["x/a/1.wav", "x/b/1.wav"], ["/d/a/1.flac", "/d/b/1.flac"])
    {'x/a/1.wav': '/d/a/1.flac', 'x/b/1.wav': '/d/b/1.flac'}
    """
    wav_parts = {w: _suffix_parts(w) for w in wavs}
    path_parts = {p: _suffix_parts(p) for p in paths}
    matches: dict[str, str] = {}
    open_wavs = sorted(wav_parts)
    depth = 1
    while open_wavs:
        wav_keys = Counter(parts[-depth:] for parts in wav_parts.values())
        by_key = defaultdict(list)
        for path, parts in path_parts.items():
            by_key[parts[-depth:]].append(path)
        still_open = []
        for wav in open_wavs:
            key = wav_parts[wav][-depth:]
            hits = by_key.get(key, [])
            if len(hits) == 1 and wav_keys[key] == 1:
                matches[wav] = hits[0]
            elif hits and depth < len(wav_parts[wav]):
                still_open.append(wav)  # ambiguous on this side or that: look one folder up
        open_wavs = still_open
        depth += 1
    return matches


# --------------------------------------------------------------------------- describe / IO


def describe_splits(splits: pd.DataFrame) -> pd.DataFrame:
    """Per corpus and fold: rows and distinct speakers in each role, and speaker independence.

    >>> describe_splits(make_splits(manifest, protocol="loso"))              # doctest: +SKIP
    """
    records = []
    for (corpus, fold), rows in splits.groupby(["corpus", "fold"], sort=True):
        record = {"corpus": corpus, "fold": int(fold)}
        for role in ROLES:
            record[f"n_{role}"] = int((rows["role"] == role).sum())
        for role in ROLES:
            speakers = rows.loc[rows["role"] == role, "speaker"]
            record[f"speakers_{role}"] = int(speakers[speakers != ""].nunique())
        record["speaker_independent"] = bool(rows["speaker_independent"].all())
        records.append(record)
    columns = ["corpus", "fold", *(f"n_{r}" for r in ROLES), *(f"speakers_{r}" for r in ROLES), "speaker_independent"]
    return pd.DataFrame.from_records(records, columns=columns)


def _format(path: Path) -> str:
    if path.suffix.lower() not in _FORMATS:
        raise ValueError(f"unknown split file format {path.suffix!r} ({path}); use one of {', '.join(_FORMATS)}")
    return path.suffix.lower()


def write_splits(splits: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a split table as .parquet, .csv or .jsonl (by extension); returns the path.

    >>> write_splits(splits, "splits/loso.parquet")                          # doctest: +SKIP
    """
    path = Path(path)
    fmt = _format(path)
    splits = _coerce(splits)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == ".parquet":
        splits.to_parquet(path, index=False)
    elif fmt == ".csv":
        splits.to_csv(path, index=False)
    else:
        with open(path, "w", encoding="utf-8") as f:
            for record in splits.astype(object).to_dict(orient="records"):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def read_splits(path: str | os.PathLike) -> pd.DataFrame:
    """Read a split table written by :func:`write_splits`.

    >>> splits = read_splits("splits/loso.parquet")                          # doctest: +SKIP
    """
    path = Path(path)
    fmt = _format(path)
    if fmt == ".parquet":
        splits = pd.read_parquet(path)
    elif fmt == ".csv":
        splits = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        with open(path, encoding="utf-8") as f:
            splits = pd.DataFrame.from_records([json.loads(line) for line in f if line.strip()],
                                               columns=list(SPLIT_COLUMNS))
    return _coerce(splits)


def _coerce(splits: pd.DataFrame) -> pd.DataFrame:
    """Columns in :data:`SPLIT_COLUMNS` order with their dtypes (str, int64, bool)."""
    if missing := [c for c in SPLIT_COLUMNS if c not in splits.columns]:
        raise ValueError(f"not a split table, missing column(s): {', '.join(missing)}")
    out = splits[list(SPLIT_COLUMNS)].copy()
    for column in ("path", "corpus", "speaker", "role", "protocol"):
        out[column] = out[column].fillna("").astype(str).astype(object)
    for column in ("fold", "seed"):
        out[column] = out[column].astype("int64")
    flag = out["speaker_independent"]
    if flag.dtype != bool:
        flag = flag.map(lambda v: str(v).strip().lower() in {"true", "1"})
    out["speaker_independent"] = flag.astype(bool)
    return out.reset_index(drop=True)
