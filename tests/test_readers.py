"""Every corpus reader on a small fake copy of its corpus, built from real file names.

The names are copied from the corpora's own file lists (EmoBox's ``<corpus>.jsonl``) and
``corpus-conventions.md``; the audio is 0.1 s of synthetic signal, written as WAV or FLAC.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from emolingua.corpora import get_reader, reader_names, scan_corpora
from emolingua.taxonomy import CANONICAL_LABELS

# reader -> [(path in the corpus's own layout without extension, label, speaker, gender, intensity)]
# speaker as the reader gives it ("" = none; the manifest prefixes the reader's name)
CASES: dict[str, list[tuple[str, str, str, str, str]]] = {
    "emodb": [
        ("wav/03a01Wa", "angry", "03", "m", ""),
        ("wav/08a02La", "boredom", "08", "f", ""),
        ("wav/16a01Ec", "disgust", "16", "f", ""),
        ("wav/10a01Ac", "fear", "10", "m", ""),
        ("wav/15a04Fd", "happy", "15", "m", ""),
        ("wav/08b02Tc", "sad", "08", "f", ""),
    ],
    "emovo": [
        ("f1/neu-f1-n2", "neutral", "f1", "f", ""),
        ("m1/gio-m1-l1", "happy", "m1", "m", ""),
        ("f1/pau-f1-n3", "fear", "f1", "f", ""),
        ("f1/sor-f1-b3", "surprise", "f1", "f", ""),
        ("m3/rab-m3-n4", "angry", "m3", "m", ""),
        ("m1/dis-m1-n4", "disgust", "m1", "m", ""),
        ("f2/tri-f2-b3", "sad", "f2", "f", ""),
    ],
    "urdu": [
        ("Angry/SM4_F17_A069", "angry", "SM4", "m", ""),
        ("Neutral/SM3_F6_N026", "neutral", "SM3", "m", ""),
        ("Happy/SF1_F10_H010", "happy", "SF1", "f", ""),
        ("Sad/SF11_F3_S05", "sad", "SF11", "f", ""),
    ],
    "casia": [
        ("wangzhe/angry/203", "angry", "wangzhe", "m", ""),
        ("zhaozuoxiang/sad/230", "sad", "zhaozuoxiang", "m", ""),
        ("zhaoquanyin/angry/235", "angry", "zhaoquanyin", "f", ""),
        ("liuchanhg/surprise/226", "surprise", "liuchanhg", "f", ""),
        ("liuchanhg/fear/223", "fear", "liuchanhg", "f", ""),
        ("liuchanhg/sad/209", "sad", "liuchanhg", "f", ""),
        ("wangzhe/sad/209", "sad", "wangzhe", "m", ""),  # same stem, other speaker: keys differ
    ],
    "ravdess": [
        ("Audio_Speech_Actors_01-24/Actor_17/03-01-07-02-01-02-17", "disgust", "17", "m", "high"),
        ("Audio_Speech_Actors_01-24/Actor_14/03-01-04-01-02-02-14", "sad", "14", "f", "normal"),
        ("Audio_Speech_Actors_01-24/Actor_13/03-01-08-01-01-01-13", "surprise", "13", "m", "normal"),
        ("Audio_Speech_Actors_01-24/Actor_05/03-01-06-01-02-01-05", "fear", "05", "m", "normal"),
        ("Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-02-02-01", "neutral", "01", "m", "normal"),
        ("Audio_Speech_Actors_01-24/Actor_02/03-01-02-02-02-02-02", "calm", "02", "f", "high"),
    ],
    "baved": [
        ("3/0-m-21-3-1-921", "neutral", "0", "m", "normal"),
        ("0/1-f-25-0-0-100", "", "1", "f", "low"),
        ("6/2-m-30-6-2-55", "", "2", "m", "high"),
    ],
    "tess": [  # per-emotion folders with their varying spellings, and the misspelled OA_ file
        ("TESS Toronto emotional speech set data/OAF_Fear/OAF_back_fear", "fear", "OAF", "f", ""),
        ("TESS Toronto emotional speech set data/OAF_Pleasant_surprise/OAF_pearl_ps", "surprise", "OAF", "f", ""),
        ("TESS Toronto emotional speech set data/YAF_pleasant_surprised/YAF_south_ps", "surprise", "YAF", "f", ""),
        ("TESS Toronto emotional speech set data/OAF_neutral/OA_bite_neutral", "neutral", "OAF", "f", ""),
        ("TESS Toronto emotional speech set data/YAF_angry/YAF_sour_angry", "angry", "YAF", "f", ""),
        ("TESS Toronto emotional speech set data/YAF_disgust/YAF_chair_disgust", "disgust", "YAF", "f", ""),
        ("TESS Toronto emotional speech set data/OAF_Sad/OAF_pass_sad", "sad", "OAF", "f", ""),
        ("TESS Toronto emotional speech set data/YAF_happy/YAF_jug_happy", "happy", "YAF", "f", ""),
    ],
    "savee": [
        ("JE_n07", "neutral", "JE", "m", ""),
        ("KL_su03", "surprise", "KL", "m", ""),
        ("JK_d11", "disgust", "JK", "m", ""),
        ("DC_sa15", "sad", "DC", "m", ""),
        ("KL_f15", "fear", "KL", "m", ""),
        ("JK_a12", "angry", "JK", "m", ""),
        ("DC_h06", "happy", "DC", "m", ""),
    ],
    "cremad": [  # genders come from the fake VideoDemographics.csv written below; 1050 is not in it
        ("AudioWAV/1044_IEO_SAD_LO", "sad", "1044", "m", "low"),
        ("AudioWAV/1078_IEO_HAP_MD", "happy", "1078", "f", "normal"),
        ("AudioWAV/1032_IEO_SAD_HI", "sad", "1032", "m", "high"),
        ("AudioWAV/1016_ITH_NEU_XX", "neutral", "1016", "m", ""),
        ("AudioWAV/1017_DFA_FEA_XX", "fear", "1017", "m", ""),
        ("AudioWAV/1021_ITS_ANG_XX", "angry", "1021", "f", ""),
        ("AudioWAV/1050_ITH_DIS_XX", "disgust", "1050", "", ""),
    ],
    "shemo": [
        ("female/F30A05", "angry", "F30", "f", ""),
        ("male/M19A01", "angry", "M19", "m", ""),
        ("female/F24W23", "surprise", "F24", "f", ""),
        ("male/M28S11", "sad", "M28", "m", ""),
        ("male/M28N13", "neutral", "M28", "m", ""),
        ("female/F24H15", "happy", "F24", "f", ""),
        ("male/M21F01", "fear", "M21", "m", ""),
    ],
    "cafe": [
        ("CaFE_48k/Neutre/01-N-1-6", "neutral", "01", "m", ""),
        ("CaFE_48k/Peur/Faible/12-P-1-6", "fear", "12", "f", "low"),
        ("CaFE_48k/Joie/Fort/08-J-2-3", "happy", "08", "f", "high"),
        ("CaFE_48k/Surprise/Fort/09-S-2-1", "surprise", "09", "m", "high"),
        ("CaFE_48k/D\u201ago\u2013t/Fort/04-D-2-5", "disgust", "04", "f", "high"),  # mis-encoded folder, as shipped
        ("CaFE_48k/Col\u0160re/Faible/07-C-1-1", "angry", "07", "m", "low"),
        ("CaFE_48k/Tristesse/Fort/12-T-2-6", "sad", "12", "f", "high"),
    ],
    "aesdd": [
        ("sadness/s08 (5)", "sad", "5", "", ""),
        ("fear/f08 (5)", "fear", "5", "", ""),
        ("anger/a13 (3)", "angry", "3", "", ""),
        ("happiness/h12 (3)", "happy", "3", "", ""),
        ("disgust/d05 (3)", "disgust", "3", "", ""),
        ("sadness/s01 (5)a", "sad", "5", "", ""),
    ],
    "subesco": [
        ("F_06_SIMI_S_8_SAD_1", "sad", "F_06", "f", ""),
        ("M_04_BIBHAS_S_6_DISGUST_5", "disgust", "M_04", "m", ""),
        ("M_10_EVAN_S_6_ANGRY_1", "angry", "M_10", "m", ""),
        ("M_10_EVAN_S_6_HAPPY_3", "happy", "M_10", "m", ""),
        ("F_03_SMITA_S_5_FEAR_2", "fear", "F_03", "f", ""),
        ("F_09_CHAITY_S_8_SURPRISE_5", "surprise", "F_09", "f", ""),
        ("F_07_TITHI_S_5_NEUTRAL_5", "neutral", "F_07", "f", ""),
        ("F_02_MONIKA_S_2_SURPRISE_3]", "surprise", "F_02", "f", ""),  # the stray ']' is in the corpus
    ],
    "mesd": [
        ("Mexican Emotional Speech Database (MESD)/Anger_C_B_robo", "angry", "", "", ""),
        ("Mexican Emotional Speech Database (MESD)/Sadness_M_A_basta_ya", "sad", "", "m", ""),
        ("Mexican Emotional Speech Database (MESD)/Fear_F_A_arriba", "fear", "", "f", ""),
        ("Mexican Emotional Speech Database (MESD)/Neutral_M_A_ayer", "neutral", "", "m", ""),
        ("Mexican Emotional Speech Database (MESD)/Happiness_C_B_oasis", "happy", "", "", ""),
        ("Mexican Emotional Speech Database (MESD)/Disgust_F_A_de_nada", "disgust", "", "f", ""),
    ],
    "ased": [
        ("03Happy/h3-04-02-02-55", "happy", "55", "m", ""),
        ("01Neutral/n1-05-02-02-30", "neutral", "30", "m", ""),
        ("04Sad/s4-07-02-01-05", "sad", "05", "f", ""),
        ("02Fearful/f2-05-01-02-06", "fear", "06", "m", ""),
        ("05Angry/a5-03-02-01-58", "angry", "58", "f", ""),
        ("04Sad/S4-04-02-01-29", "sad", "29", "f", ""),  # capital emotion letter, as shipped
    ],
    "turevdb": [
        ("Sound Source/Angry/1358_kz_odenek", "angry", "1358", "", ""),
        ("Sound Source/Sad/1358_hl_gurbuz", "sad", "1358", "", ""),
        ("Sound Source/Happy/1984_mt_koy", "happy", "1984", "", ""),
        ("Sound Source/Calm/1984_sk_eger", "calm", "1984", "", ""),
        ("Sound Source/Sad/7895_hl_ogul1", "sad", "7895", "", ""),
        ("Sound Source/Angry/1157_kz_japon", "angry", "1157", "", ""),
    ],
    "jlcorpus": [
        ("Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/female1_assertive_9a_1", "assertive", "female1", "f",
         ""),
        ("Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/female2_angry_10a_1", "angry", "female2", "f", ""),
        ("Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/male1_excited_12a_1", "excited", "male1", "m", ""),
        ("Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/female2_concerned_1b_1", "concerned", "female2", "f",
         ""),
        ("Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/male2_concerned_6b_1", "concerned", "male2", "m", ""),
        ("Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/female1_apologetic_15b_2", "apologetic", "female1",
         "f", ""),
        ("Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/male1_sad_11a_2", "sad", "male1", "m", ""),
        ("Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/male1_anxious_3a_2", "anxious", "male1", "m", ""),
        ("Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/male2_neutral_15a_1", "neutral", "male2", "m", ""),
    ],
    "oreau": [  # the folder is spelled as EmoBox ships it: e + combining acute accent
        ("Ore\u0301auFR_02/f/sessj/24a09Ja", "happy", "24", "f", ""),
        ("Ore\u0301auFR_02/m/sesss/39a03Sa", "surprise", "39", "m", ""),
        ("Ore\u0301auFR_02/m/sesst/16a09Ta", "sad", "16", "m", ""),
        ("Ore\u0301auFR_02/f/sessn/24a08Na", "neutral", "24", "f", ""),
        ("Ore\u0301auFR_02/f/sessc/11a05Ca", "angry", "11", "f", ""),
        ("Ore\u0301auFR_02/f/sessd/37a08Da", "disgust", "37", "f", ""),
        ("Ore\u0301auFR_02/f/sessp/24a02Pa", "fear", "24", "f", ""),
    ],
    "iemocap": [  # labels from the fake EmoEvaluation files written below
        ("Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000", "neutral", "Ses01F", "f", ""),
        ("Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M011", "angry", "Ses01M", "m", ""),
        ("Session1/sentences/wav/Ses01M_impro07/Ses01M_impro07_M005", "happy", "Ses01M", "m", ""),  # exc
        ("Session1/sentences/wav/Ses01M_impro07/Ses01M_impro07_F033", "happy", "Ses01F", "f", ""),  # hap
        ("Session3/sentences/wav/Ses03M_impro05a/Ses03M_impro05a_M017", "sad", "Ses03M", "m", ""),
        ("Session5/sentences/wav/Ses05M_script01_1b/Ses05M_script01_1b_F000", "", "Ses05F", "f", ""),  # fru
        ("Session4/sentences/wav/Ses04F_impro06/Ses04F_impro06_M007", "", "Ses04M", "m", ""),  # no evaluation
    ],
    "nemo": [  # EB0 is the documented example; the other speaker codes follow its pattern
        ("samples/EB0_anger_1", "angry", "EB0", "m", ""),
        ("samples/EB0_sadness_12", "sad", "EB0", "m", ""),
        ("samples/SB0_happiness_3", "happy", "SB0", "f", ""),
        ("samples/SB0_surprised_4", "surprise", "SB0", "f", ""),
        ("samples/KL0_fear_2", "fear", "KL0", "f", ""),
        ("samples/KL0_neutral_7", "neutral", "KL0", "f", ""),
    ],
}  # fmt: skip

_IEMOCAP_EVALUATIONS = {
    "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt": [
        ("[6.2901 - 8.2357]", "Ses01F_impro01_F000", "neu", "[2.5000, 2.5000, 2.5000]"),
        ("[10.0100 - 11.3925]", "Ses01F_impro01_M011", "ang", "[1.5000, 4.0000, 4.5000]"),
    ],
    "Session1/dialog/EmoEvaluation/Ses01M_impro07.txt": [
        ("[3.0000 - 5.5000]", "Ses01M_impro07_M005", "exc", "[3.5000, 4.0000, 3.0000]"),
        ("[90.1000 - 92.0000]", "Ses01M_impro07_F033", "hap", "[4.0000, 3.0000, 3.0000]"),
    ],
    "Session3/dialog/EmoEvaluation/Ses03M_impro05a.txt": [
        ("[50.0000 - 52.2500]", "Ses03M_impro05a_M017", "sad", "[1.0000, 2.0000, 5.0000]"),
    ],
    "Session5/dialog/EmoEvaluation/Ses05M_script01_1b.txt": [
        ("[1.0000 - 2.0000]", "Ses05M_script01_1b_F000", "fru", "[2.0000, 3.5000, 3.0000]"),
    ],
}
# turn -> (label_native, valence, arousal, dominance on 0..1)
_IEMOCAP_EXPECTED = {
    "Ses01F_impro01_F000": ("neu", 0.375, 0.375, 0.375),
    "Ses01F_impro01_M011": ("ang", 0.125, 0.75, 0.875),
    "Ses01M_impro07_M005": ("exc", 0.625, 0.75, 0.5),
    "Ses01M_impro07_F033": ("hap", 0.75, 0.5, 0.5),
    "Ses03M_impro05a_M017": ("sad", 0.0, 0.25, 1.0),
    "Ses05M_script01_1b_F000": ("fru", 0.25, 0.625, 0.5),
}


def _write_iemocap_evaluations(root: Path) -> None:
    for rel, lines in _IEMOCAP_EVALUATIONS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        for when, turn, emo, vad in lines:
            text += f"{when}\t{turn}\t{emo}\t{vad}\n"
            text += "C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n"
        path.write_text(text)


def _write_cremad_demographics(root: Path) -> None:
    rows = [("1044", "Male"), ("1078", "Female"), ("1032", "Male"), ("1016", "Male"), ("1017", "Male"),
            ("1021", "Female")]  # fmt: skip
    text = "ActorID,Age,Sex,Race,Ethnicity\n" + "".join(f"{a},30,{s},Caucasian,Not Hispanic\n" for a, s in rows)
    (root / "VideoDemographics.csv").write_text(text)


_NEMO_TEXTS = {"1": "Dzień dobry.", "12": "Nie wiem.", "3": "Dzień dobry.", "4": "Jutro pada.", "2": "Nie wiem.",
               "7": "Jutro pada."}  # fmt: skip


def _write_nemo_table(root: Path) -> None:
    genders = {"EB0": "male", "SB0": "female", "KL0": "female"}
    lines = ["file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage"]
    for rel, *_ in CASES["nemo"]:
        stem = rel.split("/")[-1]
        spk, emo, n = stem.split("_")
        text = _NEMO_TEXTS[n]
        lines.append(f"{stem}\t{emo}\t{text}\t{text.lower().rstrip('.')}\t{spk}\t{genders[spk]}\t30")
    (root / "data.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


_EXTRAS = {"iemocap": _write_iemocap_evaluations, "cremad": _write_cremad_demographics, "nemo": _write_nemo_table}


def _build(root: Path, name: str, tone) -> dict[str, tuple[str, str, str, str]]:
    """Write ``name``'s fake corpus below ``root / name``; ``name/path`` (no extension) -> expected values."""
    expected = {}
    for i, (rel, label, speaker, gender, intensity) in enumerate(CASES[name]):
        tone(root / name / f"{rel}{'.flac' if i % 3 == 1 else '.wav'}", seconds=0.1, seed=i)
        expected[f"{name}/{rel}"] = (label, speaker, gender, intensity)
    if name in _EXTRAS:
        _EXTRAS[name](root / name)
    return expected


