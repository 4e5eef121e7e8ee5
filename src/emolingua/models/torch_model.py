"""The estimator adapter for torch models: the :class:`~emolingua.models.contract.Model` contract
around an :class:`~emolingua.models.module.SERModule` trained by the one
:class:`~emolingua.models.trainer.Trainer`.

>>> m = get_model("mlp", train={"epochs": 100, "lr": 3e-4}).fit(train, valid=valid)   # doctest: +SKIP
>>> m.history[-1]                     # loss terms and valid UA of the last epoch   # doctest: +SKIP

A subclass names its net class (``Net``) and the net's options (:meth:`TorchModel.net_options`);
the net is rebuilt from those JSON-able options and its weights when a saved model is loaded.
Early stopping and the epoch kept are chosen on valid UA; without valid rows the net trains
for ``train.epochs`` and the epoch with the lowest training loss is kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from emolingua.config import runtime
from emolingua.metrics import unweighted_accuracy
from emolingua.errors import ConfigError
from emolingua.models.contract import Model, ModelConfig, Prepared, _better, check_class_weight
from emolingua.models.data import Dataset, Frames
from emolingua.models.module import Batch, SERModule
from emolingua.models.probes import LayerWeightsNet, MLPNet
from emolingua.models.trainer import TrainConfig, Trainer

__all__ = ["LayerWeights", "LayerWeightsConfig", "MLP", "ProbeConfig", "TorchConfig", "TorchModel", "ridge_layer_scores"]


@dataclass(frozen=True)
class TorchConfig(ModelConfig):
    """Options of torch classifiers: the net's ``hidden`` width and ``dropout``; ``class_weight``
    ("balanced" weights the cross-entropy by inverse class frequency); how it is trained
    (``train``: a :class:`~emolingua.models.trainer.TrainConfig`, e.g. ``-s model_options.train.lr=3e-4``);
    ``checkpoint_dir`` (a runtime setting: a killed fit resumes there); ``members``: an ensemble of
    that many nets of the chosen options, seeds ``seed``, ``seed + 1``, ..., each with its own early
    stopping on valid, their probabilities averaged (1: one net)."""

    hidden: int = 256
    dropout: float = 0.2
    class_weight: str | None = None
    train: TrainConfig = TrainConfig(epochs=60, patience=10, batch_size=64)
    checkpoint_dir: str | None = runtime(None)
    members: int = 1

    def __post_init__(self) -> None:
        check_class_weight(self.class_weight)
        if self.members < 1:
            raise ConfigError(f"members: must be >= 1, got {self.members}")


class TorchModel(Model):
    """Base of torch classifiers; see the module docstring."""

    Config: ClassVar[type[ModelConfig]] = TorchConfig
    config: TorchConfig
    Net: ClassVar[type[SERModule]]

    #: the valid metric that stops training early and picks the epoch kept (a key of :meth:`valid_metrics`)
    monitor: ClassVar[str] = "ua"

    def net_options(self) -> dict[str, Any]:
        """The net's keyword options besides its input shapes, class count and class weights (JSON-able);
        called in ``fit`` after ``classes_``, ``label_sets_`` and ``languages_`` are known."""
        return {"hidden": self.config.hidden, "dropout": self.config.dropout}

    def train_config(self) -> TrainConfig:
        """How this fit is trained: ``config.train`` (a subclass may adapt it to the data, e.g. the lr)."""
        return self.config.train

    def valid_metrics(self, predicted: np.ndarray, valid: Prepared) -> dict[str, float]:
        """Valid metrics of predicted class indices: ``ua`` by default."""
        assert self.classes_ is not None
        return {"ua": unweighted_accuracy(valid.y, self.classes_[predicted])}

    def candidates(self, train: Prepared, valid: Prepared | None) -> list[dict[str, Any]]:
        """Net options compared on valid inside ``fit`` (each trained in full; the best valid score wins;
        without valid rows only the first is trained)."""
        return [{}]

    def _batch(self, data: Prepared) -> Batch:
        assert self.target_ is not None and self.classes_ is not None
        streams = {k: v[:, [self.input_layers_[k]]] if k in self.input_layers_ else v for k, v in data.streams.items()}
        # the nets' losses read the class target as "label", whatever the rows call it (e.g. intensity)
        rows = Dataset(streams=streams, targets={} if data.y is None else {"label": data.y},
                       corpus=data.data.corpus, language=data.data.language, speaker=data.data.speaker,
                       ids=data.data.ids)  # fmt: skip
        return Batch.from_dataset(rows, classes={"label": self.classes_.tolist()}, languages=self.languages_)

    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        cfg = self.config
        assert self.classes_ is not None and train.y_index is not None
        self.input_layers_: dict[str, int] = {}
        grid = self.candidates(train, valid)  # may choose the input layers (input_layers_) first
        if valid is None:
            grid = grid[:1]  # nothing to compare by: the first candidate is the documented fallback
        n_classes = len(self.classes_)
        class_weights = None
        if cfg.class_weight == "balanced":
            counts = np.bincount(train.y_index, minlength=n_classes).astype(np.float64)
            class_weights = (len(train.y_index) / (n_classes * counts)).tolist()
        monitor = {"monitor": self.monitor, "mode": "max"} if valid is not None else {"monitor": "loss", "mode": "min"}
        train_cfg = dataclasses.replace(self.train_config(), seed=cfg.seed, threads=cfg.threads, **monitor)
        evaluate: Callable[[SERModule], dict[str, float]] | None = None
        if valid is not None:
            valid_batch = self._batch(valid)

            def on_valid(module: SERModule) -> dict[str, float]:
                return self.valid_metrics(module(valid_batch)["logits"].argmax(dim=1).numpy(), valid)

            evaluate = on_valid
        train_batch = self._batch(train)
        shapes = {k: list(v.shape[1:]) for k, v in sorted(train_batch.streams.items())}
        best_score: float | None = None
        tried: list[dict[str, Any]] = []
        for candidate in grid:
            meta = {"input_shapes": shapes, "n_classes": n_classes, "class_weights": class_weights,
                    **self.net_options(), **candidate}  # fmt: skip
            with torch.random.fork_rng(devices=[]):  # the net's initial weights come from the model's seed
                torch.manual_seed(cfg.seed)
                net = self.Net(**meta)
            ckpt = cfg.checkpoint_dir if len(grid) == 1 or cfg.checkpoint_dir is None else f"{cfg.checkpoint_dir}/{len(tried)}"
            net = Trainer(train_cfg).fit(net, train=train_batch, evaluate=evaluate, checkpoint_dir=ckpt)
            score = net.history_[net.best_epoch_ - 1][train_cfg.monitor] if net.best_epoch_ else float("nan")
            score = score if train_cfg.mode == "max" else -score
            tried.append({**candidate, "valid_score": score, "epochs": net.best_epoch_})
            if _better(score, best_score):
                best_score, self.net_meta_, self.net_ = score, meta, net
                chosen = {k: v for k, v in tried[-1].items() if k != "valid_score"}
        self.members_: list[SERModule] = []
        for i in range(1, cfg.members):  # the other members of an ensemble: the chosen options, other seeds
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + i)
                net = self.Net(**self.net_meta_)
            ckpt = None if cfg.checkpoint_dir is None else f"{cfg.checkpoint_dir}/member{i}"
            member_cfg = dataclasses.replace(train_cfg, seed=cfg.seed + i)
            self.members_.append(Trainer(member_cfg).fit(net, train=train_batch, evaluate=evaluate, checkpoint_dir=ckpt))
        self.history = self.net_.history_
        self.selected = {**{f"layer.{k}": v for k, v in self.input_layers_.items()}, **chosen}
        if self.members_:
            self.selected["member_epochs"] = [self.net_.best_epoch_, *(m.best_epoch_ for m in self.members_)]
        if len(tried) > 1:
            self.history = [{"candidates": tried}, *self.history]

    def _net_from(self, state: dict[str, torch.Tensor], *, seed: int | None = None, strict: bool = True) -> SERModule:
        """A net of ``net_meta_`` holding ``state``, in eval mode. Building draws initial weights: the
        caller's RNG is kept; ``seed`` fixes the draws of parts ``state`` lacks (``strict=False``)."""
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            net = self.Net(**self.net_meta_)
        net.load_state_dict(state, strict=strict)
        return net.eval()

    def nets_(self) -> list[SERModule]:
        """The fitted nets: one, or the members of an ensemble (``net_`` first)."""
        return [self.net_, *getattr(self, "members_", [])]

    def _predict_proba(self, data: Prepared, *, chunk: int = 4096) -> np.ndarray:
        batch = self._batch(data)
        out = []
        nets = self.nets_()
        for net in nets:
            net.eval()
        with torch.no_grad():
            for start in range(0, len(data), chunk):
                rows = batch.rows(torch.arange(start, min(start + chunk, len(data))))
                out.append(sum(torch.softmax(net(rows)["logits"].double(), dim=1) for net in nets).numpy() / len(nets))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_ or ())))

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {}
        for i, net in enumerate(self.nets_()):
            arrays.update({f"{'net' if i == 0 else f'member{i}'}.{k}": v.detach().cpu().numpy()
                           for k, v in net.state_dict().items()})  # fmt: skip
        return {"net": self.net_meta_, "input_layers": self.input_layers_, "members": len(self.nets_())}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.net_meta_, self.input_layers_ = meta["net"], meta.get("input_layers", {})
        nets = []
        for i in range(int(meta.get("members", 1))):
            prefix = "net." if i == 0 else f"member{i}."
            nets.append(self._net_from({k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                                        if k.startswith(prefix)}))  # fmt: skip
        self.net_, self.members_ = nets[0], nets[1:]


