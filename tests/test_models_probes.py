"""The pooled-feature probes: shapes, the layer mix, learning through the Trainer, pickling, rebuilding from config."""

from __future__ import annotations

import io
import json
import pickle

import pytest
import torch

from emolingua.models.module import Batch
from emolingua.models.probes import LayerWeightsNet, MLPNet
from emolingua.models.trainer import TrainConfig, Trainer

SHAPES = {"whisper-base": (3, 8), "egemaps": (5,)}


def make_batch(n: int = 120, *, seed: int = 0, classes: int = 3) -> Batch:
    """Three classes, separable along one direction of layer 2 only (layers 0 and 1 are noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    layers = torch.randn(n, 3, 8, generator=g)
    layers[:, 2, :classes] += 3.0 * torch.nn.functional.one_hot(y, classes).float()
    return Batch(streams={"whisper-base": layers, "egemaps": torch.randn(n, 5, generator=g)},
                 targets={"label": y}, masks={"label": torch.ones(n, dtype=torch.bool)})  # fmt: skip


def build(cls: type, **options) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return cls(input_shapes=SHAPES, n_classes=3, hidden=16, dropout=0.1, **options)


@pytest.mark.parametrize("cls", [MLPNet, LayerWeightsNet])
def test_logits_shape_and_head_width(cls: type) -> None:
    net = build(cls)
    out = net(make_batch(10))
    assert set(out) == {"logits"} and out["logits"].shape == (10, 3)
    # the mlp sees every stream flattened; layer-weights one mixed vector per 3-D stream
    assert net.d_in() == (3 * 8 + 5 if cls is MLPNet else 8 + 5)


def test_layer_weights_sum_to_one_and_start_where_asked() -> None:
    net = build(LayerWeightsNet)
    w = net.layer_weights()
    assert list(w) == ["whisper-base"]  # the 2-D stream has no mix
    assert torch.allclose(w["whisper-base"], torch.full((3,), 1 / 3))
    peaked = build(LayerWeightsNet, init_logits={"whisper-base": [0.0, 0.0, 6.0]})
    w = peaked.layer_weights()["whisper-base"].detach()
    assert float(w.sum()) == pytest.approx(1.0) and float(w[2]) > 0.99
    with pytest.raises(ValueError, match="init_logits"):
        build(LayerWeightsNet, init_logits={"whisper-base": [0.0, 1.0]})
    with pytest.raises(ValueError, match="init_logits"):
        build(LayerWeightsNet, init_logits={"egemaps": [0.0] * 5})


def test_wrong_streams_are_named() -> None:
    net = build(MLPNet)
    batch = make_batch(4)
    with pytest.raises(KeyError, match="egemaps"):
        net(Batch(streams={"whisper-base": batch.streams["whisper-base"]}))
    with pytest.raises(ValueError, match="egemaps"):
        net(Batch(streams={**batch.streams, "egemaps": torch.zeros(4, 6)}))


def test_layer_logits_get_their_own_lr_and_no_decay() -> None:
    net = build(LayerWeightsNet, layer_lr=0.05)
    groups = net.param_groups(lr=1e-3, weight_decay=0.1)
    mix = [g for g in groups if any(p is net.layer_logits[0] for p in g["params"])]
    assert len(mix) == 1 and mix[0]["lr"] == 0.05 and mix[0]["weight_decay"] == 0.0 and len(mix[0]["params"]) == 1
    counted = sum(len(g["params"]) for g in groups)
    assert counted == len(list(net.parameters()))  # each parameter in exactly one group


def ua(net: torch.nn.Module, batch: Batch) -> float:
    pred = net(batch)["logits"].argmax(1)
    y = batch.targets["label"]
    return float(torch.stack([(pred[y == k] == k).float().mean() for k in torch.unique(y)]).mean())


@pytest.mark.parametrize("cls", [MLPNet, LayerWeightsNet])
def test_learns_a_separable_problem_through_the_trainer(cls: type) -> None:
    train, valid = make_batch(120, seed=1), make_batch(60, seed=2)
    cfg = TrainConfig(epochs=40, lr=1e-2, batch_size=32, patience=40, monitor="ua", mode="max", threads=1)
    options = {"layer_lr": 0.1} if cls is LayerWeightsNet else {}
    net = Trainer(cfg, log=lambda s: None).fit(build(cls, **options), train=train,
                                               evaluate=lambda m: {"ua": ua(m, valid)})  # fmt: skip
    assert net.history_[-1]["loss"] < net.history_[0]["loss"]
    with torch.no_grad():
        assert ua(net, valid) > 0.9
        if cls is LayerWeightsNet:  # the mix moves to the one informative layer
            w = net.layer_weights()["whisper-base"]
            assert int(w.argmax()) == 2 and float(w[2]) > 1 / 3


def test_class_weights_enter_the_loss() -> None:
    batch = make_batch(30)
    plain = build(MLPNet).eval()
    weighted = build(MLPNet, class_weights=[1.0, 1.0, 10.0]).eval()
    with torch.no_grad():
        a = plain.losses(plain(batch), batch, 1)["ce"]
        b = weighted.losses(weighted(batch), batch, 1)["ce"]
    assert set(plain.losses(plain(batch), batch, 1)) == {"ce"}
    assert float(a) != pytest.approx(float(b))
    with pytest.raises(ValueError, match="class_weights"):
        build(MLPNet, class_weights=[1.0, 2.0])


@pytest.mark.parametrize("cls", [MLPNet, LayerWeightsNet])
def test_pickles_and_rebuilds_from_its_json_config(cls: type) -> None:
    net = build(cls, class_weights=[1.0, 2.0, 3.0]).eval()
    batch = make_batch(7)
    with torch.no_grad():
        expected = net(batch)["logits"]
        again = pickle.loads(pickle.dumps(net))
        assert torch.equal(again(batch)["logits"], expected)
        config = json.loads(json.dumps(net.config))  # only JSON types
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        buffer.seek(0)
        rebuilt = cls(**config)
        rebuilt.load_state_dict(torch.load(buffer, weights_only=True))
        assert torch.equal(rebuilt.eval()(batch)["logits"], expected)
