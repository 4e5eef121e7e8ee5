"""From audio paths to a saved model's predictions, in a process that never saw the training data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from emolingua.features import get_extractor
from emolingua.features.extract import extract_to_store
from emolingua.features.store import FeatureStore
from emolingua.inference import predict_files
from emolingua.models import Dataset, Model, get_model


@pytest.fixture
def trained(tone, tmp_path):
    """logreg and mlp on MFCC + log-mel of tones whose pitch is the class; saved; the store deleted."""
    classes = ["low", "mid", "high"]
    paths, labels = [], []
    for i in range(36):
        k = i % 3
        path = tmp_path / "audio" / f"{i}.wav"
        rng = np.random.default_rng(i)
        t = np.arange(int(0.3 * 16000)) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 250 * k + rng.normal(0, 10)) * t) + 0.02 * rng.standard_normal(len(t))
        tone(path, seconds=0.01)  # creates the folder
        import soundfile as sf

        sf.write(path, x.astype(np.float32), 16000)
        paths.append(str(path))
        labels.append(classes[k])
    manifest = pd.DataFrame({"path": paths, "label": labels, "corpus": "tones", "language": "xx",
                             "speaker": [f"s{i % 4}" for i in range(36)]})  # fmt: skip
    store = FeatureStore(root=tmp_path / "train-store")
    extractors = [get_extractor("mfcc"), get_extractor("logmel")]
    for ex in extractors:
        extract_to_store(paths=paths, extractor=ex, store=store, progress=False)
    rows, _ = Dataset.from_store(manifest=manifest, store=store, extractors=extractors)
    models = {}
    for name, options in {"logreg": {}, "mlp": {"hidden": 16, "train": {"epochs": 10}}}.items():
        model = get_model(name, threads=1, **options).fit(rows.subset(np.arange(24)), valid=rows.subset(np.arange(24, 36)))
        models[name] = (model.save(tmp_path / name), model.predict_proba(rows))
    return paths, models, tmp_path


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_a_saved_model_predicts_from_audio_paths_in_a_fresh_process_as_it_did_in_training(trained, name):
    paths, models, tmp_path = trained
    folder, expected = models[name]
    script = (
        "import sys, json\n"
        "from emolingua.models import Model\n"
        "from emolingua.inference import predict_files\n"
        "paths = json.loads(sys.argv[2])\n"
        "table = predict_files(model=Model.load(sys.argv[1]), paths=paths + ['/no/such.wav'], store=sys.argv[3])\n"
        "table.to_parquet(sys.argv[3] + '.parquet')\n"
    )
    import json

    fresh_store = tmp_path / f"predict-store-{name}"
    subprocess.run([sys.executable, "-c", script, str(folder), json.dumps(paths), str(fresh_store)], check=True)
    table = pd.read_parquet(str(fresh_store) + ".parquet")
    assert table["path"].tolist() == [*paths, "/no/such.wav"]
    assert table["error"].iloc[-1] and (table["error"].iloc[:-1] == "").all()
    got = table[[c for c in table.columns if c.startswith("p:")]].iloc[:-1].to_numpy()
    classes = [c[2:] for c in table.columns if c.startswith("p:")]
    assert classes == Model.load(folder).classes_.tolist()
    np.testing.assert_array_equal(got, expected)


def test_a_model_trained_on_arrays_says_it_cannot_read_audio(tmp_path):
    rows = Dataset(X=np.random.default_rng(0).normal(size=(20, 4)), y=["a", "b"] * 10)
    model = get_model("logreg", C=(1.0,)).fit(rows)
    with pytest.raises(ValueError, match="does not say how its features were made"):
        predict_files(model=model, paths=[str(tmp_path / "x.wav")])
