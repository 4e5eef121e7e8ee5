"""Probes over pooled features: an MLP, and a learned softmax mix of layers followed by the same head.

Both are :class:`~emolingua.models.module.SERModule` subclasses trained by the
:class:`~emolingua.models.trainer.Trainer`; their constructors take only JSON-able keywords,
so a saved model rebuilds its net from its config:

>>> net = LayerWeightsNet(input_shapes={"whisper-base": (7, 1024)}, n_classes=7, hidden=256,
...                       dropout=0.5)                                            # doctest: +SKIP
>>> net(batch)["logits"].shape, net.layer_weights()["whisper-base"].sum()         # doctest: +SKIP

The head is ``input dropout -> Linear(d, hidden) -> ReLU -> dropout -> Linear(hidden, n_classes)``.

What the LOSO measurements of ``benchmarks/probe_recipe.py`` showed (whisper-base, 7 layers):

- On a corpus of a few speakers every layer separates the training rows perfectly, so the
  training loss says nothing about which layer carries over to an unseen speaker. A mix learned
  from an even start drifts to the lower layers, which fit the training speakers fastest
  (SAVEE: 45% UA against 77% for the last layer alone). Where the mix starts is therefore a
  hyper-parameter chosen on valid (``init_logits``), and the mlp is best given one layer chosen
  on valid rather than all seven flattened (7168 inputs on 240 rows).
- Heavy input dropout (0.5-0.8) on the z-scored features does for the head what a small C does
  for logistic regression; without it the best valid epoch is the first or second.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from emolingua.models.module import Batch, SERModule, masked_cross_entropy, own_group

__all__ = ["LayerWeightsNet", "MLPNet"]


def _shapes(input_shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    if not input_shapes:
        raise ValueError("input_shapes: give at least one stream, e.g. {'whisper-base': (7, 1024)}")
    out = {}
    for name in sorted(input_shapes):
        shape = tuple(int(s) for s in input_shapes[name])
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shapes[{name!r}]: expected positive sizes, got {input_shapes[name]!r}")
        out[str(name)] = shape
    return out


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class _Probe(SERModule):
    """The shared head, the loss and the JSON-able config of both probes."""

    def __init__(self, *, input_shapes: Mapping[str, Sequence[int]], n_classes: int, hidden: int = 1024,
                 dropout: float = 0.5, input_dropout: float = 0.8,
                 class_weights: Sequence[float] | None = None, layer_lr: float | None = None) -> None:  # fmt: skip
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes: need at least 2, got {n_classes}")
        if hidden < 1:
            raise ValueError(f"hidden: must be >= 1, got {hidden}")
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {p}")
        if class_weights is not None and len(class_weights) != n_classes:
            raise ValueError(f"class_weights: {len(class_weights)} values for {n_classes} classes")
        self.input_shapes = _shapes(input_shapes)
        self.config: dict[str, Any] = {
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()}, "n_classes": int(n_classes),
            "hidden": int(hidden), "dropout": float(dropout), "input_dropout": float(input_dropout),
            "class_weights": None if class_weights is None else [float(w) for w in class_weights],
            "layer_lr": None if layer_lr is None else float(layer_lr),
        }  # fmt: skip
        self.layer_lr = layer_lr
        # a buffer, not a parameter: saved with the weights, never trained
        self.register_buffer("class_weights", None if class_weights is None
                             else torch.tensor([float(w) for w in class_weights], dtype=torch.float32))  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(input_dropout), nn.Linear(self.d_in(), hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, n_classes))  # fmt: skip

    def d_in(self) -> int:
        """The width of the vector the head receives."""
        return sum(_prod(s) for s in self.input_shapes.values())

    def _check(self, batch: Batch) -> None:
        missing = set(self.input_shapes) - set(batch.streams)
        if missing:
            raise KeyError(f"batch lacks streams {sorted(missing)}; it has {sorted(batch.streams)}")
        for name, shape in self.input_shapes.items():
            got = tuple(batch.streams[name].shape[1:])
            if got != shape:
                raise ValueError(f"stream {name!r}: rows of shape {got}, the net was built for {shape}")

    @abstractmethod
    def features(self, batch: Batch) -> Tensor:
        """The head's input (N, d_in)."""

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        self._check(batch)
        return {"logits": self.head(self.features(batch))}

    def losses(self, outputs: dict[str, Tensor], batch: Batch, epoch: int) -> dict[str, Tensor]:
        return {"ce": masked_cross_entropy(outputs["logits"], batch, "label", weight=self.class_weights)}


