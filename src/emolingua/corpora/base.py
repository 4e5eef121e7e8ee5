"""The corpus-reader interface and its registry.

A reader is one small class per corpus. It recognises the corpus's files from their paths
(file stem and the folders above it) and parses each into an :class:`Utterance`. A subclass
registers itself under its ``name``::

    class MyCorpus(CorpusReader):
        name = "mycorpus"
        language = "sw"
        labels = {"H": "happy", "S": "sad"}
        pattern = r"(?P<speaker>spk\\d+)_(?P<label>[HS])_(?P<text>\\d+)"

The named groups ``label``, ``speaker``, ``text`` and ``gender`` are read by the default
:meth:`CorpusReader.utterance`; override it, or :meth:`CorpusReader.parse` for corpora whose
folders or metadata files carry the labels.

``get_reader("mycorpus")`` then finds it; an unknown name fails with the list of known ones.
"""

from __future__ import annotations

import re
from abc import ABC
from dataclasses import dataclass
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar

from emolingua.registry import Registry

__all__ = ["CorpusReader", "Utterance", "get_reader", "name_list", "reader_names", "readers"]


@dataclass(frozen=True)
class Utterance:
    """What a reader knows about one file. Empty fields stay ``None``.

    ``key`` identifies the utterance within its corpus (two copies of a corpus share keys);
    by default it is the file stem.
    """

    label_native: str
    speaker: str | None = None
    gender: str | None = None
    intensity: str | None = None
    text_id: str | None = None
    key: str | None = None
    arousal: float | None = None
    valence: float | None = None
    dominance: float | None = None
    label: str | None = None  # canonical label when the reader decides it itself


_REGISTRY: Registry[CorpusReader] = Registry("corpus", plural="corpora", group="emolingua.readers",
                                              builtins=("emolingua.corpora.readers",))


class CorpusReader(ABC):
    """Base class: set the class attributes, implement :meth:`parse`.

    Attributes:
        name: registry name (lower case).
        language: ISO 639 code of the speech (``en``, ``ur``, ``zh`` ...).
        language_name: the language in English.
        labels: native label code -> canonical label (see :mod:`emolingua.taxonomy`);
            a code mapped to ``""`` is kept with an empty canonical label.
        pattern: regular expression that a file stem must match in full.
        folder_hint: regular expression searched (case-insensitive) in the folder names
            above a file; it decides between readers whose patterns both match a file.
        citation: where the corpus is published.
    """

    name: ClassVar[str] = ""
    language: ClassVar[str] = ""
    language_name: ClassVar[str] = ""
    labels: ClassVar[dict[str, str]] = {}
    pattern: ClassVar[str] = ""
    folder_hint: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    notes: ClassVar[str] = ""

    _compiled: ClassVar[re.Pattern[str] | None] = None
    _hint: ClassVar[re.Pattern[str] | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):  # a subclass that inherits a name does not replace its parent
            return
        cls._compiled = re.compile(cls.pattern) if cls.pattern else None
        cls._hint = re.compile(cls.folder_hint, re.IGNORECASE) if cls.folder_hint else None
        _REGISTRY.register(cls.name, cls)

    # -- what subclasses implement -------------------------------------------------------
    def parse(self, path: Path) -> Utterance | None:
        """Parse one audio file's path; ``None`` when the file is not of this corpus.

        By default: :attr:`pattern` must match the stem, then :meth:`utterance` reads the
        groups. Readers that need the folders or a metadata file override this instead.
        """
        m = self.match(path)
        return None if m is None else self.utterance(m, path)

    def utterance(self, m: dict[str, str], path: Path) -> Utterance | None:
        """An utterance from the pattern's named groups (``label``, ``speaker``, ``text``, ``gender``)."""
        return Utterance(label_native=m["label"], speaker=m.get("speaker"), text_id=m.get("text"),
                         gender=(m.get("gender") or "").lower() or None)  # fmt: skip

    # -- helpers for subclasses -----------------------------------------------------------
    def match(self, path: Path) -> dict[str, str] | None:
        """The named groups of :attr:`pattern` matched against the stem, or ``None``."""
        if self._compiled is None:
            return None
        m = self._compiled.fullmatch(path.stem)
        return m.groupdict() if m else None

    def hinted(self, path: Path) -> bool:
        """True when a folder above ``path`` matches :attr:`folder_hint`."""
        return self._hint is not None and any(self._hint.search(p) for p in path.parent.parts)

    def ignores(self, path: Path) -> bool:
        """True for audio files that belong to the corpus's folder but are not utterances."""
        return False

    def canonical(self, native: str) -> str:
        """The canonical label for a native code (``""`` when the reader maps none)."""
        return self.labels.get(native, "")

    def describe(self) -> dict[str, object]:
        """Name, language and classes, for ``emolingua corpora list``."""
        return {
            "name": self.name,
            "language": self.language,
            "language_name": self.language_name,
            "classes": sorted({v for v in self.labels.values() if v}),
            "citation": self.citation,
            "notes": self.notes,
        }


def readers() -> dict[str, type[CorpusReader]]:
    """All registered readers by name, in registration order (built-ins, then plugins)."""
    return dict(_REGISTRY.items())


def reader_names() -> list[str]:
    return list(readers())


def get_reader(name: str) -> CorpusReader:
    """An instance of the reader registered as ``name``.

    >>> get_reader("emodb").language
    'de'
    """
    return _REGISTRY.get(name)()


def name_list(value: object, *, argument: str) -> list[str]:
    """``value`` as a list of names, or a TypeError naming ``argument``.

    A bare string is refused instead of being read as its characters (``corpora="emovo"``
    would otherwise ask for the corpora "e", "m", "o" ...); so are ``None``, numbers and
    non-string members.

    >>> name_list(("emodb", "emovo"), argument="corpora")
    ['emodb', 'emovo']
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{argument}: expected a list of names, got the string {value!r}; write {argument}=[{value!r}]")
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise TypeError(f"{argument}: expected a list of names, got {type(value).__name__} {value!r}")
    names = list(value)
    if bad := [v for v in names if not isinstance(v, str) or not v.strip()]:
        raise TypeError(f"{argument}: expected a list of non-empty strings, got {bad[0]!r} in it")
    return names
