"""The command line, driven through typer's test runner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from emolingua import __version__
from emolingua.cli import app
from emolingua.corpora import read_manifest

runner = CliRunner()


def _tree(root, tone):
    for stem in ("03a01Wa", "08b10Fb", "09a05Tc", "16b01La"):
        tone(root / "emodb" / "wav" / f"{stem}.wav")
    (root / "emodb" / "wav" / "10a01Wb.wav").write_text("not audio")
    return root


def test_version_and_help_list_groups():
    assert runner.invoke(app, ["--version"]).output.strip() == f"emolingua {__version__}"
    out = runner.invoke(app, ["--help"]).output
    assert "corpora" in out and "splits" in out


def test_scan_json_and_manifest(tmp_path, tone):
    root = _tree(tmp_path / "data", tone)
    out = tmp_path / "m.csv"
    res = runner.invoke(app, ["corpora", "scan", str(root), "--json", "--output", str(out)])
    assert res.exit_code == 0, res.output
    (c,) = json.loads(res.stdout)["corpora"]
    assert (c["name"], c["language"], c["files"], c["speakers"]) == ("emodb", "de", 4, 4)
    assert c["labels"] == {"angry": 1, "boredom": 1, "happy": 1, "sad": 1}
    assert c["errors"][0]["path"].endswith("10a01Wb.wav") and c["errors"][0]["reason"]
    assert len(read_manifest(out)) == 4


def test_scan_exit_2_when_nothing_found(tmp_path):
    res = runner.invoke(app, ["corpora", "scan", str(tmp_path), "--json"])
    assert res.exit_code == 2
    assert json.loads(res.stdout) == {"corpora": [], "duplicates": []}
    assert runner.invoke(app, ["corpora", "scan", str(tmp_path / "missing")]).exit_code == 2


def test_scan_unknown_corpus_names_the_known_ones(tmp_path, tone):
    res = runner.invoke(app, ["corpora", "scan", str(_tree(tmp_path, tone)), "--corpus", "nope"])
    assert res.exit_code == 2 and "emodb" in res.output


def test_list_and_taxonomy():
    listed = json.loads(runner.invoke(app, ["corpora", "list", "--json"]).stdout)
    emodb = next(r for r in listed if r["name"] == "emodb")
    assert emodb["language"] == "de" and "boredom" in emodb["classes"]
    tax = json.loads(runner.invoke(app, ["corpora", "taxonomy", "--json"]).stdout)
    assert {"neutral", "happy", "sad", "angry"} <= {r["label"] for r in tax}


def test_splits_make(tmp_path, tone):
    root = tmp_path / "data"
    for actor in range(1, 7):
        for emo in ("01", "03", "04", "05"):
            for st in ("01", "02"):
                # distinct audio: byte-identical files would be twins, kept together by every split
                tone(root / f"Actor_{actor:02d}" / f"03-01-{emo}-01-{st}-01-{actor:02d}.wav", seed=actor * 100 + int(emo) * 10 + int(st))
    manifest = tmp_path / "m.parquet"
    assert runner.invoke(app, ["corpora", "scan", str(root), "-o", str(manifest)]).exit_code == 0
    out = tmp_path / "splits.csv"
    res = runner.invoke(app, ["splits", "make", str(manifest), "--protocol", "loso", "--output", str(out)])
    assert res.exit_code == 0, res.output
    splits = read_manifest(out)
    assert splits["fold"].nunique() == 6 and set(splits["role"]) == {"train", "valid", "test"}
    bad = runner.invoke(app, ["splits", "make", str(manifest), "--protocol", "nope", "--output", str(out)])
    assert bad.exit_code == 2 and "loso" in bad.output


def test_option_flags_read_values_as_set_does_and_nest_dotted_keys():
    from emolingua.cli import _parse_options

    got = _parse_options(["train.lr=3e-4", "train.epochs=5", "hidden=16", "layers=[2, 3]", "precision=fp32"])
    assert got == {"train": {"lr": 3e-4, "epochs": 5}, "hidden": 16, "layers": [2, 3], "precision": "fp32"}


def test_a_misspelt_nested_model_option_fails_before_any_work(tmp_path):
    result = runner.invoke(app, ["benchmark", "--corpora", str(tmp_path), "--output", str(tmp_path / "out"),
                                 "--model", "mlp", "-s", "model_options.train.lrr=0.1"])  # fmt: skip
    assert result.exit_code == 2 and "train.lrr" in result.output and "known" in result.output
    assert not (tmp_path / "out").exists()
