"""Scanning, copies of a corpus, bad files, the manifest, the registry."""

from __future__ import annotations

import math

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
