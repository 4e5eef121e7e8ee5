"""The benchmark command end to end on a tiny synthetic multilingual tree (MFCC features)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_two_corpora, write_voice

from emolingua.benchmark import BenchmarkConfig, load_emobox_reference, run_benchmark
from emolingua.reports import plot_confusion



_voice = write_voice


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_two_corpora(tmp_path_factory.mktemp("corpora"))


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


# ---------------------------------------------------------------------------- issue 7
FAST = {"model_options": {"C": (0.1,)}}  # one fit per layer: these tests are about the runner, not the model


def _copy_tree(tree, root):
    import shutil

    shutil.copytree(tree, root)
    return root


def _test_paths(res_dir):
    return {p for job in (res_dir / "jobs").glob("*.json") for p in json.loads(job.read_text()).get("test_path", [])}


def test_rerun_recomputes_exactly_the_jobs_whose_inputs_changed(tree, tmp_path):
    root = _copy_tree(tree, tmp_path / "data")
    cfg = _cfg(root, tmp_path, protocol="loso", **FAST)
    first = run_benchmark(cfg, progress=False)
    assert first["jobs"] == {"total": 8, "reused": 0, "computed": 8, "skipped": 0}
    same = run_benchmark(cfg, progress=False)
    assert same["jobs"]["reused"] == 8 and same["jobs"]["computed"] == 0
    assert [r["ua"] for r in same["corpora"]] == [r["ua"] for r in first["corpora"]]
    out = tmp_path / "out"
    assert "Jobs: 8 (8 reused from earlier runs, 0 computed)" in (out / "report.md").read_text()

    # new audio under an old name: every ravdess fold holds that row, no emodb fold does
    _voice(root / "ravdess" / "Actor_01" / "03-01-01-01-01-01-01.wav", 500.0, 999)
    changed = run_benchmark(cfg, progress=False)
    assert changed["jobs"] == {"total": 8, "reused": 4, "computed": 4, "skipped": 0}

    gone = sorted((root / "emodb" / "wav").glob("03*.wav"))  # one speaker's 8 files, half deleted
    for p in gone[:4]:
        p.unlink()
    after = run_benchmark(cfg, progress=False)
    by = {r["corpus"]: r for r in after["corpora"]}
    assert by["emodb"]["n"] == 32 - 4 and by["ravdess"]["n"] == 32
    assert after["jobs"] == {"total": 8, "reused": 4, "computed": 4, "skipped": 0}
    assert json.loads((out / "results.json").read_text())["jobs"] == after["jobs"]
    scored = {p for name in after["job_files"] for p in json.loads((out / "jobs" / name).read_text())["test_path"]}
    assert len(scored) == 60 and not scored & {str(p) for p in gone[:4]} and str(gone[4]) in scored


def test_a_fold_that_failed_with_an_error_is_computed_again_on_the_next_run(tree, tmp_path, monkeypatch):
    from emolingua import benchmark as B

    cfg = _cfg(tree, tmp_path, protocol="loso", **FAST)
    real = B._fit_candidate

    def broken(cfg, cand, normalise, train, valid, test):
        if "emodb" in set(test.corpus.tolist()):
            raise ValueError("a bug in the model, fixed before the next run")
        return real(cfg, cand, normalise, train, valid, test)

    monkeypatch.setattr(B, "_fit_candidate", broken)
    first = run_benchmark(cfg, progress=False)
    assert first["jobs"] == {"total": 8, "reused": 0, "computed": 8, "skipped": 4}
    monkeypatch.setattr(B, "_fit_candidate", real)
    fixed = run_benchmark(cfg, progress=False)
    assert fixed["jobs"] == {"total": 8, "reused": 4, "computed": 4, "skipped": 0}
    assert {r["corpus"] for r in fixed["corpora"]} == {"emodb", "ravdess"}


def _manifest_of(root, path):
    from emolingua.corpora import scan_corpora, write_manifest

    return write_manifest(scan_corpora(root=root).manifest, path)


def test_notes_name_each_file_left_out_with_its_reason_and_twins_keep_features(tree, tmp_path):
    import shutil

    import pandas as pd

    from emolingua.corpora import read_manifest

    root = _copy_tree(tree, tmp_path / "data")
    manifest = read_manifest(_manifest_of(root, tmp_path / "m.csv"))
    wavs = sorted((root / "emodb" / "wav").glob("*.wav"))
    twin = root / "emodb" / "copy-of-first.wav"  # the same bytes under a second name
    shutil.copy(wavs[0], twin)
    twin_row = manifest[manifest["path"] == str(wavs[0])].assign(path=str(twin))
    listed_twice = manifest[manifest["path"] == str(wavs[3])]
    manifest = pd.concat([manifest, twin_row, listed_twice], ignore_index=True)
    wavs[1].unlink()
    wavs[2].write_bytes(b"not audio at all")
    manifest.to_csv(tmp_path / "m.csv", index=False)
    res = run_benchmark(_cfg(tmp_path / "m.csv", tmp_path, protocol="loso", **FAST), progress=False)
    left_out = [n for n in res["notes"] if n.startswith("left out")]
    assert len(left_out) == 3, res["notes"]
    assert f"left out a second row of {wavs[3]}: the path is listed twice in the manifest" in left_out
    assert f"left out {wavs[1]}: file not found or not readable" in left_out
    (undecodable,) = [n for n in left_out if n.startswith(f"left out {wavs[2]}: ")]
    assert "not found" not in undecodable  # the decoder's own reason
    assert not any("files have no features" in n for n in res["notes"])
    by = {r["corpus"]: r for r in res["corpora"]}
    assert by["emodb"]["n"] == 32 - 2 + 1  # the twin is scored like any other row
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"- left out {wavs[1]}: " in report


def test_non_finite_features_are_left_out_by_name(tree, tmp_path, monkeypatch):
    from emolingua.features.store import FeatureStore

    load = FeatureStore.load
    poisoned = []
    path_of = {}

    def with_nan(self, *, keys, extractor, **kw):
        X, found, frames = load(self, keys=keys, extractor=extractor, **kw)
        X[0] = np.nan  # what an extreme clip once gave; it must not reach scikit-learn unnamed
        poisoned.append(path_of[keys[0]])
        return X, found, frames

    from emolingua.fileio import content_key

    for p in sorted((tree / "emodb").rglob("*.wav")):
        path_of[content_key(p)] = str(p)
    monkeypatch.setattr(FeatureStore, "load", with_nan)
    res = run_benchmark(_cfg(tree, tmp_path, protocol="speaker-kfold:2", only_corpora=("emodb",), **FAST), progress=False)
    assert f"left out {poisoned[0]}: non-finite features (NaN or infinity) from mfcc" in res["notes"]
    assert res["corpora"][0]["n"] == 31


def test_a_fold_too_small_is_a_note_and_the_other_corpora_are_scored(tree, tmp_path):
    from emolingua.corpora import read_manifest

    manifest = read_manifest(_manifest_of(tree, tmp_path / "m.csv"))
    ravdess = manifest["corpus"] == "ravdess"
    others = ravdess & ~manifest["speaker"].str.endswith("01")
    manifest.loc[others, "label"] = "neutral"  # only actor 01 shows more than one class
    manifest.to_csv(tmp_path / "m.csv", index=False)
    res = run_benchmark(_cfg(tmp_path / "m.csv", tmp_path, protocol="loso", **FAST), progress=False)
    skipped = [n for n in res["notes"] if "single class" in n]
    assert skipped and all(n.startswith("ravdess fold ") for n in skipped)
    assert res["jobs"]["skipped"] == len(skipped)
    assert {r["corpus"] for r in res["corpora"]} == {"ravdess", "emodb"}
    assert {r["corpus"]: r["folds"] for r in res["corpora"]}["emodb"] == 4


def test_a_corpus_filter_matching_nothing_fails_before_any_work(tree, tmp_path):
    from emolingua.errors import ConfigError

    for source in (tree, _manifest_of(tree, tmp_path / "m.parquet")):
        with pytest.raises(ConfigError, match=r"nosuch.*corpora there: emodb, ravdess"):
            run_benchmark(_cfg(source, tmp_path, protocol="loso", only_corpora=("ravdess", "nosuch")), progress=False)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())
    assert not (tmp_path / "out" / "jobs").exists()


@pytest.mark.parametrize("bad, match", [
    ({"protocol": "nope"}, "protocol 'nope': unknown; use one of loso"),
    ({"protocol": "emobox:/no/such/folder"}, "EmoBox folder not found"),
    ({"model": "forest"}, "model 'forest': unknown; use one of logreg"),
    ({"model": "ridge"}, "cannot predict target 'label'"),
    ({"model_options": {"depth": 3}}, "unknown config keys"),
    ({"features": "nope"}, "unknown extractor 'nope'"),
    ({"feature_options": {"n_mfcc": "many"}}, "mfcc option n_mfcc='many'"),
    ({"layers": "top"}, "layers 'top': unknown"),
    ({"normalise": "zz"}, "normalise 'zz': unknown"),
    ({"seed": -1}, "seed -1: must be at least 0"),
    ({"workers": 0}, "workers 0: must be at least 1"),
    ({"seed": "abc"}, "seed: expected an integer, got 'abc'"),
    ({"only_corpora": "emodb"}, "only_corpora: expected a list of texts"),
    ({"corpora": "/no/such/folder"}, "no such folder or manifest"),
])  # fmt: skip
def test_the_whole_configuration_is_validated_before_any_work(tree, tmp_path, monkeypatch, bad, match):
    import emolingua.benchmark as bm
    from emolingua.errors import EmolinguaError

    monkeypatch.setattr(bm, "scan_corpora", lambda **kw: pytest.fail("scanned before validating"))
    cfg = _cfg(tree, tmp_path, protocol="loso")
    with pytest.raises(EmolinguaError, match=match):
        run_benchmark(dataclasses.replace(cfg, **bad), progress=False)


def test_output_and_store_must_be_writable_before_any_work(tree, tmp_path, monkeypatch):
    import emolingua.benchmark as bm
    from emolingua.errors import InputFileError

    monkeypatch.setattr(bm, "scan_corpora", lambda **kw: pytest.fail("scanned before validating"))
    (tmp_path / "a-file").write_text("")
    for where in ("output", "store"):
        cfg = dataclasses.replace(_cfg(tree, tmp_path), **{where: str(tmp_path / "a-file" / "sub")})
        with pytest.raises(InputFileError, match="not writable"):
            run_benchmark(cfg, progress=False)


def test_layer_out_of_range_is_named_before_the_folds(tree, tmp_path):
    from emolingua.errors import ConfigError

    with pytest.raises(ConfigError, match=r"layers 7: out of range; mfcc has 1 layers"):
        run_benchmark(_cfg(tree, tmp_path, protocol="loso", layers="7"), progress=False)
    assert not (tmp_path / "out" / "jobs").exists()


def test_config_file_types_syntax_and_relative_paths(tmp_path):
    from emolingua.errors import ConfigError, InputFileError

    cases = {"seed.yaml": ("corpora: x\noutput: y\nseed: abc\n", r"seed.yaml: seed: expected an integer, got 'abc'"),
             "syntax.yaml": ("corpora: [x\n", r"syntax.yaml: not valid YAML .*line 2"),
             "list.yaml": ("- corpora\n- output\n", "must be a mapping"),
             "labels.yaml": ("corpora: x\noutput: y\nlabels: angry\n", "labels: expected a list of texts"),
             "bad.json": ("{corpora: x", r"bad.json: not valid JSON")}  # fmt: skip
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=match):
            BenchmarkConfig.from_file(tmp_path / name)
    with pytest.raises(InputFileError, match="is a folder"):
        BenchmarkConfig.from_file(tmp_path)
    with pytest.raises(InputFileError, match="not found"):
        BenchmarkConfig.from_file(tmp_path / "missing.yaml")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "c.yaml").write_text("corpora: ../data\noutput: runs/x\nlayers: 3\nprotocol: emobox:eb\n")
    cfg = BenchmarkConfig.from_file(tmp_path / "conf" / "c.yaml", output="/abs/out")
    assert cfg.corpora == str(tmp_path / "data") and cfg.output == "/abs/out"
    assert cfg.layers == "3" and cfg.protocol == f"emobox:{tmp_path / 'conf' / 'eb'}"


def test_reproduce_line_works_from_another_directory(tree, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from emolingua.cli import app

    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    args = ["benchmark", "--corpora", str(tree), "--output", "out", "--features", "mfcc", "--store", "store",
            "--corpus", "emodb", "--model-option", "C=[0.1]"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    report = (tmp_path / "here" / "out" / "report.md").read_text()
    (command,) = [line for line in report.splitlines() if line.startswith("Reproduce:")]
    config = command.split("--config ")[1].split("`")[0]
    assert Path(config).is_absolute()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = CliRunner().invoke(app, ["benchmark", "--config", config])
    assert again.exit_code == 0, again.output
    assert "jobs: 4 reused, 0 computed (of 4)" in again.stderr
    assert not any((tmp_path / "elsewhere").iterdir())


def test_fold_jobs_share_the_cores(monkeypatch):
    import emolingua.benchmark as bm

    monkeypatch.setattr(bm, "cpu_count", lambda: 8)
    assert BenchmarkConfig(corpora="x", output="y", workers=2).threads_per_worker == 4
    assert BenchmarkConfig(corpora="x", output="y", workers=16).threads_per_worker == 1
    assert BenchmarkConfig(corpora="x", output="y", workers=2, threads=1).threads_per_worker == 1
    assert BenchmarkConfig(corpora="x", output="y").workers <= bm.cpu_count()


def test_a_fold_job_runs_within_its_thread_share(tree, tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info

    import emolingua.benchmark as bm

    seen = []
    fit = bm._fit_candidate

    def spy(*args, **kwargs):
        seen.extend(pool["num_threads"] for pool in threadpool_info())
        return fit(*args, **kwargs)

    monkeypatch.setattr(bm, "_fit_candidate", spy)
    run_benchmark(_cfg(tree, tmp_path, protocol="speaker-kfold:2", only_corpora=("emodb",), threads=1, **FAST),
                  progress=False)  # fmt: skip
    assert seen and max(seen) == 1


class _FrameMeanNet(__import__("emolingua.models.probes", fromlist=["MLPNet"]).MLPNet):
    """Mean of each frame stream's valid frames, then the MLP head: a model that needs frames."""

    def __init__(self, *, input_shapes, n_classes, hidden=32, dropout=0.0, class_weights=None, **_):
        super().__init__(input_shapes={k: (v[-1],) for k, v in input_shapes.items()}, n_classes=n_classes,
                         hidden=hidden, dropout=dropout, input_dropout=0.0, class_weights=class_weights)  # fmt: skip

    def forward(self, batch):
        parts = []
        for k in self.input_shapes:
            x = batch.streams[k]
            if k in batch.lengths:
                mask = batch.frame_mask(k).unsqueeze(-1).float()
                x = (x * mask).sum(1) / mask.sum(1).clamp(min=1)
            parts.append(x.flatten(1))
        import torch

        return {"logits": self.head(torch.cat(parts, dim=1))}


