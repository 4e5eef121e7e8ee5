"""The embedding-transfer evaluation: its measures by hand, and a run over two synthetic corpora."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import write_voice

from emolingua.errors import ConfigError
from emolingua.transfer import TransferConfig, adjusted_r2, bhattacharyya, run_transfer


def test_bhattacharyya_distance_and_adjusted_r2_match_hand_computed_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 2))
    assert abs(bhattacharyya(a, a)) < 1e-12
    # equal covariances S, means d = (2, 0) apart: the log term vanishes, d^T S^-1 d / 8 is left (~0.5)
    s = np.cov(a, rowvar=False)
    assert math.isclose(bhattacharyya(a, a + np.array([2.0, 0.0])), 4 * np.linalg.inv(s)[0, 0] / 8, rel_tol=1e-9)
    x = np.arange(10.0)
    assert math.isclose(adjusted_r2(x, 3 * x + 1), 1.0)
    y = np.array([1.0, 3.0, 2.0, 5.0, 4.0])  # R^2 = 0.64 with one predictor: 1 - 0.36 * 4 / 3
    assert math.isclose(adjusted_r2(np.arange(5.0), y), 1 - 0.36 * 4 / 3)
    assert math.isnan(adjusted_r2(np.arange(2.0), np.array([1.0, 2.0])))  # too few rows for the predictors


_voice = write_voice


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root, seed = tmp_path_factory.mktemp("corpora"), 0
    ravdess = {"01": 140.0, "03": 220.0, "04": 110.0, "05": 260.0}  # neutral, happy, sad, angry
    emodb = {"N": 150.0, "F": 230.0, "T": 120.0, "W": 270.0}
    for actor in range(1, 7):
        for code, f0 in ravdess.items():
            for st in ("01", "02"):
                seed += 1
                _voice(root / "ravdess" / f"Actor_{actor:02d}" / f"03-01-{code}-01-{st}-01-{actor:02d}.wav", f0 * (1 + 0.03 * actor), seed)
    for spk in ("03", "08", "09", "10"):
        for letter, f0 in emodb.items():
            for text in ("a01", "b02"):
                seed += 1
                _voice(root / "emodb" / "wav" / f"{spk}{text}{letter}a.wav", f0, seed)
    return root


def test_a_transfer_run_measures_every_corpus_writes_a_report_and_resumes(tree, tmp_path, monkeypatch):
    cfg = TransferConfig(corpora=str(tree), output=str(tmp_path / "out"), store=str(tmp_path / "store"),
                         models=("dae", "dae-metric-act"), features="mfcc", reference_features=(), folds=2, seeds=(0,),
                         cv_folds=2, model_options={"train": {"epochs": 3}}, threads=1)  # fmt: skip
    measures = run_transfer(cfg, progress=False)
    assert set(measures["model"]) == {"dae", "dae-metric-act", "svc on mfcc"}
    assert set(measures["corpus"]) == {"ravdess (held-out speakers)", "emodb"}
    assert {"bacc", "bacc-zero-shot", "r2", "r2-diff", "spearman", "bhattacharyya", "fit-seconds", "outliers-dropped"} <= set(measures["metric"])
    per_job = measures[(measures["model"] == "dae") & (measures["metric"] == "bhattacharyya")]
    assert sorted(per_job["fold"]) == [1, 1, 2, 2]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Table 1" in report and "(SI)" in report and (tmp_path / "out" / "figures" / "latents-dae.png").exists()
    jobs = sorted((tmp_path / "out" / "jobs").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in jobs]
    again = run_transfer(cfg, progress=False)  # every job is read back, none recomputed
    assert [p.stat().st_mtime_ns for p in jobs] == stamps and len(again) == len(measures)
    from emolingua.models.metric_ae import MetricAutoencoder

    built = MetricAutoencoder.options  # as if a default of the model had changed in the code
    monkeypatch.setattr(MetricAutoencoder, "options", lambda self: {**built(self), "latent": 3})
    run_transfer(cfg, progress=False)
    assert len(list((tmp_path / "out" / "jobs").glob("dae-s0-*.json"))) == 4  # both folds again, under new keys


def test_bad_transfer_configs_are_refused_with_the_known_names():
    with pytest.raises(ConfigError, match="not a registered model; known:"):
        TransferConfig(corpora=".", output="o", models=("nope",))
    with pytest.raises(ConfigError, match="folds >= 2"):
        TransferConfig(corpora=".", output="o", folds=1)
