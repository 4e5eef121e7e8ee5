"""The nets of the torch probes: an MLP over pooled streams, and learned weights over layers.

Both read every stream of the batch (pooled, already z-scored) and return ``{"logits": ...}``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from emolingua.models.module import Batch, SERModule, masked_cross_entropy

__all__ = ["LayerWeightsNet", "MLPNet"]


class _Probe(SERModule):
    def __init__(self, *, n_classes: int, d_in: int, hidden: int, dropout: float,
                 class_weight: Sequence[float] | None) -> None:  # fmt: skip
        super().__init__()
        self.head = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        weight = torch.tensor(class_weight, dtype=torch.float32) if class_weight else torch.ones(n_classes)
        self.register_buffer("class_weight", weight)

    def losses(self, outputs: dict[str, Tensor], batch: Batch, epoch: int) -> dict[str, Tensor]:
        return {"ce": masked_cross_entropy(outputs["logits"], batch, "label" if "label" in batch.targets
                                           else next(iter(batch.targets)), weight=self.class_weight)}  # fmt: skip


class MLPNet(_Probe):
    """Every stream flattened and concatenated (name order) -> Linear -> ReLU -> dropout -> Linear."""

    def __init__(self, *, input_shapes: dict[str, Sequence[int]], n_classes: int, hidden: int = 256,
                 dropout: float = 0.2, class_weight: Sequence[float] | None = None, **_: Any) -> None:  # fmt: skip
        self.names = sorted(input_shapes)
        d_in = sum(int(torch.tensor(input_shapes[k]).prod()) for k in self.names)
        super().__init__(n_classes=n_classes, d_in=d_in, hidden=hidden, dropout=dropout, class_weight=class_weight)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        x = torch.cat([batch.streams[k].flatten(1) for k in self.names], dim=1)
        return {"logits": self.head(x)}


class LayerWeightsNet(_Probe):
    """A softmax over the layers of each layered stream (N, L, D), the weighted sum, then the MLP head."""

    def __init__(self, *, input_shapes: dict[str, Sequence[int]], n_classes: int, hidden: int = 256,
                 dropout: float = 0.2, class_weight: Sequence[float] | None = None, **_: Any) -> None:  # fmt: skip
        self.names = sorted(input_shapes)
        self.layered = [k for k in self.names if len(input_shapes[k]) == 2 and input_shapes[k][0] > 1]
        d_in = sum(int(input_shapes[k][-1]) if k in self.layered else int(torch.tensor(input_shapes[k]).prod())
                   for k in self.names)  # fmt: skip
        super().__init__(n_classes=n_classes, d_in=d_in, hidden=hidden, dropout=dropout, class_weight=class_weight)
        self.layer_logits = nn.ParameterDict({str(i): nn.Parameter(torch.zeros(input_shapes[k][0]))
                                              for i, k in enumerate(self.layered)})  # fmt: skip

    def layer_weights(self) -> dict[str, Tensor]:
        return {k: torch.softmax(self.layer_logits[str(i)], dim=0) for i, k in enumerate(self.layered)}

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        weights = self.layer_weights()
        parts = [(batch.streams[k] * weights[k][None, :, None]).sum(dim=1) if k in weights else batch.streams[k].flatten(1)
                 for k in self.names]  # fmt: skip
        return {"logits": self.head(torch.cat(parts, dim=1))}
