"""The autoencoder family of Das et al. 2022: its loss terms against hand-computed values, and the models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emolingua.errors import ConfigError
from emolingua.models import Dataset, Model, get_model
from emolingua.models.metric_ae import cluster_loss, continuous_metric_loss, cyclical_beta, gaussian_kl, metric_slope


def test_the_slope_and_the_metric_loss_match_a_hand_computed_batch():
    z = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]], requires_grad=True)
    labels = torch.tensor([0.0, 1.0, 3.0])
    # l_d = [-1, -2], z_d = [[-1, -2], [-2, -1]]: p = [5, 4] / 5
    torch.testing.assert_close(metric_slope(z, labels), torch.tensor([1.0, 0.8]))
    loss = continuous_metric_loss(z, labels)
    # residuals [0, -1.2] and [0, 0.6]: mean squared norm (1.44 + 0.36) / 2; ||p - 1|| = 0.2
    assert math.isclose(loss["res"].item(), 0.9, rel_tol=1e-6) and math.isclose(loss["sl"].item(), 0.2, rel_tol=1e-6)
    (loss["res"] + loss["sl"]).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_a_batch_whose_labels_are_all_equal_asks_for_equal_latents_and_has_no_slope_term():
    z = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]], requires_grad=True)
    loss = continuous_metric_loss(z, torch.full((3,), 2.0))
    assert math.isclose(loss["res"].item(), (5.0 + 5.0) / 2) and loss["sl"].item() == 0.0
    loss["res"].backward()
    assert torch.isfinite(z.grad).all()
    assert torch.equal(metric_slope(z, torch.full((3,), 2.0)), torch.zeros(2))
    one = continuous_metric_loss(z[:1], torch.tensor([1.0]))
    assert one["res"].item() == 0.0 and one["sl"].item() == 0.0


def test_the_cyclical_kl_schedule_ramps_within_each_cycle():
    assert [cyclical_beta(e, epochs=8, cycles=2, ramp=0.5, beta_max=0.25) for e in range(1, 9)] == [
        0.0, 0.125, 0.25, 0.25, 0.0, 0.125, 0.25, 0.25]  # fmt: skip
    assert cyclical_beta(3, epochs=10, cycles=0, ramp=0.5, beta_max=1.0) == 1.0  # no annealing
    assert [cyclical_beta(e, epochs=4, cycles=1, ramp=1.0, beta_max=1.0) for e in range(1, 5)] == [0.0, 0.25, 0.5, 0.75]


def test_the_cluster_loss_and_the_kl_term_match_hand_computed_values():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    # centroids (1, 0) and (11, 0): four distances of 1 over one of 10
    assert math.isclose(float(cluster_loss(z, torch.tensor([0, 0, 1, 1]))), 0.4, rel_tol=1e-6)
    assert float(cluster_loss(z, torch.tensor([3, 3, 3, 3]))) == 0.0  # one class: nothing to separate
    assert float(gaussian_kl(torch.zeros(2, 2), torch.zeros(2, 2))) == 0.0
    assert math.isclose(float(gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))), 0.5)


def rows(n: int, seed: int) -> Dataset:
    """88 features, two of them carrying arousal and valence; four classes."""
    rng = np.random.default_rng(seed)
    classes = np.array(["angry", "happy", "neutral", "sad"])
    k = np.arange(n) % 4
    arousal = np.array([0.9, 0.7, 0.4, 0.2])[k] + rng.normal(scale=0.05, size=n)
    valence = np.array([0.1, 0.9, 0.5, 0.2])[k] + rng.normal(scale=0.05, size=n)
    X = rng.normal(size=(n, 88))
    X[:, :10] += 3 * arousal[:, None]
    X[:, 10:20] += 3 * valence[:, None]
    return Dataset(streams={"egemaps": X}, targets={"label": classes[k], "arousal": arousal, "valence": valence},
                   corpus=["c"] * n, language=["en"] * n, speaker=[f"s{i % 6}" for i in range(n)])  # fmt: skip


def test_the_metric_loss_orders_the_latent_by_activation_and_the_read_outs_give_both_dimensions(tmp_path):
    from scipy.stats import spearmanr

    train, test = rows(256, 0), rows(80, 1)
    model = get_model("dae-metric-act", threads=1, train={"epochs": 30}).fit(train)
    assert model.transform(test).shape == (80, 2)
    rho = spearmanr(model.predict(test), test.targets["arousal"]).statistic
    assert rho > 0.8
    dims = model.dimensions(test)
    assert set(dims) == {"arousal", "valence"} and dims["arousal"].shape == (80,)
    assert model.history[-1]["loss.res"] >= 0 and "loss.sl" in model.history[-1]
    loaded = Model.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.transform(test), model.transform(test))
    val = get_model("dae-metric-val", threads=1, train={"epochs": 2}).fit(train)
    assert val.target_ == "valence"


def test_outliers_are_dropped_and_counted_and_a_noise_grid_is_chosen_on_valid():
    train = rows(128, 0)
    X = train.streams["egemaps"].copy()
    X[0, ..., 5] = 1e4  # one row beyond |z| = 10 after z-scoring (one of n rows can reach sqrt(n - 1))
    train = Dataset(streams={"egemaps": X}, targets=train.targets, corpus=train.corpus, language=train.language)
    model = get_model("dae", threads=1, noise=(0.0, 0.3), train={"epochs": 3}).fit(train, valid=rows(40, 1))
    assert model.selected["outliers_dropped"] == 1
    assert [c["noise"] for c in model.history[0]["candidates"]] == [(0.0,), (0.3,)]


def test_the_vae_family_trains_with_its_terms_and_bad_options_are_refused():
    train = rows(96, 0)
    ss = get_model("vae-ss", threads=1, train={"epochs": 4}).fit(train)
    assert {"loss.rec", "loss.kl", "loss.clus"} <= set(ss.history[-1])
    assert ss.history[0]["loss.kl"] == 0.0  # the annealed beta starts each cycle at 0
    plain = get_model("vae", threads=1, train={"epochs": 2}).fit(train)
    assert "loss.clus" not in plain.history[-1] and plain.history[0]["loss.kl"] > 0
    with pytest.raises(ValueError, match="cluster loss needs class labels 'emotion'"):
        get_model("vae-ss", threads=1, cluster_target="emotion", train={"epochs": 1}).fit(train)
    with pytest.raises(ConfigError, match="decoder_act"):
        get_model("dae", decoder_act=("relu",))
    with pytest.raises(ConfigError, match="'gelu'"):
        get_model("dae", encoder_act="gelu")
