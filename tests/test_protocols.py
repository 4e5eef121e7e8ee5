"""Tests for emolingua.protocols on synthetic manifests (no audio needed)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolingua.errors import ConfigError, InputFileError
from emolingua.protocols import (
    KNOWN_PROTOCOLS,
    SPLIT_COLUMNS,
    Protocol,
    SplitNote,
    describe_splits,
    make_splits,
    parse_protocol,
    read_splits,
    write_splits,
)
from emolingua.protocols import _match_suffixes

CLASSES = ("angry", "happy", "neutral", "sad")


def _rows(corpus: str, speakers: dict[str, dict[str, int]], *, reader: str | None = None) -> list[dict]:
    """Manifest rows: ``speakers`` maps speaker id -> {class: number of utterances}."""
    rows = []
    for speaker, counts in speakers.items():
        for label, n in counts.items():
            for i in range(n):
                rows.append({
                    "path": f"corpora/{corpus}/{speaker}/{label}_{i:02d}.wav",
                    "corpus": corpus, "reader": reader or corpus, "language": "xx",
                    "speaker": f"{corpus}:{speaker}", "gender": "", "label": label,
                    "label_native": label, "intensity": "normal" if i % 2 else "strong",
                    "text_id": str(i), "duration": 1.0, "sample_rate": 16000,
                    "arousal": np.nan, "valence": np.nan,
                })
    return rows


def _manifest() -> pd.DataFrame:
    """alpha: 8 speakers, beta: 5, duo: 2; 4 classes, some missing for some speakers; unlabelled rows."""
    rng = np.random.default_rng(7)
    alpha = {f"{s:02d}": {c: int(rng.integers(3, 7)) for c in CLASSES} for s in range(1, 9)}
    del alpha["02"]["sad"], alpha["05"]["happy"], alpha["07"]["angry"]
    beta = {f"b{s}": {c: int(rng.integers(2, 6)) for c in CLASSES} for s in range(1, 6)}
    del beta["b3"]["neutral"]
    duo = {"m": {c: 5 for c in CLASSES}, "f": {c: 5 for c in CLASSES}}
    rows = _rows("alpha", alpha) + _rows("beta", beta) + _rows("duo", duo)
    for i in range(6):  # unlabelled, but with an intensity
        rows.append({**rows[i], "path": f"corpora/alpha/unlabelled_{i}.wav", "label": ""})
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)  # order must not matter


def _splits(manifest: pd.DataFrame, **kwargs) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitNote)
        return make_splits(manifest, **kwargs)


def _assert_speaker_independent_where_claimed(splits: pd.DataFrame) -> None:
    for (corpus, fold), rows in splits.groupby(["corpus", "fold"]):
        if rows["speaker_independent"].all():
            roles_per_speaker = rows.groupby("speaker")["role"].nunique()
            assert (roles_per_speaker == 1).all(), (corpus, fold)
            assert (rows["speaker"] != "").all()
        assert rows["speaker_independent"].nunique() == 1  # one value per corpus and fold


def _assert_tested_once(splits: pd.DataFrame, manifest: pd.DataFrame, corpus: str) -> None:
    labelled = set(manifest.loc[(manifest["corpus"] == corpus) & (manifest["label"] != ""), "path"])
    rows = splits[splits["corpus"] == corpus]
    assert rows.groupby("fold")["path"].apply(lambda p: set(p) == labelled and len(p) == len(labelled)).all()
    tested = rows.loc[rows["role"] == "test", "path"]
    assert tested.is_unique and set(tested) == labelled


# --------------------------------------------------------------------------- parsing


def test_parse_protocol_specs():
    assert parse_protocol("loso") == Protocol("loso")
    assert parse_protocol("speaker-kfold:4") == Protocol("speaker-kfold", k=4)
    assert str(parse_protocol("random")) == "random:70/10/20"
    assert parse_protocol("random:80/0/20").percents == (80.0, 0.0, 20.0)
    assert parse_protocol("emobox:/x/EmoBox/data").folder == "/x/EmoBox/data"
    assert parse_protocol("random").default_seed == 12345 and parse_protocol("loso").default_seed == 0


@pytest.mark.parametrize("spec", ["holdout", "loso:3", "kfold:5", ""])
def test_unknown_protocol_lists_known_names(spec):
    with pytest.raises(ValueError) as err:
        parse_protocol(spec)
    for known in KNOWN_PROTOCOLS:
        assert known in str(err.value)


@pytest.mark.parametrize("spec", ["speaker-kfold:1", "speaker-kfold:x", "random:70/10", "random:70/20/20", "emobox:"])
def test_bad_protocol_arguments(spec):
    with pytest.raises(ValueError):
        parse_protocol(spec)


# --------------------------------------------------------------------------- speaker protocols


def test_loso_folds_speakers_and_fallback():
    manifest = _manifest()
    with pytest.warns(SplitNote, match="duo: only 2 speaker"):
        splits = make_splits(manifest, protocol="loso")
    assert list(splits.columns) == list(SPLIT_COLUMNS)
    assert splits.equals(splits.sort_values(["corpus", "fold", "path"]).reset_index(drop=True))
    assert splits["protocol"].eq("loso").all() and splits["seed"].eq(0).all()
    _assert_speaker_independent_where_claimed(splits)
    for corpus, n_speakers in [("alpha", 8), ("beta", 5)]:
        rows = splits[splits["corpus"] == corpus]
        assert rows["fold"].nunique() == n_speakers and rows["speaker_independent"].all()
        assert (rows[rows["role"] == "test"].groupby("fold")["speaker"].nunique() == 1).all()
        assert (rows[rows["role"] == "valid"].groupby("fold")["speaker"].nunique() >= 1).all()
        assert rows.loc[rows["role"] == "valid", "fold"].nunique() == n_speakers
        _assert_tested_once(splits, manifest, corpus)
    duo = splits[splits["corpus"] == "duo"]
    assert duo["fold"].nunique() == 5 and not duo["speaker_independent"].any()
    _assert_tested_once(splits, manifest, "duo")
    assert not splits["path"].str.contains("unlabelled").any()


def test_speaker_kfold_invariants_and_fewer_speakers_than_k():
    manifest = _manifest()
    with pytest.warns(SplitNote) as record:
        splits = make_splits(manifest, protocol="speaker-kfold:6", seed=3)
    notes = " ".join(str(w.message) for w in record)
    assert "beta: speaker-kfold:6 asks for 6 folds but there are only 5 speakers" in notes
    assert "duo: only 2 speaker" in notes
    _assert_speaker_independent_where_claimed(splits)
    assert splits.groupby("corpus")["fold"].nunique().to_dict() == {"alpha": 6, "beta": 5, "duo": 6}
    for corpus in ("alpha", "beta", "duo"):
        _assert_tested_once(splits, manifest, corpus)
    assert splits.loc[splits["corpus"] != "duo", "speaker_independent"].all()
    assert not splits.loc[splits["corpus"] == "duo", "speaker_independent"].any()


def test_missing_speaker_ids_fall_back():
    manifest = _manifest()
    manifest.loc[manifest["corpus"] == "beta", "speaker"] = pd.NA
    with pytest.warns(SplitNote) as record:
        splits = make_splits(manifest, protocol="speaker-kfold:3")
    n_beta = int(((manifest["corpus"] == "beta") & (manifest["label"] != "")).sum())
    assert any(f"beta: {n_beta} of {n_beta} rows have no speaker id" in str(w.message) for w in record)
    beta = splits[splits["corpus"] == "beta"]
    assert beta["fold"].nunique() == 3 and not beta["speaker_independent"].any()
    assert (beta["speaker"] == "").all()
    _assert_tested_once(splits, manifest, "beta")


def test_same_seed_same_splits_other_seed_other_splits():
    manifest = _manifest()
    for spec in ("loso", "speaker-kfold:4", "random:70/10/20"):
        a = _splits(manifest, protocol=spec, seed=1)
        b = _splits(manifest.sample(frac=1.0, random_state=9), protocol=spec, seed=1)
        pd.testing.assert_frame_equal(a, b)
        c = _splits(manifest, protocol=spec, seed=2)
        assert not a[["fold", "role"]].equals(c[["fold", "role"]]), spec


def test_speaker_kfold_stratifies_classes():
    rng = np.random.default_rng(11)
    speakers = {f"s{s:02d}": {c: int(rng.integers(4, 9)) for c in CLASSES} for s in range(20)}
    manifest = pd.DataFrame(_rows("bal", speakers))
    splits = _splits(manifest, protocol="speaker-kfold:4", seed=0)
    overall = manifest["label"].value_counts(normalize=True)
    test = splits[splits["role"] == "test"].merge(manifest[["path", "label"]], on="path")
    for _, rows in test.groupby("fold"):
        share = rows["label"].value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert np.abs(share - overall).max() < 0.05


def test_stratify_on_other_column_keeps_unlabelled_rows():
    manifest = _manifest()
    splits = _splits(manifest, protocol="loso", stratify_on="intensity")
    assert splits["path"].str.contains("unlabelled").sum() == 6 * 8  # 6 rows in each of alpha's 8 folds
    _assert_speaker_independent_where_claimed(splits)


def test_valid_fraction_zero_gives_no_valid():
    splits = _splits(_manifest(), protocol="loso", valid_fraction=0.0)
    assert not (splits["role"] == "valid").any()


# --------------------------------------------------------------------------- random


def test_random_70_10_20_proportions_and_default_seed():
    speakers = {f"s{s}": {c: 25 for c in CLASSES} for s in range(4)}  # 400 rows, 100 per class
    manifest = pd.DataFrame(_rows("rnd", speakers))
    splits = make_splits(manifest, protocol="random:70/10/20")
    assert splits["seed"].eq(12345).all() and splits["fold"].eq(1).all()
    assert not splits["speaker_independent"].any()
    assert splits["role"].value_counts().to_dict() == {"train": 280, "test": 80, "valid": 40}
    roles = splits.merge(manifest[["path", "label"]], on="path")
    per_class = roles.groupby(["role", "label"]).size().unstack()
    assert (per_class.loc["test"] == 20).all() and (per_class.loc["valid"] == 10).all()
    assert splits.equals(make_splits(manifest, protocol="random:70/10/20", seed=12345))


def test_random_on_mixed_corpora():
    manifest = _manifest()
    splits = _splits(manifest, protocol="random:80/0/20", seed=5)
    assert not (splits["role"] == "valid").any()
    for corpus, rows in splits.groupby("corpus"):
        labelled = ((manifest["corpus"] == corpus) & (manifest["label"] != "")).sum()
        assert len(rows) == labelled
        assert abs((rows["role"] == "test").mean() - 0.2) < 0.02


# --------------------------------------------------------------------------- EmoBox

CASIA_SPEAKERS = ("liuchanhg", "wangzhe", "zhaoquanyin", "ZhaoZuoxiang")


def _write_fold(folder: Path, reader: str, k: int, train: list[str], test: list[str]) -> None:
    fold_dir = folder / reader / f"fold_{k}"
    fold_dir.mkdir(parents=True)
    for role, wavs in (("train", train), ("test", test)):
        with open(fold_dir / f"{reader}_{role}_fold_{k}.jsonl", "w") as f:
            for wav in wavs:
                emo = wav.split("/")[-2]
                f.write(json.dumps({"key": wav, "wav": wav, "emo": emo, "length": 1.5, "dataset": reader}) + "\n")


@pytest.fixture
def emobox(tmp_path):
    """A fake EmoBox folder (CASIA-style repeated stems; one unmatched entry) and its manifest."""
    folder = tmp_path / "EmoBox" / "data"
    wavs = [f"downloads/casia/{s}/{e}/{n}.wav"
            for s in CASIA_SPEAKERS for e in ("angry", "neutral") for n in (201, 239)]
    for k, speaker in enumerate(CASIA_SPEAKERS, start=1):
        test = [w for w in wavs if f"/{speaker}/" in w]
        train = [w for w in wavs if w not in test] + (["downloads/casia/ghost/angry/999.wav"] if k == 1 else [])
        _write_fold(folder, "casia", k, train, test)
    mixed = [f"downloads/mixed/{s}/{e}/{n}.wav" for s in "abc" for e in ("angry", "happy") for n in range(4)]
    test = [w for w in mixed if w.endswith("/0.wav")]  # one file per speaker and emotion
    _write_fold(folder, "mixed", 1, [w for w in mixed if w not in test], test)

    rows = []
    for wav in wavs + mixed:
        _, reader, speaker, emo, name = wav.split("/")
        rows.append({"path": f"/corpora/{reader.upper()}/{speaker}/{emo}/{name[:-4]}.flac", "corpus": reader,
                     "reader": reader, "speaker": f"{reader}:{speaker}", "label": emo})
    rows.append({"path": "/corpora/CASIA/wangzhe/angry/500.flac", "corpus": "casia", "reader": "casia",
                 "speaker": "casia:wangzhe", "label": "angry"})  # not in any fold
    subset = [dict(r, corpus="casia-subset", path=r["path"].replace("/CASIA/", "/other-copy/CASIA/"))
              for r in rows if r["corpus"] == "casia" and "/239." in r["path"]]  # a second found copy
    rows += subset
    rows += [{"path": f"/corpora/emodb/{i}.wav", "corpus": "emodb", "reader": "emodb", "speaker": f"emodb:{i}",
              "label": "angry"} for i in range(5)]
    return folder, pd.DataFrame(rows)


def test_emobox_matches_repeated_stems_and_reports(emobox):
    folder, manifest = emobox
    with pytest.warns(SplitNote) as record:
        splits = make_splits(manifest, protocol=f"emobox:{folder}", seed=0)
    notes = " ".join(str(w.message) for w in record)
    assert "emodb: EmoBox has no folder" in notes
    assert "casia: of 17 EmoBox entries of casia, 1 match no manifest row" in notes
    assert "casia-subset: of 17 EmoBox entries of casia, 9 match no manifest row" in notes
    assert "emodb" not in set(splits["corpus"])

    casia = splits[splits["corpus"] == "casia"]
    assert casia["fold"].nunique() == 4 and casia["speaker_independent"].all()
    assert "/corpora/CASIA/wangzhe/angry/500.flac" not in set(casia["path"])
    for k, speaker in enumerate(CASIA_SPEAKERS, start=1):
        rows = casia[casia["fold"] == k]
        assert len(rows) == 16
        assert set(rows.loc[rows["role"] == "test", "speaker"]) == {f"casia:{speaker}"}
        assert len(rows[rows["role"] == "test"]) == 4  # 2 emotions x 2 repeated stems, each its own file
        assert rows.loc[rows["role"] == "valid", "speaker"].nunique() == 1  # carved by speaker
    _assert_speaker_independent_where_claimed(splits)

    subset = splits[splits["corpus"] == "casia-subset"]
    assert len(subset) == 4 * 8 and subset["path"].str.endswith("/239.flac").all()

    mixed = splits[splits["corpus"] == "mixed"]  # train and test share speakers: valid by utterance
    assert mixed["fold"].tolist() == [1] * 24 and not mixed["speaker_independent"].any()
    assert (mixed["role"] == "test").sum() == 6 and (mixed["role"] == "valid").sum() >= 1


def test_suffix_matching_needs_uniqueness_on_both_sides():
    wavs = ["dl/casia/wangzhe/neutral/239.wav", "dl/casia/liuchanhg/neutral/239.wav", "dl/casia/wangzhe/angry/7.wav"]
    # a copy holding only one of the two 239s still matches the right one, via its folders
    assert _match_suffixes(wavs, ["/c/liuchanhg/neutral/239.flac"]) == {wavs[1]: "/c/liuchanhg/neutral/239.flac"}
    # folders laid out differently: the repeated stem cannot be told apart, so it is not matched at all
    paths = ["/c/239_a.flac", "/c/a/239.flac", "/c/b/239.flac", "/c/ANGRY/7.flac"]
    assert _match_suffixes(wavs, paths) == {wavs[2]: "/c/ANGRY/7.flac"}
    assert _match_suffixes(["x/7.wav"], ["/c/7.WAV", "/d/7.wav"]) == {}  # same stem twice, nothing above it


def test_emobox_missing_folder_raises(tmp_path):
    with pytest.raises(InputFileError, match="nope: EmoBox folder not found"):
        make_splits(_manifest(), protocol=f"emobox:{tmp_path / 'nope'}")


# --------------------------------------------------------------------------- describe / IO


def test_describe_splits_counts():
    manifest = _manifest()
    splits = _splits(manifest, protocol="loso", seed=0)
    summary = describe_splits(splits)
    assert len(summary) == 8 + 5 + 5
    row = summary[(summary["corpus"] == "alpha") & (summary["fold"] == 1)].iloc[0]
    fold = splits[(splits["corpus"] == "alpha") & (splits["fold"] == 1)]
    assert row["n_train"] + row["n_valid"] + row["n_test"] == len(fold)
    assert row["speakers_test"] == 1 and row["speakers_valid"] >= 1 and row["speakers_train"] >= 1
    assert row["speakers_train"] + row["speakers_valid"] + row["speakers_test"] == 8
    assert bool(row["speaker_independent"])
    assert not summary.loc[summary["corpus"] == "duo", "speaker_independent"].any()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_write_read_round_trip(tmp_path, suffix):
    manifest = _manifest()
    manifest.loc[manifest["corpus"] == "duo", "speaker"] = ""  # empty speakers survive too
    splits = _splits(manifest, protocol="speaker-kfold:3", seed=4)
    path = write_splits(splits, tmp_path / "sub" / f"splits{suffix}")
    assert path.exists()
    pd.testing.assert_frame_equal(read_splits(path), splits)


def test_unknown_file_format(tmp_path):
    with pytest.raises(ValueError, match=r"\.parquet"):
        write_splits(_splits(_manifest(), protocol="loso"), tmp_path / "splits.xlsx")


def test_emobox_matching_ignores_case():
    from emolingua.protocols import _match_suffixes

    wavs = ["downloads/casia/zhaozuoxiang/angry/201.wav", "downloads/casia/wangzhe/angry/201.wav"]
    paths = ["/d/casia/ZhaoZuoxiang/angry/201.flac", "/d/casia/wangzhe/angry/201.flac"]
    assert _match_suffixes(wavs, paths) == dict(zip(wavs, paths))


# --------------------------------------------------------------------------- transfer protocols


def _multilingual() -> pd.DataFrame:
    """Four corpora, three languages; 'gamma-copy' is a second copy of gamma (same speakers);
    'delta' has no 'sad'; 'epsilon' (language yy) has only angry and happy."""
    rng = np.random.default_rng(11)
    spk = lambda n, classes: {f"s{i}": {c: int(rng.integers(3, 6)) for c in classes} for i in range(n)}  # noqa: E731
    rows = _rows("alpha", spk(6, CLASSES)) + _rows("gamma", spk(5, CLASSES))
    rows += [{**r, "path": r["path"].replace("/gamma/", "/gamma-copy/"), "corpus": "gamma-copy",
              "reader": "gamma"} for r in _rows("gamma", spk(5, CLASSES))]  # fmt: skip
    for r in rows:
        r["speaker"] = r["speaker"].replace("gamma-copy:", "gamma:")
    rows += _rows("delta", spk(4, ("angry", "happy", "neutral")))
    extra = _rows("epsilon", spk(4, ("angry", "happy")))
    lang = {"alpha": "aa", "gamma": "gg", "gamma-copy": "gg", "delta": "aa", "epsilon": "yy"}
    frame = pd.DataFrame(rows + extra)
    frame["language"] = frame["corpus"].map(lang)
    return frame


@pytest.mark.parametrize("protocol", ["leave-one-corpus-out", "leave-one-language-out", "few-shot:0,2,5"])
def test_transfer_never_leaks_target_speakers(protocol):
    from emolingua.protocols import make_transfer_splits

    m = _multilingual()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitNote)
        splits = make_transfer_splits(m, protocol=protocol, repeats=2)
    assert not splits.empty
    for _, fold in splits.groupby("fold"):
        test = fold[fold["role"] == "test"]
        seen = fold[fold["role"] != "test"]
        # the model never trains on, nor selects with, a test speaker
        assert not set(test["speaker"]) & set(seen["speaker"])
        assert set(fold.loc[fold["role"] == "valid", "corpus"]).isdisjoint(set(test["corpus"])) or protocol.startswith("few")
        assert fold["speaker_independent"].all()
        # scored labels: shared by source and target, and nothing else is used
        scored = set(fold["labels"].iat[0].split("|"))
        used = set(m.set_index("path").loc[fold["path"], "label"])
        assert used == scored
    if protocol == "leave-one-corpus-out":
        targets = set(splits["target"])
        assert "gamma" in targets and "gamma-copy" not in targets  # copies leave together
        gamma = splits[splits["target"] == "gamma"]
        assert set(gamma.loc[gamma["role"] == "test", "corpus"]) == {"gamma", "gamma-copy"}
        delta = splits[splits["target"] == "delta"]
        assert delta["labels"].iat[0] == "angry|happy|neutral"  # no sad in delta: the rest is scored


def test_few_shot_takes_k_per_class_from_pool_speakers_only():
    from emolingua.protocols import make_transfer_splits

    m = _multilingual()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitNote)
        splits = make_transfer_splits(m, protocol="few-shot", shots=(0, 1, 3), repeats=2, seed=4)
    lab = m.set_index("path")["label"]
    lang = m.set_index("path")["language"]
    for (target, repeat), rep in splits.groupby(["target", "repeat"]):
        test_paths = set(rep.loc[rep["role"] == "test", "path"])
        previous: set[str] = set()
        for k in (0, 1, 3):
            fold = rep[rep["shots"] == k]
            assert set(fold.loc[fold["role"] == "test", "path"]) == test_paths  # same test set for every K
            shots = fold[(fold["role"] == "train") & (fold["path"].map(lang) == target)]
            counts = shots["path"].map(lab).value_counts()
            assert (counts <= k).all() and (k == 0 or len(counts) >= 2)  # K per class, several classes
            assert previous <= set(shots["path"])  # larger K extends the smaller draw
            previous = set(shots["path"])
    again = make_transfer_splits(m, protocol="few-shot", shots=(0, 1, 3), repeats=2, seed=4)
    pd.testing.assert_frame_equal(splits, again)


def test_unknown_transfer_protocol_names_the_known_ones():
    from emolingua.protocols import make_transfer_splits

    with pytest.raises(ValueError, match="leave-one-language-out"):
        make_transfer_splits(_multilingual(), protocol="leave-one-planet-out")


# --------------------------------------------------------------------------- twins (issue 1.2)


def _planted_twins() -> tuple[pd.DataFrame, list[set[str]]]:
    """_manifest() with a content column and planted twin groups: within one speaker, across two
    speakers (alpha 01/03), across three speakers by a chain (beta b1-b4-b2), and in duo (which
    falls back to utterance folds)."""
    m = _manifest()
    m["content"] = [f"k{i}" for i in range(len(m))]
    labelled = m[m["label"] != ""].sort_values("path")

    def first(speaker: str, n: int = 1) -> list[str]:
        return list(labelled.loc[labelled["speaker"] == speaker, "path"].iloc[:n])

    groups = [set(first("alpha:01") + first("alpha:03")), set(first("alpha:05", 2)),
              set(first("beta:b1") + first("beta:b4")), {first("beta:b4", 2)[1], first("beta:b2")[0]},
              set(first("duo:m") + first("duo:f"))]  # fmt: skip
    for i, group in enumerate(groups):
        m.loc[m["path"].isin(group), "content"] = f"twin{i}"
    return m, groups


def _assert_twins_share_roles(splits: pd.DataFrame, groups: list[set[str]], by: list[str]) -> None:
    for _, rows in splits.groupby(by):
        for group in groups:
            roles = set(rows.loc[rows["path"].isin(group), "role"])
            assert len(roles) <= 1, (group, roles)


@pytest.mark.parametrize("protocol", ["loso", "speaker-kfold:3", "random:70/10/20"])
def test_twins_take_one_role_in_every_fold(protocol):
    m, groups = _planted_twins()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", SplitNote)
        splits = make_splits(m, protocol=protocol, seed=2)
    _assert_twins_share_roles(splits, groups, ["corpus", "fold"])
    _assert_speaker_independent_where_claimed(splits)
    if protocol == "random:70/10/20":  # twins are kept, not dropped
        assert set(splits["path"]) == set(m.loc[m["label"] != "", "path"])
    else:
        for corpus in ("alpha", "beta", "duo"):
            _assert_tested_once(splits, m, corpus)
        notes = " ".join(str(w.message) for w in record)
        assert "alpha: speakers 'alpha:01', 'alpha:03' share byte-identical files" in notes
        assert "beta: speakers 'beta:b1', 'beta:b2', 'beta:b4' share" in notes
        assert splits.loc[splits["corpus"] != "duo", "speaker_independent"].all()
    if protocol == "loso":  # merged speakers are one fold: 8 - 1 and 5 - 2
        assert splits.groupby("corpus")["fold"].nunique().to_dict() == {"alpha": 7, "beta": 3, "duo": 5}


def test_rows_listing_one_path_twice_take_one_role():
    m = _manifest()
    twice = m[(m["corpus"] == "duo") & (m["label"] != "")].iloc[:3]
    m = pd.concat([m, twice], ignore_index=True)
    splits = _splits(m, protocol="loso", seed=1)
    _assert_twins_share_roles(splits, [{p} for p in twice["path"]], ["corpus", "fold"])
    for _, fold in splits[splits["corpus"] == "duo"].groupby("fold"):
        assert fold["path"].isin(twice["path"]).sum() == 6  # both rows of each path are kept


def test_without_a_content_column_twins_come_from_the_files(tmp_path):
    rows = _rows("solo", {"a": {c: 6 for c in CLASSES}, "b": {c: 6 for c in CLASSES}})  # utterance folds
    for i, row in enumerate(rows):
        row["path"] = str(tmp_path / f"{i:03d}.wav")
        Path(row["path"]).write_bytes(f"audio {i}".encode())
    Path(rows[0]["path"]).write_bytes(b"the same bytes")
    Path(rows[-1]["path"]).write_bytes(b"the same bytes")  # speaker a and speaker b, two labels
    m = pd.DataFrame(rows)
    for seed in range(5):
        for protocol in ("loso", "random:60/20/20"):
            splits = _splits(m, protocol=protocol, seed=seed)
            _assert_twins_share_roles(splits, [{rows[0]["path"], rows[-1]["path"]}], ["corpus", "fold"])


def test_emobox_twin_listed_in_train_leaves_the_fold(emobox):
    folder, manifest = emobox
    manifest = manifest.copy()
    manifest["content"] = manifest["path"]
    test_row = "/corpora/CASIA/liuchanhg/angry/201.flac"  # in test of fold 1, train of the others
    train_row = "/corpora/CASIA/wangzhe/neutral/239.flac"
    manifest.loc[manifest["path"].isin([test_row, train_row]), "content"] = "same"
    with pytest.warns(SplitNote, match="casia: fold 1: 1 row\\(s\\) left out, byte-identical"):
        splits = make_splits(manifest, protocol=f"emobox:{folder}", seed=0)
    casia = splits[splits["corpus"] == "casia"]
    _assert_twins_share_roles(casia, [{test_row, train_row}], ["fold"])
    fold1 = casia[casia["fold"] == 1].set_index("path")["role"]
    assert fold1[test_row] == "test" and train_row not in fold1.index


@pytest.mark.parametrize("protocol", ["leave-one-corpus-out", "leave-one-language-out", "few-shot:0,2"])
def test_transfer_keeps_twins_together_across_corpora_and_speakers(protocol):
    from emolingua.protocols import make_transfer_splits

    m = _multilingual()
    m["content"] = m["path"]
    lab = m[m["label"].isin(["angry", "happy"])].sort_values("path")
    pick = lambda corpus, speaker, i=0: lab.loc[(lab["corpus"] == corpus) & (lab["speaker"] == f"{corpus}:{speaker}"), "path"].iloc[i]  # noqa: E731
    groups = [{pick("alpha", "s0"), pick("epsilon", "s1")},  # across corpora and languages
              {pick("delta", "s0"), pick("delta", "s2")},  # one corpus, two speakers
              {pick("gamma", "s1"), pick("gamma", "s3"), pick("alpha", "s2")}]  # fmt: skip
    for i, group in enumerate(groups):
        m.loc[m["path"].isin(group), "content"] = f"twin{i}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitNote)
        splits = make_transfer_splits(m, protocol=protocol, repeats=2)
    assert not splits.empty
    _assert_twins_share_roles(splits, groups, ["fold"])
    for _, fold in splits.groupby("fold"):
        test = fold[fold["role"] == "test"]
        seen = fold[fold["role"] != "test"]
        assert not set(m.set_index("path").loc[test["path"], "content"]) & set(m.set_index("path").loc[seen["path"], "content"])
        assert not set(test["speaker"]) & set(seen["speaker"])


# --------------------------------------------------------------------------- SI / SD (issue 1.6)


def test_leave_one_language_out_is_speaker_independent_with_a_two_speaker_source():
    """Old code: 'pair' (two speakers) gets its valid rows by utterance, so its speakers sit in train
    and valid, and that marked every fold it is a source of as SD, though no test speaker is seen."""
    from emolingua.protocols import make_transfer_splits

    rng = np.random.default_rng(5)
    spk = lambda n: {f"s{i}": {c: int(rng.integers(3, 6)) for c in CLASSES} for i in range(n)}  # noqa: E731
    m = pd.DataFrame(_rows("alpha", spk(6)) + _rows("gamma", spk(5)) + _rows("pair", spk(2)))
    m["language"] = m["corpus"].map({"alpha": "aa", "gamma": "gg", "pair": "pp"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitNote)
        splits = make_transfer_splits(m, protocol="leave-one-language-out")
    assert set(splits["target"]) == {"aa", "gg", "pp"}
    pair_valid = splits[(splits["corpus"] == "pair") & (splits["role"] == "valid")]
    assert len(pair_valid), "the two-speaker source must get an utterance-level valid set"
    for _, fold in splits.groupby("fold"):
        test = set(fold.loc[fold["role"] == "test", "speaker"])
        seen = set(fold.loc[fold["role"] != "test", "speaker"])
        assert fold["speaker_independent"].all() == (not test & seen) == True  # noqa: E712


def test_speaker_independent_is_read_from_the_roles():
    m = _manifest()
    splits = _splits(m, protocol="loso")
    _assert_speaker_independent_where_claimed(splits)
    # one utterance per speaker: a random split cannot share a speaker across roles
    single = pd.DataFrame(_rows("single", {f"s{i:02d}": {CLASSES[i % 4]: 1} for i in range(40)}))
    assert _splits(single, protocol="random:70/10/20")["speaker_independent"].all()
    # a missing speaker id in train of the test corpus could be a test speaker
    fold = _splits(m[m["corpus"] == "alpha"], protocol="loso")
    unknown = fold[(fold["fold"] == 1) & (fold["role"] == "train")]["path"].iloc[0]
    m2 = m.copy()
    m2.loc[m2["path"] == unknown, "speaker"] = ""
    assert not _splits(m2[m2["corpus"] == "alpha"], protocol="loso")["speaker_independent"].any()


# --------------------------------------------------------------------------- arguments (section 2)


@pytest.mark.parametrize("kwargs, error, argument", [
    ({"protocol": None}, TypeError, "protocol"),
    ({"protocol": ["loso"]}, TypeError, "protocol"),
    ({"protocol": "loso", "stratify_on": None}, TypeError, "stratify_on"),
    ({"protocol": "loso", "seed": -1}, ConfigError, "seed"),
    ({"protocol": "loso", "seed": "abc"}, ConfigError, "seed"),
    ({"protocol": "loso", "valid_fraction": 1.5}, ConfigError, "valid_fraction"),
])  # fmt: skip
def test_make_splits_arguments_are_named(kwargs, error, argument):
    with pytest.raises(error, match=f"^{argument}: "):
        make_splits(_manifest(), **kwargs)
    with pytest.raises(TypeError, match="^manifest: "):
        make_splits("manifest.parquet", protocol="loso")


@pytest.mark.parametrize("kwargs, error, argument", [
    ({"labels": "angry"}, TypeError, "labels"),
    ({"labels": None}, TypeError, "labels"),
    ({"labels": ("angry", 3)}, TypeError, "labels"),
    ({"shots": 5}, TypeError, "shots"),
    ({"shots": "5"}, TypeError, "shots"),
    ({"shots": (1, -2)}, ConfigError, "shots"),
    ({"repeats": 0}, ConfigError, "repeats"),
    ({"seed": None}, ConfigError, "seed"),
    ({"target_column": ["label"]}, TypeError, "target_column"),
])  # fmt: skip
def test_make_transfer_splits_arguments_are_named(kwargs, error, argument):
    from emolingua.protocols import make_transfer_splits

    with pytest.raises(error, match=f"^{argument}: "):
        make_transfer_splits(_multilingual(), **{"protocol": "few-shot", **kwargs})
    with pytest.raises(TypeError, match="^protocol: "):
        make_transfer_splits(_multilingual(), protocol=None)


@pytest.mark.parametrize("protocol", ["leave-one-language-out", "few-shot:0,2"])
def test_a_single_class_corpus_is_left_out_of_transfer_folds(protocol):
    # BAVED's case: its only category is "neutral" (intensity level 1). As a source it would
    # teach "this corpus is neutral"; it must not enter any fold, and a note says so.
    from emolingua.protocols import make_transfer_splits

    m = _multilingual()
    mono = pd.DataFrame(_rows("mono", {f"s{i}": {"neutral": 6} for i in range(4)}))
    mono["language"] = "mm"
    with pytest.warns(SplitNote, match="mono: a single class"):
        splits = make_transfer_splits(pd.concat([m, mono], ignore_index=True), protocol=protocol, repeats=1)
    assert not splits.empty and "mono" not in set(splits["corpus"])