def ridge_layer_scores(train: np.ndarray, y_train: np.ndarray, valid: np.ndarray, y_valid: np.ndarray,
                       classes: np.ndarray, *, alphas: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)) -> list[float]:
    """Valid UA of a closed-form ridge classifier on each layer of ``(N, layers, dim)`` (best alpha per layer).

    On a corpus of a few speakers every layer separates the training rows, so training loss
    cannot say which layer carries over to a new speaker; a cheap probe scored on valid can.
    """
    from scipy.linalg import solve

    Y = np.eye(len(classes))[y_train] * 2.0 - 1.0
    scores = []
    for layer in range(train.shape[1]):
        A, V = train[:, layer].astype(np.float64), valid[:, layer].astype(np.float64)
        a_mean, y_mean = A.mean(axis=0), Y.mean(axis=0)
        A, Yc = A - a_mean, Y - y_mean
        dual = len(A) < A.shape[1]  # solve in the smaller Gram matrix
        G = A @ A.T if dual else A.T @ A
        best = -1.0
        for alpha in alphas:
            sol = solve(G + alpha * np.eye(len(G)), Yc if dual else A.T @ Yc, assume_a="pos")
            coef = A.T @ sol if dual else sol
            best = max(best, unweighted_accuracy(y_valid, classes[np.argmax((V - a_mean) @ coef + y_mean, axis=1)]))
        scores.append(float(best))
    return scores