def test_any_registered_model_runs_multi_stream_and_frame_models_included(tree, tmp_path):
    """The benchmark knows no model by name: a plugin reading frames and two extractors' streams runs."""
    from emolingua.models import TorchModel
    from emolingua.models.contract import _REGISTRY

    class FrameMean(TorchModel):
        """``test-frame-mean``: mean of the valid frames of each frame stream, then an MLP."""

        name = "test-frame-mean"
        Net = _FrameMeanNet
        uses_frames = True

    try:
        cfg = dataclasses.replace(_cfg(tree, tmp_path, protocol="loso", model="test-frame-mean", only_corpora=("emodb",),
                                       model_options={"hidden": 16, "train": {"epochs": 15}}),
                                  features="mfcc,logmel", feature_options={"mfcc": {"frames": True}})  # fmt: skip
        res = run_benchmark(cfg, progress=False)
        ua = {r["corpus"]: r["ua"] for r in res["corpora"]}
        assert ua["emodb"] > 0.5, res["notes"]
        with pytest.raises(Exception, match="reads frame sequences"):
            run_benchmark(dataclasses.replace(cfg, feature_options={}), progress=False)
    finally:
        _REGISTRY.pop("test-frame-mean")


def test_joint_folds_train_one_model_on_every_corpus_and_score_each(tree, tmp_path):
    cfg = _cfg(tree, tmp_path, protocol="speaker-kfold:2", model="logreg", joint=True)
    res = run_benchmark(cfg, progress=False)
    assert res["jobs"]["total"] == 2  # one job per fold, not per corpus
    by = {r["corpus"]: r for r in res["corpora"]}
    assert set(by) == {"ravdess", "emodb"} and all(r["ua"] > 0.5 for r in by.values())
    jobs = [json.loads((tmp_path / "out" / "jobs" / f).read_text()) for f in res["job_files"]]
    assert all(set(j["test_corpus"]) == {"ravdess", "emodb"} for j in jobs)
    with pytest.raises(Exception, match="joint"):
        run_benchmark(dataclasses.replace(cfg, protocol="leave-one-corpus-out"), progress=False)


def test_drop_labels_leaves_those_rows_out_of_every_fold_and_says_so(tree, tmp_path):
    full = run_benchmark(_cfg(tree, tmp_path, protocol="speaker-kfold:2", model="logreg", only_corpora=("emodb",)),
                         progress=False)  # fmt: skip
    cfg = _cfg(tree, tmp_path / "d", protocol="speaker-kfold:2", model="logreg", only_corpora=("emodb",),
               drop_labels=("neutral",))  # fmt: skip
    res = run_benchmark(cfg, progress=False)
    jobs = [json.loads((tmp_path / "d" / "out" / "jobs" / f).read_text()) for f in res["job_files"]]
    assert all("neutral" not in j["test_true"] and "neutral" not in j["test_pred"] for j in jobs)
    assert "neutral" in {t for j in (json.loads((tmp_path / "out" / "jobs" / f).read_text()) for f in full["job_files"])
                         for t in j["test_true"]}  # fmt: skip
    assert any("drop_labels" in n and "neutral" in n for n in res["notes"])