class MLPNet(_Probe):
    """Every stream flattened and concatenated in sorted name order, then the head.

    ``input_shapes``: each stream's row shape, e.g. ``{"whisper-base": (1, 1024), "egemaps": (88,)}``;
    ``hidden``: width of the hidden layer; ``dropout`` after it; ``input_dropout`` on the
    features; ``class_weights``: one cross-entropy weight per class (None: unweighted).
    """

    def __init__(self, *, input_shapes: Mapping[str, Sequence[int]], n_classes: int, hidden: int = 1024,
                 dropout: float = 0.5, input_dropout: float = 0.8,
                 class_weights: Sequence[float] | None = None) -> None:  # fmt: skip
        super().__init__(input_shapes=input_shapes, n_classes=n_classes, hidden=hidden, dropout=dropout,
                         input_dropout=input_dropout, class_weights=class_weights)  # fmt: skip
        del self.config["layer_lr"]

    def features(self, batch: Batch) -> Tensor:
        return torch.cat([batch.streams[name].flatten(1) for name in self.input_shapes], dim=1)


class LayerWeightsNet(_Probe):
    """A learned softmax over the layers of every 3-D stream ``(N, layers, dim)`` and the weighted
    sum; 2-D streams pass through; all concatenated in sorted name order, then the head.

    ``layer_lr``: learning rate of the layer logits (None: the Trainer's ``lr``). They start at
    zero (equal weights) and get no weight decay. :meth:`layer_weights` gives the learned mix.
    """

    def __init__(self, *, input_shapes: Mapping[str, Sequence[int]], n_classes: int, hidden: int = 1024,
                 dropout: float = 0.5, input_dropout: float = 0.8,
                 class_weights: Sequence[float] | None = None, layer_lr: float | None = 1e-2,
                 init_logits: Mapping[str, Sequence[float]] | None = None) -> None:  # fmt: skip
        super().__init__(input_shapes=input_shapes, n_classes=n_classes, hidden=hidden, dropout=dropout,
                         input_dropout=input_dropout, class_weights=class_weights, layer_lr=layer_lr)  # fmt: skip
        self.mixed = [name for name, s in self.input_shapes.items() if len(s) == 2]
        init = {k: [float(v) for v in vals] for k, vals in (init_logits or {}).items()}
        for name, vals in init.items():
            if name not in self.mixed or len(vals) != self.input_shapes[name][0]:
                raise ValueError(f"init_logits[{name!r}]: need one value per layer of a 3-D stream "
                                 f"({ {n: self.input_shapes[n][0] for n in self.mixed} }), got {len(vals)}")
        self.config["init_logits"] = init or None
        # a ParameterList in sorted stream order: stream names may hold characters a ParameterDict refuses
        self.layer_logits = nn.ParameterList(
            [nn.Parameter(torch.tensor(init[n]) if n in init else torch.zeros(self.input_shapes[n][0]))
             for n in self.mixed])  # fmt: skip

    def d_in(self) -> int:
        return sum(s[1] if len(s) == 2 else _prod(s) for s in self.input_shapes.values())

    def layer_weights(self) -> dict[str, Tensor]:
        """The softmax weights over layers of each 3-D stream (each sums to 1)."""
        return {name: torch.softmax(logits, dim=0) for name, logits in zip(self.mixed, self.layer_logits)}

    def features(self, batch: Batch) -> Tensor:
        weights = self.layer_weights()
        parts = []
        for name in self.input_shapes:
            x = batch.streams[name]
            parts.append((x * weights[name][None, :, None]).sum(1) if name in weights else x.flatten(1))
        return torch.cat(parts, dim=1)

    def param_groups(self, *, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        groups = super().param_groups(lr=lr, weight_decay=weight_decay)
        return own_group(groups, list(self.layer_logits), lr=lr if self.layer_lr is None else self.layer_lr)