def _where(path: str, root: Path) -> str:
    """A manifest path as the key :func:`_build` uses."""
    return Path(path).relative_to(root.resolve()).with_suffix("").as_posix()


def test_every_registered_reader_has_a_case():
    assert set(CASES) == set(reader_names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_reader_reads_its_corpus(name, tmp_path, tone):
    expected = _build(tmp_path, name, tone)
    result = scan_corpora(root=tmp_path, corpora=[name])
    reader = get_reader(name)
    assert [c.name for c in result.corpora] == [name]
    (summary,) = result.corpora
    assert summary.errors == []
    m = result.manifest
    assert len(m) == len(expected) == summary.files
    assert set(m["reader"]) == {name} and set(m["language"]) == {reader.language}
    for row in m.to_dict("records"):
        label, speaker, gender, intensity = expected[_where(row["path"], tmp_path)]
        where = row["path"]
        assert row["label"] == label, where
        assert row["label"] == reader.canonical(row["label_native"]), where
        assert row["speaker"] == (f"{name}:{speaker}" if speaker else ""), where
        assert row["gender"] == gender, where
        assert row["intensity"] == intensity, where
        assert row["duration"] == pytest.approx(0.1, abs=1e-3)
    assert summary.speakers == len({speaker for _, speaker, _, _ in expected.values() if speaker})


@pytest.mark.parametrize("name", sorted(CASES))
def test_describe_and_labels(name):
    reader = get_reader(name)
    info = reader.describe()
    assert info["name"] == name and info["language"] and info["language_name"] and info["citation"]
    assert info["classes"]
    assert all(v == "" or v in CANONICAL_LABELS for v in reader.labels.values())
    assert reader.pattern


def test_iemocap_ratings_and_the_excited_happy_merge(tmp_path, tone):
    _build(tmp_path, "iemocap", tone)
    m = scan_corpora(root=tmp_path, corpora=["iemocap"]).manifest
    rows = {Path(p).stem: r for p, r in zip(m["path"], m.to_dict("records"))}
    for turn, (native, valence, arousal, dominance) in _IEMOCAP_EXPECTED.items():
        r = rows[turn]
        assert r["label_native"] == native
        assert r["valence"] == pytest.approx(valence) and r["arousal"] == pytest.approx(arousal)
        assert r["dominance"] == pytest.approx(dominance)
        assert r["av_source"] == "rating"
    assert rows["Ses01M_impro07_M005"]["label"] == rows["Ses01M_impro07_F033"]["label"] == "happy"
    assert rows["Ses05M_script01_1b_F000"]["label"] == ""  # fru is listed, unlabelled
    missing = rows["Ses04F_impro06_M007"]  # no evaluation file: listed, no label, no rating
    assert missing["label_native"] == "" and missing["av_source"] == ""
    assert math.isnan(missing["arousal"]) and math.isnan(missing["dominance"])
    assert set(get_reader("iemocap").describe()["classes"]) == {"neutral", "happy", "angry", "sad"}


def test_nemo_table_adds_gender_and_text_ids(tmp_path, tone):
    _build(tmp_path, "nemo", tone)
    m = scan_corpora(root=tmp_path, corpora=["nemo"]).manifest
    text = {Path(p).stem.split("_")[-1]: t for p, t in zip(m["path"], m["text_id"])}
    assert all(text.values())
    assert text["1"] == text["3"] != text["12"] == text["2"] != text["4"] == text["7"]
    # without data.tsv the stem alone still gives label and speaker
    (tmp_path / "nemo" / "data.tsv").unlink()
    m = scan_corpora(root=tmp_path, corpora=["nemo"]).manifest
    assert set(m["gender"]) == {""} and set(m["text_id"]) == {""}
    assert set(m["speaker"]) == {"nemo:EB0", "nemo:SB0", "nemo:KL0"}
    assert set(m["label"]) == {"angry", "sad", "happy", "surprise", "fear", "neutral"}


def test_cremad_without_demographics_has_no_gender(tmp_path, tone):
    tone(tmp_path / "CREMA-D" / "AudioWAV" / "1087_IWL_ANG_XX.wav", seconds=0.1)
    tone(tmp_path / "CREMA-D" / "AudioWAV" / "1074_IWL_ANG_XX.flac", seconds=0.1)
    m = scan_corpora(root=tmp_path, corpora=["cremad"]).manifest
    assert list(m["gender"]) == ["", ""] and set(m["label"]) == {"angry"}


def test_mesd_and_text_ids(tmp_path, tone):
    _build(tmp_path, "mesd", tone)
    m = scan_corpora(root=tmp_path, corpora=["mesd"]).manifest
    assert set(m["text_id"]) == {"robo", "basta_ya", "arriba", "ayer", "oasis", "de_nada"}
    assert (m["speaker"] == "").all()


@pytest.mark.parametrize(
    ("name", "flat", "nested"),
    [
        ("savee", ["JE_n23", "KL_su02", "DC_a01"], ["JE/n23", "KL/su02", "DC/a01"]),
        ("tess", ["OAF_back_fear", "YAF_doll_ps", "OA_bite_neutral"],
         ["OAF_Fear/OAF_back_fear", "YAF_pleasant_surprised/YAF_doll_ps", "OAF_neutral/OA_bite_neutral"]),
    ],
)  # fmt: skip
def test_flat_and_nested_layouts_are_the_same_utterances(name, flat, nested, tmp_path, tone):
    for i, rel in enumerate(flat):
        tone(tmp_path / "flat" / f"{rel}.wav", seconds=0.1, seed=i)
    for i, rel in enumerate(nested):
        tone(tmp_path / "nested" / f"{rel}.flac", seconds=0.1, seed=i)
    result = scan_corpora(root=tmp_path, corpora=[name])
    assert len(result.corpora) == 2  # same keys in both folders: two copies of one corpus
    by_copy = {c: sorted(zip(g["speaker"], g["label"])) for c, g in result.manifest.groupby("corpus")}
    first, second = by_copy.values()
    assert first == second and len(first) == 3


def test_emodb_wins_ties_unless_the_french_folder_decides(tmp_path, tone):
    # (no "oreau" in this test's name: folder hints are searched in the whole path, tmp_path too)
    # an EmoDB stem (neutral, speaker 03) is EmoDB's; the same stem below an Oreau folder is Oréau's
    tone(tmp_path / "berlin" / "wav" / "03a01Nc.wav", seconds=0.1)
    tone(tmp_path / "Oreau" / "m" / "sessn" / "03a01Nc.wav", seconds=0.1)
    tone(tmp_path / "berlin" / "wav" / "16a01Ja.wav", seconds=0.1)  # no folder evidence: nobody's
    m = scan_corpora(root=tmp_path).manifest
    owner = {_where(p, tmp_path): r for p, r in zip(m["path"], m["reader"])}
    assert owner == {"berlin/wav/03a01Nc": "emodb", "Oreau/m/sessn/03a01Nc": "oreau"}
    oreau = get_reader("oreau")
    for folder in ("Ore\u0301auFR_02", "Or\u00e9auFR_02", "OREAU", "oreau"):  # decomposed, composed, plain
        assert oreau.hinted(Path("corpora") / folder / "f" / "sessj" / "24a09Ja.wav"), folder
    # asked for Oréau alone, it still leaves EmoDB's files alone
    m = scan_corpora(root=tmp_path, corpora=["oreau"]).manifest
    assert list(m["reader"]) == ["oreau"]


def test_mixed_tree_assigns_every_file_to_its_reader(tmp_path, tone):
    expected: dict[str, tuple[str, tuple[str, str, str, str]]] = {}
    for name in CASES:
        for path, values in _build(tmp_path, name, tone).items():
            expected[path] = (name, values)
    result = scan_corpora(root=tmp_path)
    m = result.manifest
    assert all(c.errors == [] for c in result.corpora)
    assert sorted(c.name for c in result.corpora) == sorted(CASES)
    assert len(m) == len(expected)
    for row in m.to_dict("records"):
        name, (label, speaker, _gender, _intensity) = expected[_where(row["path"], tmp_path)]
        assert (row["reader"], row["corpus"], row["label"]) == (name, name, label), row["path"]
        assert row["speaker"] == (f"{name}:{speaker}" if speaker else "")
