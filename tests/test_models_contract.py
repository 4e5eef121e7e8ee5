"""The contract every registered model keeps, checked over the whole registry (plugins included).

In the manner of scikit-learn's ``check_estimator``: a model registered under a name gets these
checks without writing a test of its own. ``Model.quick_options`` make each fit take a second.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from emolingua.models import Dataset, Model, get_model, model_class, model_names

CLASSES = np.array(["ang", "hap", "neu", "sad"])


def rows(n: int, *, seed: int, language: str = "en", corpus: str = "c1") -> Dataset:
    """Two streams of different widths (one layered); a label and an arousal value per row."""
    rng = np.random.default_rng(seed)
    k = np.arange(n) % len(CLASSES)
    a = rng.normal(size=(n, 3, 8))
    a[:, 1, :4] += np.eye(4)[k] * 4.0
    b = rng.normal(size=(n, 5))
    b[:, 0] += k * 0.8
    arousal = 0.4 * k + rng.normal(scale=0.2, size=n)
    return Dataset(streams={"a": a, "b": b}, targets={"label": CLASSES[k], "arousal": arousal},
                   corpus=[corpus] * n, language=[language] * n, speaker=[f"s{i % 5}" for i in range(n)])  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return {"train": rows(96, seed=1), "valid": rows(40, seed=2), "test": rows(30, seed=3)}


def build(name: str, **extra) -> Model:
    cls = model_class(name)
    target = "label" if cls.task == "classification" else "arousal"
    return get_model(name, target=target, threads=1, **{**cls.quick_options, **extra})


def outputs(model: Model, data: Dataset) -> np.ndarray:
    return model.predict_proba(data) if model.task == "classification" else model.predict(data)


@pytest.fixture(scope="module")
def fitted(data):
    return {name: build(name).fit(data["train"], valid=data["valid"]) for name in model_names()}


@pytest.mark.parametrize("name", model_names())
def test_fit_returns_the_fitted_model_and_it_predicts(name, data, fitted):
    model = build(name)
    assert model.fit(data["train"], valid=data["valid"]) is model
    out = outputs(fitted[name], data["test"])
    assert out.shape[0] == 30 and np.isfinite(out).all()
    if model.task == "classification":
        assert out.shape == (30, 4) and np.allclose(out.sum(axis=1), 1.0)
        assert (fitted[name].predict(data["test"]) == data["test"].targets["label"]).mean() > 0.5  # it learned


@pytest.mark.parametrize("name", model_names())
def test_same_seed_same_predictions(name, data, fitted):
    again = build(name).fit(data["train"], valid=data["valid"])
    np.testing.assert_array_equal(outputs(again, data["test"]), outputs(fitted[name], data["test"]))


@pytest.mark.parametrize("name", model_names())
def test_save_then_load_in_a_new_process_predicts_identically(name, data, fitted, tmp_path):
    folder = fitted[name].save(tmp_path / "model")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["model"] == name and meta["emolingua"] and meta["training"]["rows"] == 96
    assert set(meta["streams"]) == {"a", "b"} and meta["normaliser"]["mode"] == "train"
    assert not list(folder.glob("*.pkl")) and (folder / "weights.safetensors").exists()
    test = data["test"]
    np.savez(tmp_path / "test.npz", a=test.streams["a"], b=test.streams["b"])
    script = (
        "import sys, numpy as np\n"
        "from emolingua.models import Dataset, Model\n"
        "z = np.load(sys.argv[1] + '/test.npz')\n"
        "d = Dataset(streams={'a': z['a'], 'b': z['b']}, language=['en'] * len(z['a']))\n"
        "m = Model.load(sys.argv[1] + '/model')\n"
        "np.save(sys.argv[1] + '/out.npy', m.predict_proba(d) if m.task == 'classification' else m.predict(d))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), outputs(fitted[name], test))


@pytest.mark.parametrize("name", model_names())
def test_a_fitted_model_pickles(name, data, fitted):
    copy = pickle.loads(pickle.dumps(fitted[name]))
    np.testing.assert_array_equal(outputs(copy, data["test"]), outputs(fitted[name], data["test"]))


@pytest.mark.parametrize("name", model_names())
def test_one_utterance_alone_or_in_a_batch_of_30_gives_the_same_output(name, data, fitted):
    test, model = data["test"], fitted[name]
    together = outputs(model, test)
    alone = np.concatenate([outputs(model, test.subset([i])) for i in range(len(test))])
    np.testing.assert_allclose(alone, together, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", model_names())
def test_embed_gives_one_finite_vector_per_row_alone_or_in_a_batch(name, data, fitted):
    test, model = data["test"], fitted[name]
    together = model.embed(test)
    assert together.ndim == 2 and len(together) == len(test) and together.shape[1] > 0
    assert np.isfinite(together).all()
    np.testing.assert_allclose(model.embed(test.subset([3])), together[3:4], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", model_names())
def test_a_language_unseen_in_training_is_predicted(name, data, fitted):
    """Defined per model (language-independent parts, or a universal head): an answer, never an error or NaN."""
    unseen = rows(12, seed=4, language="sw", corpus="new")
    out = outputs(fitted[name], unseen)
    assert np.isfinite(out).all() and len(out) == 12
    if fitted[name].task == "classification":
        assert np.allclose(out.sum(axis=1), 1.0)
    if name in ("logreg", "linear-svm", "ridge", "mlp", "layer-weights"):  # they ignore the language
        np.testing.assert_allclose(out, outputs(fitted[name], rows(12, seed=4)), atol=1e-6)


@pytest.mark.parametrize("name", model_names())
def test_fit_and_predict_leave_global_threads_and_rng_alone(name, data, tmp_path):
    import torch

    np.random.seed(7)
    torch.manual_seed(7)
    before = (torch.get_num_threads(), torch.get_rng_state().clone(), np.random.get_state()[1].copy(),
              [i["num_threads"] for i in threadpool_info()])  # fmt: skip
    model = build(name).fit(data["train"], valid=data["valid"])
    outputs(model, data["test"])
    Model.load(model.save(tmp_path / "m"))
    after = (torch.get_num_threads(), torch.get_rng_state(), np.random.get_state()[1],
             [i["num_threads"] for i in threadpool_info()])  # fmt: skip
    assert after[0] == before[0] and after[3] == before[3]
    assert torch.equal(after[1], before[1]) and np.array_equal(after[2], before[2])


@pytest.mark.parametrize("name", model_names())
def test_options_round_trip_and_a_misspelt_option_is_refused(name):
    model = build(name)
    assert get_model(name, **model.options()).config == model.config
    with pytest.raises(ValueError, match="unknown config keys"):
        get_model(name, not_an_option=1)


def test_runtime_settings_never_enter_a_model_fingerprint():
    from emolingua.config import fingerprint

    a = get_model("mlp", threads=1, train={"threads": 1, "device": "cpu"}, checkpoint_dir="/tmp/x")
    b = get_model("mlp")
    assert fingerprint(a.config) == fingerprint(b.config)
    assert fingerprint(get_model("mlp", train={"lr": 3e-4}).config) != fingerprint(b.config)


def test_a_nested_option_changes_only_the_fields_it_names():
    default = get_model("mlp").config.train
    changed = get_model("mlp", **{"train.lr": 3e-4}).config.train
    assert changed.lr == 3e-4 and changed.epochs == default.epochs and changed.patience == default.patience
    assert get_model("mlp", train={"patience": 3}).config.train.epochs == default.epochs
