"""Corpus readers (one registered class per corpus) and the manifest they build.

>>> from emolingua.corpora import scan_corpora, get_reader
>>> scan_corpora(root="../shared/corpora").manifest.head()     # doctest: +SKIP
"""

# Import the built-in readers module first: binding the function ``readers`` afterwards keeps
# the package attribute a function (a later submodule import would otherwise replace it).
from emolingua.corpora import readers as _builtin_readers  # noqa: F401  (registers the built-ins)
from emolingua.corpora.base import CorpusReader, Utterance, get_reader, name_list, reader_names, readers
from emolingua.corpora.scan import (
    MANIFEST_COLUMNS,
    CorpusSummary,
    DuplicateGroup,
    FileError,
    ScanResult,
    check_manifest_output,
    find_audio_files,
    read_manifest,
    scan_corpora,
    write_manifest,
)

__all__ = [
    "MANIFEST_COLUMNS",
    "CorpusReader",
    "CorpusSummary",
    "DuplicateGroup",
    "FileError",
    "ScanResult",
    "Utterance",
    "check_manifest_output",
    "find_audio_files",
    "get_reader",
    "name_list",
    "read_manifest",
    "reader_names",
    "readers",
    "scan_corpora",
    "write_manifest",
]
