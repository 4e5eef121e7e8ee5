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
from emolingua.models.contract import Model, ModelConfig, Prepared, check_class_weight
from emolingua.models.data import Dataset
from emolingua.models.module import Batch, SERModule
from emolingua.models.probes import LayerWeightsNet, MLPNet
from emolingua.models.trainer import TrainConfig, Trainer

__all__ = ["LayerWeights", "MLP", "TorchConfig", "TorchModel"]


@dataclass(frozen=True)
class TorchConfig(ModelConfig):
    """Options of torch classifiers: the net's ``hidden`` width and ``dropout``; ``class_weight``
    ("balanced" weights the cross-entropy by inverse class frequency); how it is trained
    (``train``: a :class:`~emolingua.models.trainer.TrainConfig`, e.g. ``-s model_options.train.lr=3e-4``);
    ``checkpoint_dir`` (a runtime setting: a killed fit resumes there)."""

    hidden: int = 256
    dropout: float = 0.2
    class_weight: str | None = None
    train: TrainConfig = TrainConfig(epochs=60, patience=10, batch_size=64)
    checkpoint_dir: str | None = runtime(None)

    def __post_init__(self) -> None:
        check_class_weight(self.class_weight)


class TorchModel(Model):
    """Base of torch classifiers; see the module docstring."""

    Config: ClassVar[type[ModelConfig]] = TorchConfig
    config: TorchConfig
    Net: ClassVar[type[SERModule]]
    quick_options: ClassVar[dict[str, Any]] = {"hidden": 32, "train": {"epochs": 30, "patience": 30, "lr": 3e-3}}

    #: the valid metric that stops training early and picks the epoch kept (a key of :meth:`valid_metrics`)
    monitor: ClassVar[str] = "ua"

    def net_options(self) -> dict[str, Any]:
        """The net's keyword options besides its input shapes and class count (JSON-able); called in
        ``fit`` after ``classes_``, ``label_sets_`` and ``languages_`` are known."""
        return {"hidden": self.config.hidden, "dropout": self.config.dropout}

    def train_config(self) -> TrainConfig:
        """How this fit is trained: ``config.train`` (a subclass may adapt it to the data, e.g. the lr)."""
        return self.config.train

    def valid_metrics(self, predicted: np.ndarray, valid: Prepared) -> dict[str, float]:
        """Valid metrics of predicted class indices: ``ua`` by default."""
        assert self.classes_ is not None
        return {"ua": unweighted_accuracy(valid.y, self.classes_[predicted])}

    def _batch(self, data: Prepared) -> Batch:
        assert self.target_ is not None and self.classes_ is not None
        rows = Dataset(streams=data.streams, targets={} if data.y is None else {self.target_: data.y},
                       corpus=data.data.corpus, language=data.data.language, speaker=data.data.speaker,
                       ids=data.data.ids)  # fmt: skip
        return Batch.from_dataset(rows, classes={self.target_: self.classes_.tolist()}, languages=self.languages_)

    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        cfg = self.config
        assert self.classes_ is not None and train.y_index is not None
        n_classes = len(self.classes_)
        class_weight = None
        if cfg.class_weight == "balanced":
            counts = np.bincount(train.y_index, minlength=n_classes).astype(np.float64)
            class_weight = (len(train.y_index) / (n_classes * counts)).tolist()
        self.net_meta_ = {"input_shapes": {k: list(v.shape[1:]) for k, v in sorted(train.streams.items())},
                          "n_classes": n_classes, "n_languages": len(self.languages_) + 1,
                          "class_weight": class_weight, **self.net_options()}  # fmt: skip
        monitor = {"monitor": self.monitor, "mode": "max"} if valid is not None else {"monitor": "loss", "mode": "min"}
        train_cfg = dataclasses.replace(self.train_config(), seed=cfg.seed, threads=cfg.threads, **monitor)
        with torch.random.fork_rng(devices=[]):  # the net's initial weights come from the model's seed
            torch.manual_seed(cfg.seed)
            net = self.Net(**self.net_meta_)
        evaluate: Callable[[SERModule], dict[str, float]] | None = None
        if valid is not None:
            valid_batch = self._batch(valid)

            def on_valid(module: SERModule) -> dict[str, float]:
                return self.valid_metrics(module(valid_batch)["logits"].argmax(dim=1).numpy(), valid)

            evaluate = on_valid

        self.net_ = Trainer(train_cfg).fit(net, train=self._batch(train), evaluate=evaluate,
                                           checkpoint_dir=cfg.checkpoint_dir)  # fmt: skip
        self.history = self.net_.history_
        self.selected = {"epochs": self.net_.best_epoch_}

    def _predict_proba(self, data: Prepared, *, chunk: int = 4096) -> np.ndarray:
        batch = self._batch(data)
        out = []
        self.net_.eval()
        with torch.no_grad():
            for start in range(0, len(data), chunk):
                rows = batch.rows(torch.arange(start, min(start + chunk, len(data))))
                out.append(torch.softmax(self.net_(rows)["logits"].double(), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_ or ())))

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        return {"net": self.net_meta_}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.net_meta_ = meta["net"]
        with torch.random.fork_rng(devices=[]):  # building a net draws initial weights: keep the caller's RNG
            net = self.Net(**self.net_meta_)
        state = {k[len("net.") :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")}
        net.load_state_dict(state, strict=True)
        net.eval()
        self.net_ = net


class MLP(TorchModel):
    """``mlp``: one hidden layer (ReLU, dropout) on every pooled stream, flattened; trained by the Trainer.

    >>> get_model("mlp", layers=(4,), class_weight="balanced").fit(train, valid=valid)  # doctest: +SKIP
    """

    name = "mlp"
    Net = MLPNet


class LayerWeights(TorchModel):
    """``layer-weights``: learned softmax weights over the layers of each layered stream, then an MLP.

    ``layers="select"`` means all layers here: the model weighs them itself.

    >>> m = get_model("layer-weights", stat="mean").fit(train, valid=valid)         # doctest: +SKIP
    >>> m.layer_weights_                          # {'whisper-base': array([...])}  # doctest: +SKIP
    """

    name = "layer-weights"
    Net = LayerWeightsNet

    def search_grid(self, train: Dataset) -> list[dict[str, Any]]:
        return [{}]

    @property
    def layer_weights_(self) -> dict[str, np.ndarray]:
        """The learned softmax weights over the chosen layers of each layered stream (each sums to 1)."""
        with torch.no_grad():
            return {k: v.numpy().astype(np.float64) for k, v in self.net_.layer_weights().items()}
