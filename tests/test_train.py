"""Training a pipeline folder: heads, valid speakers, what the folder records, config errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emolingua.errors import ConfigError
from emolingua.models import Model
from emolingua.protocols import valid_speakers
from emolingua.train import TrainConfig


def test_the_folder_holds_every_head_and_what_it_was_trained_on(tiny_pipeline):
    spec = json.loads((tiny_pipeline / "pipeline.json").read_text())
    assert spec["labels"] == ["angry", "happy", "neutral", "sad"] and spec["languages"] == ["xx"]
    assert set(spec["heads"]) == {"emotion", "arousal", "valence"}
    emotion = spec["heads"]["emotion"]
    assert emotion["train_rows"] + emotion["valid_rows"] == 64 and emotion["valid_rows"] == 16  # 2 of 8 speakers
    assert emotion["valid_metric"] == "UA" and spec["heads"]["arousal"]["valid_metric"] == "CCC"
    assert spec["segments"]["how"] == "vad" and "output" not in spec["recipe"]
    assert not (tiny_pipeline / "manifest.parquet").exists()
    model = Model.load(tiny_pipeline / "emotion")
    assert model.features_ and all(info["fingerprint"] for info in model.features_.values())
    assert model.training_["speakers"] == 6


def test_valid_speakers_are_whole_speakers_per_corpus_and_repeatable():
    rows = pd.DataFrame({"path": [f"{c}{s}_{i}.wav" for c in "ab" for s in range(5) for i in range(4)],
                         "corpus": [c for c in "ab" for _ in range(20)],
                         "speaker": [f"{c}{s}" for c in "ab" for s in range(5) for _ in range(4)],
                         "label": ["x", "y"] * 20, "content": [f"k{i}" for i in range(40)]})  # fmt: skip
    roles = valid_speakers(rows, fraction=0.2, seed=1)
    assert set(roles) == {"train", "valid"}
    per_speaker = pd.Series(roles).groupby(rows["speaker"]).nunique()
    assert (per_speaker == 1).all()  # a speaker is never split
    assert (pd.Series(roles == "valid").groupby(rows["corpus"]).sum() == 4).all()  # one of five speakers each
    assert (valid_speakers(rows.iloc[::-1], fraction=0.2, seed=1)[::-1] == roles).all()  # order does not matter
    one = rows[rows["speaker"] == "a0"]
    assert (valid_speakers(one, fraction=0.2) == "train").all()


@pytest.mark.parametrize("values, match", [
    ({"model": "ridge"}, "needs a classifier"), ({"affect_model": "logreg"}, "not a regression model"),
    ({"model": "nope"}, "not a registered model"), ({"valid_fraction": 1.5}, "valid_fraction"),
    ({"segments": {"how": "words"}}, "segments='words'"),
])  # fmt: skip
def test_bad_recipes_are_refused_before_any_work(values, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(corpora="x", output="y", **values)


def test_a_config_file_and_dotted_overrides_reproduce_a_recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("corpora: data\noutput: out\nmodel: logreg\nmodel_options: {C: [0.1]}\nsegments: {how: window}\n")
    cfg = TrainConfig.from_file(path, overrides=["model_options.class_weight=balanced", "segments.window=2.0"])
    assert cfg.corpora == str(tmp_path / "data") and cfg.model_options == {"C": [0.1], "class_weight": "balanced"}
    assert cfg.segments == {"how": "window", "window": 2.0} and np.isclose(cfg.valid_fraction, 0.2)
