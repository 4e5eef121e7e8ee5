"""Scanning, copies of a corpus, bad files, the manifest, the registry."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

import pandas as pd
import pytest

from emolingua.corpora import (
    CorpusReader,
    get_reader,
    read_manifest,
    reader_names,
    scan_corpora,
    write_manifest,
)
from emolingua.corpora import base as corpora_base
from emolingua.taxonomy import PRIORS


def _emodb_tree(root, tone, names=("03a01Wa", "03a02Nc", "08b10Fb", "09a05Tc", "16b01La")):
    for i, stem in enumerate(names):
        tone(root / "wav" / f"{stem}.wav", seed=i)
    return root


def test_bad_files_are_reported_and_the_rest_is_listed(tmp_path, tone):
    corpus = _emodb_tree(tmp_path / "emodb", tone)
    good = tone(tmp_path / "emodb" / "wav" / "10a07Ab.flac", seconds=2.0)
    data = good.read_bytes()
    (tmp_path / "emodb" / "wav" / "11b03Ec.flac").write_bytes(data[: len(data) // 2])  # truncated FLAC
    (tmp_path / "emodb" / "wav" / "12a04Wd.wav").write_bytes(b"")  # zero-length WAV
    (tmp_path / "emodb" / "wav" / "13a05Nb.wav").write_text("this is text, not audio\n" * 50)  # text named .wav
    result = scan_corpora(root=corpus)
    (summary,) = result.corpora
    bad = {e.path.rsplit("/", 1)[-1]: e.reason for e in summary.errors}
    assert set(bad) == {"11b03Ec.flac", "12a04Wd.wav", "13a05Nb.wav"}
    assert "truncated" in bad["11b03Ec.flac"] or "corrupt" in bad["11b03Ec.flac"]
    assert "empty" in bad["12a04Wd.wav"]
    assert "not readable" in bad["13a05Nb.wav"]
    assert summary.files == 6 == len(result.manifest)
    assert not result.manifest["path"].str.contains("11b03Ec|12a04Wd|13a05Nb").any()


def test_two_copies_of_one_corpus_are_two_corpora_with_shared_speakers(tmp_path, tone):
    _emodb_tree(tmp_path / "emodb", tone)
    _emodb_tree(tmp_path / "emodb-original-subset", tone, names=("03a01Wa", "09a05Tc"))
    result = scan_corpora(root=tmp_path)
    by_name = {c.name: c for c in result.corpora}
    assert set(by_name) == {"emodb", "emodb-original-subset"}
    assert by_name["emodb"].files == 5 and by_name["emodb-original-subset"].files == 2
    assert by_name["emodb-original-subset"].speakers == 2
    # the same person in both copies is one speaker id, so no split can leak them
    spk = result.manifest.groupby("corpus")["speaker"].apply(set)
    assert spk["emodb-original-subset"] <= spk["emodb"]


def test_parts_of_one_corpus_in_sibling_folders_stay_one_corpus(tmp_path, tone):
    for spk in ("wangzhe", "liuchanhg"):
        for emo in ("angry", "sad"):
            tone(tmp_path / "CASIA" / spk / emo / "201.wav")
    (summary,) = scan_corpora(root=tmp_path).corpora
    assert summary.name == "casia" and summary.files == 4 and summary.speakers == 2


def test_unrecognised_file_name_inside_a_corpus_is_reported(tmp_path, tone):
    _emodb_tree(tmp_path, tone)
    tone(tmp_path / "wav" / "notes.wav")
    (summary,) = scan_corpora(root=tmp_path).corpora
    assert any("naming" in e.reason and e.path.endswith("notes.wav") for e in summary.errors)
    assert summary.files == 5


def test_nothing_found(tmp_path, tone):
    tone(tmp_path / "random" / "hello.wav")
    assert scan_corpora(root=tmp_path).corpora == []


def test_manifest_columns_priors_and_intensity(tmp_path, tone):
    tone(tmp_path / "Actor_01" / "03-01-05-01-01-01-01.wav")  # angry, normal
    tone(tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav")  # angry, strong
    tone(tmp_path / "Actor_02" / "03-01-01-01-02-02-02.wav")  # neutral
    m = scan_corpora(root=tmp_path).manifest
    for col in ("path", "corpus", "language", "speaker", "gender", "label", "label_native", "intensity", "text_id",
                "duration", "sample_rate", "arousal", "valence"):  # fmt: skip
        assert col in m.columns
    rows = {r.path.rsplit("/", 1)[-1]: r for r in m.itertuples()}
    normal, strong = rows["03-01-05-01-01-01-01.wav"], rows["03-01-05-02-01-01-01.wav"]
    assert normal.label == strong.label == "angry" and normal.language == "en"
    assert normal.speaker == "ravdess:01" and normal.gender == "m" and rows["03-01-01-01-02-02-02.wav"].gender == "f"
    assert normal.arousal == pytest.approx(PRIORS["angry"].arousal)
    assert strong.arousal > normal.arousal and strong.valence == normal.valence
    assert normal.duration == pytest.approx(0.2) and normal.sample_rate == 16000
    assert normal.av_source == "prior"


def test_user_ratings_override_priors(tmp_path, tone):
    p = tone(tmp_path / "Actor_01" / "03-01-05-01-01-01-01.wav")
    ratings = tmp_path / "ratings.csv"
    pd.DataFrame({"path": [str(p)], "arousal": [0.11], "valence": [0.22]}).to_csv(ratings, index=False)
    (row,) = scan_corpora(root=tmp_path / "Actor_01", ratings=ratings).manifest.itertuples()
    assert (row.arousal, row.valence, row.av_source) == (0.11, 0.22, "user")


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".jsonl"])
def test_manifest_round_trip_keeps_text_columns(tmp_path, tone, ext):
    tone(tmp_path / "c" / "Actor_01" / "03-01-05-01-01-01-01.wav")
    m = scan_corpora(root=tmp_path / "c").manifest
    out = write_manifest(m, tmp_path / f"manifest{ext}")
    back = read_manifest(out)
    assert list(back.columns) == list(m.columns)
    assert back.loc[0, "text_id"] == "01" and back.loc[0, "speaker"] == "ravdess:01"
    assert back.loc[0, "duration"] == pytest.approx(m.loc[0, "duration"])
    assert math.isnan(back.loc[0, "dominance"])


def test_unknown_format_and_unknown_corpus_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="parquet"):
        write_manifest(pd.DataFrame(), tmp_path / "m.xlsx")
    with pytest.raises(KeyError, match="known corpora: .*emodb"):
        get_reader("no-such-corpus")


def test_a_user_reader_registers_and_is_scanned(tmp_path, tone):
    class Swahili(CorpusReader):
        name = "test-swahili"
        language, language_name = "sw", "Swahili"
        labels = {"H": "happy", "S": "sad"}
        pattern = r"(?P<speaker>spk\d+)_(?P<label>[HS])_(?P<text>\d+)"  # the default utterance() reads it

    try:
        assert "test-swahili" in reader_names()
        tone(tmp_path / "spk1_H_01.wav")
        tone(tmp_path / "spk2_S_01.wav")
        (summary,) = scan_corpora(root=tmp_path, corpora=["test-swahili"]).corpora
        assert summary.labels == {"happy": 1, "sad": 1} and summary.language == "sw"
        row = scan_corpora(root=tmp_path, corpora=["test-swahili"]).manifest.iloc[0]
        assert (row.speaker, row.text_id) == ("test-swahili:spk1", "01")
    finally:
        corpora_base._REGISTRY.pop("test-swahili", None)


def test_required_readers_are_registered():
    required = {"emovo", "emodb", "urdu", "casia", "ravdess", "baved", "tess", "savee", "cremad", "shemo", "cafe",
                "aesdd", "subesco", "mesd", "ased", "turevdb", "jlcorpus", "oreau", "iemocap", "nemo"}  # fmt: skip
    assert required <= set(reader_names())
    for name in required:
        info = get_reader(name).describe()
        assert info["language"] and (info["classes"] or name == "baved")


# --------------------------------------------------------------------------- duplicate content (issue 1.2)


def test_content_column_and_duplicates_within_and_across_corpora(tmp_path, tone):
    from emolingua.fileio import content_key

    _emodb_tree(tmp_path / "emodb", tone)
    wav = tmp_path / "emodb" / "wav"
    (wav / "03a02Wb.wav").write_bytes((wav / "03a01Wa.wav").read_bytes())  # a copy under another name
    tone(tmp_path / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.wav", seed=50)
    (tmp_path / "ravdess" / "Actor_02").mkdir()
    # the same bytes in another corpus
    (tmp_path / "ravdess" / "Actor_02" / "03-01-01-01-01-01-02.wav").write_bytes((wav / "09a05Tc.wav").read_bytes())
    result = scan_corpora(root=tmp_path)
    m = result.manifest
    assert list(m.columns)[-1] == "content"
    assert all(key == content_key(path) for key, path in zip(m["content"], m["path"]))
    groups = {tuple(g.corpora): g for g in result.duplicates}
    assert set(groups) == {("emodb",), ("emodb", "ravdess")}
    assert [p.rsplit("/", 1)[-1] for p in groups[("emodb",)].paths] == ["03a01Wa.wav", "03a02Wb.wav"]
    assert groups[("emodb", "ravdess")].content == content_key(wav / "09a05Tc.wav")
    assert result.duplicate_counts() == {"emodb": 1, "emodb+ravdess": 1}
    listed = json.loads(result.to_json())["duplicates"]
    assert sorted(len(g["paths"]) for g in listed) == [2, 2] and all(g["content"] for g in listed)


def test_manifest_written_before_the_content_column_still_reads_and_splits(tmp_path, tone):
    from emolingua.protocols import make_splits

    for actor in (1, 2, 3):
        for emo in ("01", "05"):
            tone(tmp_path / "c" / f"Actor_{actor:02d}" / f"03-01-{emo}-01-01-01-{actor:02d}.wav", seed=actor * 10 + int(emo))
    m = scan_corpora(root=tmp_path / "c").manifest.drop(columns="content")
    for ext in (".parquet", ".csv", ".jsonl"):
        back = read_manifest(write_manifest(m, tmp_path / f"old{ext}"))
        assert "content" not in back.columns and len(back) == 6
        splits = make_splits(back, protocol="loso")
        assert splits["fold"].nunique() == 3 and splits["speaker_independent"].all()


def test_corpora_scan_command_reports_duplicates(tmp_path, tone):
    from typer.testing import CliRunner

    from emolingua.cli import app

    _emodb_tree(tmp_path / "emodb", tone)
    wav = tmp_path / "emodb" / "wav"
    (wav / "03a02Wb.wav").write_bytes((wav / "03a01Wa.wav").read_bytes())
    runner = CliRunner()
    res = runner.invoke(app, ["corpora", "scan", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "byte-identical files: 1 group(s) (emodb 1)" in res.output
    res = runner.invoke(app, ["corpora", "scan", str(tmp_path), "--json"])
    (group,) = json.loads(res.stdout)["duplicates"]
    assert group["corpora"] == ["emodb"] and len(group["paths"]) == 2


@pytest.mark.skipif(not Path("/work/shared/corpora/baved").is_dir(), reason="needs the shared corpora")
def test_baved_holds_27_byte_identical_pairs():
    result = scan_corpora(root="/work/shared/corpora/baved")
    assert result.duplicate_counts() == {"baved": 27}
    assert all(len(g.paths) == 2 for g in result.duplicates)


# --------------------------------------------------------------------------- linked corpus folders (issue 1.3)


def test_corpus_folders_reached_through_links_are_scanned_once_without_looping(tmp_path, tone):
    disk = tmp_path / "other-disk"
    _emodb_tree(disk / "emodb", tone)
    for actor in (1, 2):
        tone(disk / "ravdess" / f"Actor_{actor:02d}" / f"03-01-05-01-01-01-{actor:02d}.wav", seed=10 + actor)
    root = tmp_path / "corpora"
    root.mkdir()
    (root / "emodb").symlink_to(disk / "emodb", target_is_directory=True)
    (root / "ravdess").symlink_to(disk / "ravdess", target_is_directory=True)
    (root / "zz-same-emodb").symlink_to(disk / "emodb", target_is_directory=True)  # the same real folder again
    (disk / "emodb" / "wav" / "loop").symlink_to(root, target_is_directory=True)  # back to an ancestor
    (root / "broken").symlink_to(tmp_path / "nowhere", target_is_directory=True)

    result = scan_corpora(root=root)
    assert {c.name: c.files for c in result.corpora} == {"emodb": 5, "ravdess": 2}
    assert result.manifest["path"].is_unique
    # paths as reached below the root, through the link
    assert all(p.startswith(f"{root}/emodb/wav/") or p.startswith(f"{root}/ravdess/") for p in result.manifest["path"])
    assert result.duplicates == []


# --------------------------------------------------------------------------- corpus names (issue 1.4, section 2)


def test_unknown_corpus_is_one_config_error_naming_the_known_ones(tmp_path, tone):
    from emolingua.errors import ConfigError

    _emodb_tree(tmp_path, tone)
    with pytest.raises(ConfigError) as err:
        scan_corpora(root=tmp_path, corpora=["emodb", "nosuch"])
    message = str(err.value)
    assert "'nosuch'" in message and "emodb, emovo" in message and "\n" not in message
    assert "emodb" in {c.name for c in scan_corpora(root=tmp_path, corpora=["emodb"]).corpora}


@pytest.mark.parametrize("bad, error", [("emodb", TypeError), (5, TypeError), ([None], TypeError), ([], ValueError),
                                        (("emodb", 3), TypeError)])  # fmt: skip
def test_corpora_must_be_a_list_of_names(tmp_path, tone, bad, error):
    _emodb_tree(tmp_path, tone)
    with pytest.raises(error, match="^corpora: "):
        scan_corpora(root=tmp_path, corpora=bad)


def test_scan_root_must_be_a_folder(tmp_path):
    from emolingua.errors import InputFileError

    with pytest.raises(InputFileError, match="missing: not a folder"):
        scan_corpora(root=tmp_path / "missing")
    with pytest.raises(TypeError, match="^root: "):
        scan_corpora(root=None)


def test_corpora_scan_command_one_line_errors(tmp_path, tone):
    from typer.testing import CliRunner

    from emolingua.cli import app

    _emodb_tree(tmp_path / "data", tone)
    runner = CliRunner()
    for args in (["--corpus", "nosuch"], ["-o", str(tmp_path / "m.txt")], ["-o", str(tmp_path / "data" / "wav" / "03a01Wa.wav" / "m.csv")]):
        res = runner.invoke(app, ["corpora", "scan", str(tmp_path / "data"), *args])
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.output
        assert "Traceback" not in res.output


# --------------------------------------------------------------------------- reading and writing manifests (section 2)


def _one_line_input_error(path, match):
    from emolingua.errors import InputFileError

    with pytest.raises(InputFileError) as err:
        read_manifest(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert re.search(match, message), message
    return message


def test_read_manifest_missing_folder_empty_and_unknown_format(tmp_path):
    assert "emolingua corpora scan" in _one_line_input_error(tmp_path / "manifest.parquet", "no such file")
    _one_line_input_error(tmp_path, "is a folder")
    (tmp_path / "dir.csv").mkdir()
    _one_line_input_error(tmp_path / "dir.csv", "is a folder")
    (tmp_path / "empty.csv").write_bytes(b"")
    _one_line_input_error(tmp_path / "empty.csv", "empty file")
    (tmp_path / "manifest.txt").write_text("path\na.wav\n")
    _one_line_input_error(tmp_path / "manifest.txt", r"unknown manifest format '\.txt'; use \.parquet, \.csv or \.jsonl")


@pytest.mark.parametrize("ext, kind", [(".parquet", "Parquet"), (".csv", "CSV"), (".jsonl", "JSON Lines")])
def test_read_manifest_random_bytes(tmp_path, ext, kind):
    path = tmp_path / f"manifest{ext}"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    _one_line_input_error(path, f"not a {kind} file|no 'path' column")


def test_read_manifest_without_a_path_column(tmp_path):
    path = tmp_path / "manifest.parquet"
    pd.DataFrame({"file": ["a.wav"], "label": ["angry"]}).to_parquet(path)
    _one_line_input_error(path, r"no 'path' column \(columns: 'file', 'label'\)")


def test_read_manifest_unreadable(tmp_path, monkeypatch):
    path = tmp_path / "manifest.parquet"
    pd.DataFrame({"path": ["a.wav"]}).to_parquet(path)
    if os.geteuid() != 0:  # root reads a chmod 000 file anyway
        path.chmod(0)
        try:
            _one_line_input_error(path, "cannot read the manifest .*[Pp]ermission denied")
        finally:
            path.chmod(0o644)
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd, "read_parquet", denied)
    _one_line_input_error(path, r"cannot read the manifest \(Permission denied\); check its permissions")


def test_write_manifest_to_an_unwritable_location(tmp_path, monkeypatch):
    from emolingua.errors import InputFileError

    manifest = pd.DataFrame({"path": ["a.wav"]})
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputFileError, match="a-file/sub/m.parquet: cannot create the folder, .*a-file is a file"):
        write_manifest(manifest, tmp_path / "a-file" / "sub" / "m.parquet")
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(InputFileError, match="dir.parquet: is a folder"):
        write_manifest(manifest, tmp_path / "dir.parquet")
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked)  # as if chmod 555 for a non-root user
    with pytest.raises(InputFileError, match="locked/m.csv: not writable"):
        write_manifest(manifest, locked / "m.csv")
    assert not any(locked.iterdir())
