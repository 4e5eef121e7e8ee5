"""The benchmark command end to end on a tiny synthetic multilingual tree (MFCC features)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from emolingua.benchmark import BenchmarkConfig, load_emobox_reference, run_benchmark
from emolingua.reports import plot_confusion

PITCH = {"01": 120.0, "03": 260.0, "04": 90.0, "05": 330.0}  # ravdess codes: neutral, happy, sad, angry
EMODB = {"N": 120.0, "F": 260.0, "T": 90.0, "W": 330.0}


def _voice(path, f0, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.5 * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 4)) * 0.2 + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), 16000)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    seed = 0
    for actor in range(1, 5):
        for code, f0 in PITCH.items():
            for st in ("01", "02"):
                seed += 1
                _voice(root / "ravdess" / f"Actor_{actor:02d}" / f"03-01-{code}-01-{st}-01-{actor:02d}.wav", f0 * (1 + 0.03 * actor), seed)
    for spk in ("03", "08", "09", "10"):
        for letter, f0 in EMODB.items():
            for text in ("a01", "b02"):
                seed += 1
                _voice(root / "emodb" / "wav" / f"{spk}{text}{letter}a.wav", f0 * (1 + 0.02 * int(spk) / 10), seed)
    return root


def _cfg(tree, tmp_path, **kw):
    return BenchmarkConfig(corpora=str(tree), output=str(tmp_path / "out"), features="mfcc", store=str(tmp_path / "store"),
                           n_boot=200, **kw)  # fmt: skip


def test_loso_end_to_end_and_resume(tree, tmp_path):
    cfg = _cfg(tree, tmp_path, protocol="loso", model="logreg")
    res = run_benchmark(cfg, progress=False)
    by = {r["corpus"]: r for r in res["corpora"]}
    assert set(by) == {"ravdess", "emodb"}
    for r in by.values():
        assert r["speaker_independent"] and r["folds"] == 4 and r["n"] == 32
        assert r["ua"] > 0.5  # pitch separates the classes; chance is 0.25
        assert r["ua_ci"][0] <= r["ua"] <= r["ua_ci"][1]
    out = tmp_path / "out"
    report = (out / "report.md").read_text()
    assert "| ravdess | en | loso | SI | 32 | 4 |" in report
    assert (out / "confusion" / "ravdess.png").stat().st_size > 0 and (out / "layers.png").exists() is False
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["protocol"] == "loso"
    # a rerun finds every job done and gives the same numbers
    jobs = list((out / "jobs").rglob("*.json"))
    mtimes = {p: p.stat().st_mtime_ns for p in jobs}
    again = run_benchmark(cfg, progress=False)
    assert {p: p.stat().st_mtime_ns for p in jobs} == mtimes
    assert [r["ua"] for r in again["corpora"]] == [r["ua"] for r in res["corpora"]]
    # the config file written beside the report reproduces the run
    assert BenchmarkConfig.from_file(out / "config.yaml") == cfg


def test_transfer_and_few_shot(tree, tmp_path):
    res = run_benchmark(_cfg(tree, tmp_path, protocol="leave-one-language-out"), progress=False)
    assert {r["corpus"] for r in res["corpora"]} == {"ravdess", "emodb"}
    assert all(r["speaker_independent"] and r["scored_labels"] == ["angry", "happy", "neutral", "sad"] for r in res["corpora"])
    few = run_benchmark(_cfg(tree, tmp_path / "few", protocol="few-shot", shots=(0, 2), repeats=2), progress=False)
    ks = {(r["corpus"], r["shots"]) for r in few["few_shot"]}
    assert ks == {("ravdess", 0), ("ravdess", 2), ("emodb", 0), ("emodb", 2)}
    assert all(len(r["ua_repeats"]) == 2 for r in few["few_shot"])
    assert (tmp_path / "few" / "out" / "few_shot.png").exists()


def test_config_errors_and_reference(tmp_path):
    with pytest.raises(ValueError, match="target"):
        BenchmarkConfig(corpora="x", output="y", target="colour")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("corpora: x\noutput: y\nprotcol: loso\n")
    with pytest.raises(ValueError, match="unknown config keys"):
        BenchmarkConfig.from_file(cfg)
    ref = tmp_path / "emobox-ua.md"
    ref.write_text("# t\n\n| backbone | EMOVO | URDU |\n|---|---|---|\n| hubert-base | 46.10 | 88.41 |\n")
    assert load_emobox_reference(ref) == {"emovo": {"hubert-base": 46.1}, "urdu": {"hubert-base": 88.41}}


def test_confusion_plot_writes_png(tmp_path):
    p = plot_confusion(confusion=[[5, 1], [2, 7]], labels=["sad", "angry"], title="t", path=tmp_path / "cm.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_corpus_without_categories_is_scored_on_intensity(tree, tmp_path):
    import shutil

    root = tmp_path / "mixed"
    shutil.copytree(tree / "ravdess", root / "ravdess")
    seed = 1000
    for spk in range(1, 5):
        for level, f0 in (("0", 110.0), ("1", 200.0), ("2", 320.0)):
            for take in range(3):
                seed += 1
                _voice(root / "baved" / "3" / f"{spk}-m-2{spk}-3-{level}-{take}.wav", f0, seed)
    res = run_benchmark(_cfg(root, tmp_path, protocol="loso"), progress=False)
    rows = {r["corpus"]: r for r in res["corpora"]}
    assert set(rows) == {"ravdess", "baved (intensity)"}
    assert rows["baved (intensity)"]["scored_labels"] == ["high", "low", "normal"]
    assert any("intensity" in note for note in res["notes"])
    assert "| baved (intensity) | ar |" in (tmp_path / "out" / "report.md").read_text()


def test_continuous_target_with_ridge(tree, tmp_path):
    res = run_benchmark(_cfg(tree, tmp_path, protocol="speaker-kfold:2", target="arousal", model="ridge",
                             only_corpora=("ravdess",)), progress=False)  # fmt: skip
    (row,) = res["corpora"]
    assert row["corpus"] == "ravdess" and row["ccc"] > 0.5  # arousal priors follow the pitch classes
    assert "CCC" in (tmp_path / "out" / "report.md").read_text()