@dataclass(frozen=True)
class ProbeConfig(TorchConfig):
    """Options of the probes (the recipe measured in ``benchmarks/probe_recipe.py``): a wide head
    with heavy ``input_dropout`` (its candidates are compared on valid), 100 epochs with early
    stopping after 20 on valid UA. With ``layers="select"`` (and valid rows) the layer of each
    layered stream is the one a closed-form ridge probe scores best on valid."""

    hidden: int = 512
    dropout: float = 0.5
    input_dropout: tuple[float, ...] = (0.5, 0.8)
    train: TrainConfig = TrainConfig(epochs=100, patience=20, lr=1e-3, weight_decay=1e-2, batch_size=32)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.input_dropout or any(not 0 <= p < 1 for p in self.input_dropout):
            raise ConfigError(f"input_dropout: expected values in [0, 1), got {list(self.input_dropout)}")


class _Probe(TorchModel):
    Config: ClassVar[type[ModelConfig]] = ProbeConfig
    config: ProbeConfig
    quick_options: ClassVar[dict[str, Any]] = {"hidden": 32, "input_dropout": [0.2],
                                               "train": {"epochs": 30, "patience": 30, "lr": 3e-3}}  # fmt: skip

    def search_grid(self, train: Dataset) -> list[dict[str, Any]]:
        return [{}]  # the layer and the candidates are chosen inside fit

    def _choose_layers(self, train: Prepared, valid: Prepared | None) -> None:
        """``layers="select"``: each layered stream's best layer by a ridge probe on valid (else all layers)."""
        self.layer_scores_: dict[str, list[float]] = {}
        if self.config.view.layers != "select" or valid is None:
            return
        assert self.classes_ is not None and train.y_index is not None
        for k, v in train.streams.items():
            if not isinstance(v, Frames) and v.ndim == 3 and v.shape[1] > 1:
                scores = ridge_layer_scores(v, train.y_index, valid.streams[k], valid.y, self.classes_)  # type: ignore[arg-type]
                self.layer_scores_[k] = scores
                self.input_layers_[k] = int(np.argmax(scores))


