"""Models: one contract (fit on train, choose on valid, predict, save, load) and one registry.

>>> from emolingua.models import Dataset, Model, get_model
>>> train = Dataset(streams={"whisper-base": X}, targets={"label": y}, corpus=corpus, language=language)  # doctest: +SKIP
>>> model = get_model("logreg", layers="select").fit(train, valid=valid)                  # doctest: +SKIP
>>> model.selected, model.predict(test)[:3]           # {'layers': (3,), 'C': 0.01}, ['angry' ...]  # doctest: +SKIP
>>> model.save("runs/m"); Model.load("runs/m").predict_proba(test)                          # doctest: +SKIP

The package, bottom up:

- :mod:`~emolingua.models.data`: :class:`Dataset` (named streams, pooled or :class:`Frames`;
  named targets with masks; corpus, language, speaker and id of each row; loaded from a
  manifest and a feature store in one call);
- :mod:`~emolingua.models.normalisation`: :class:`Normaliser` (training statistics by default;
  the transductive adaptations are named ``adapt-*``);
- :mod:`~emolingua.models.contract`: :class:`Model`, :class:`FeatureView`, the registry
  (:func:`get_model`, :func:`model_names`), saving and loading;
- :mod:`~emolingua.models.linear`: ``logreg``, ``linear-svm``, ``ridge``;
- :mod:`~emolingua.models.module` and :mod:`~emolingua.models.trainer`: the torch module
  contract (:class:`SERModule`, :class:`Batch`) and the one :class:`Trainer`;
- :mod:`~emolingua.models.torch_model`: the estimator adapter (:class:`TorchModel`) and the
  probes ``mlp`` and ``layer-weights`` (nets in :mod:`~emolingua.models.probes`).

Torch is imported only when a torch model is used.
"""

from __future__ import annotations

from typing import Any

from emolingua.models.contract import (
    FeatureView,
    Model,
    ModelConfig,
    Prepared,
    RegressionModel,
    get_model,
    model_class,
    model_names,
)
from emolingua.models.contract import _REGISTRY  # noqa: F401  (the CLI lists it)
from emolingua.models.data import Dataset, Frames
from emolingua.models.linear import LinearConfig, LinearSVM, LogReg, Ridge, RidgeConfig
from emolingua.models.normalisation import MODES as NORMALISE
from emolingua.models.normalisation import Normaliser

__all__ = [
    "NORMALISE", "Dataset", "FeatureView", "Frames", "LayerWeights", "LinearConfig", "RidgeConfig", "LinearSVM", "LogReg", "MLP", "Model",
    "ModelConfig", "Normaliser", "Prepared", "RegressionModel", "Ridge", "TorchConfig", "TorchModel",
    "get_model", "model_class", "model_names",
]  # fmt: skip

_TORCH_NAMES = {"LayerWeights", "MLP", "TorchConfig", "TorchModel"}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from emolingua.models import torch_model

        return getattr(torch_model, name)
    raise AttributeError(f"module 'emolingua.models' has no attribute {name!r}")