class MLP(_Probe):
    """``mlp``: a one-hidden-layer head (input dropout, ReLU, dropout) on every pooled stream, flattened.

    ``layers="select"`` picks one layer of each layered stream on valid (a ridge probe); the
    ``input_dropout`` candidates and the epoch kept are chosen on valid UA.

    >>> get_model("mlp", layers="select", class_weight="balanced").fit(train, valid=valid)  # doctest: +SKIP
    """

    name = "mlp"
    Net = MLPNet

    def candidates(self, train: Prepared, valid: Prepared | None) -> list[dict[str, Any]]:
        self._choose_layers(train, valid)
        return [{"input_dropout": p} for p in self.config.input_dropout]


@dataclass(frozen=True)
class LayerWeightsConfig(ProbeConfig):
    """``peak``: the candidates for where the layer mix starts: the logit of the layer a ridge probe
    ranks best on valid (0: an even start); ``layer_lr``: learning rate of the mix."""

    input_dropout: tuple[float, ...] = (0.8,)
    peak: tuple[float, ...] = (3.0, 6.0)
    layer_lr: float = 1e-2


class LayerWeights(_Probe):
    """``layer-weights``: a learned softmax over the layers of each layered stream, then the MLP head.

    The mix starts peaked at the layer a ridge probe ranks best on valid (a learned mix from an
    even start drifts to the layers that fit the training speakers fastest); how peaked is
    chosen on valid (``peak``).

    >>> m = get_model("layer-weights").fit(train, valid=valid)                   # doctest: +SKIP
    >>> m.layer_weights_                          # {'whisper-base': array([...])}  # doctest: +SKIP
    """

    name = "layer-weights"
    Config = LayerWeightsConfig
    config: LayerWeightsConfig
    Net = LayerWeightsNet

    def net_options(self) -> dict[str, Any]:
        return {**super().net_options(), "layer_lr": self.config.layer_lr}

    def candidates(self, train: Prepared, valid: Prepared | None) -> list[dict[str, Any]]:
        self._choose_layers(train, valid)
        start, self.input_layers_ = dict(self.input_layers_), {}  # every layer goes in; the best starts ahead
        peaks = self.config.peak if start else (0.0,)
        out = []
        for peak in peaks:
            init = {k: [peak if i == layer else 0.0 for i in range(train.streams[k].shape[1])] for k, layer in start.items()}
            out += [{"input_dropout": p, "init_logits": init or None} for p in self.config.input_dropout]
        return out

    @property
    def layer_weights_(self) -> dict[str, np.ndarray]:
        """The learned softmax weights over the layers of each layered stream (each sums to 1)."""
        with torch.no_grad():
            return {k: v.numpy().astype(np.float64) for k, v in self.net_.layer_weights().items()}
