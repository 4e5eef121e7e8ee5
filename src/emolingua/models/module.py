"""The contract every trainable torch model follows, and the minimal batch it receives.

A model is an ordinary, importable ``nn.Module`` (so a fitted one pickles) with two methods,
in the manner of SpeechBrain's ``Brain.compute_forward`` / ``compute_objectives``:

- ``forward(batch) -> dict[str, Tensor]``: named outputs (``"logits"``, ``"arousal"``, ...);
- ``losses(outputs, batch, epoch) -> dict[str, Tensor]``: named scalar loss terms; the
  :class:`~emolingua.models.trainer.Trainer` sums them for the step and logs each one.

>>> class Tiny(SERModule):                                   # doctest: +SKIP
...     def __init__(self):
...         super().__init__()
...         self.lin = nn.Linear(4, 3)
...     def forward(self, batch):
...         return {"logits": self.lin(batch.streams["x"])}
...     def losses(self, outputs, batch, epoch):
...         return {"ce": masked_cross_entropy(outputs["logits"], batch, "label")}
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from emolingua.models.data import Dataset, Frames

__all__ = ["Batch", "SERModule", "masked_cross_entropy", "masked_mse"]


@dataclass
class Batch:
    """Rows of named tensors, all with the same first dimension N.

    - ``streams``: the inputs by name, each of its own shape: pooled ``(N, ...)`` (e.g.
      ``(N, 7, 1024)``, ``(N, 88)``) or padded frame sequences ``(N, T, D)``;
    - ``lengths``: for each frame stream, the valid frame count per row ``(N,)`` (long);
    - ``targets``: named targets ``(N,)``: class indices (long) or values (float);
    - ``masks``: per target, which rows carry it ``(N,)`` (bool); a target without a mask is
      present in every row;
    - ``language_ids``: the language of each row ``(N,)`` (long), used by the by-language
      sampler and by models with per-language heads.

    - ``meta``: each row's corpus, language, speaker and id (numpy arrays; never on a device).

    :meth:`Batch.from_dataset` builds one from a :class:`~emolingua.models.data.Dataset`.
    """

    streams: dict[str, Tensor]
    targets: dict[str, Tensor] = field(default_factory=dict)
    masks: dict[str, Tensor] = field(default_factory=dict)
    lengths: dict[str, Tensor] = field(default_factory=dict)
    language_ids: Tensor | None = None
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.streams.values())))

    def mask(self, name: str) -> Tensor:
        """The rows that carry target ``name`` (all rows when it has no mask)."""
        if name in self.masks:
            return self.masks[name]
        return torch.ones(len(self.targets[name]), dtype=torch.bool, device=self.targets[name].device)

    def _map(self, fn: Any, meta: dict[str, np.ndarray] | None = None) -> Batch:
        def each(d: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: fn(v) for k, v in d.items()}

        return Batch(streams=each(self.streams), targets=each(self.targets), masks=each(self.masks),
                     lengths=each(self.lengths), language_ids=None if self.language_ids is None else fn(self.language_ids),
                     meta=self.meta if meta is None else meta)  # fmt: skip

    def rows(self, index: Tensor) -> Batch:
        """The batch of the rows at ``index`` (a long tensor of row numbers); frame streams are cut
        to the longest sequence among those rows."""
        rows = index.cpu().numpy()
        out = self._map(lambda t: t[index.to(t.device)], meta={k: v[rows] for k, v in self.meta.items()})
        for name, lengths in out.lengths.items():
            out.streams[name] = out.streams[name][:, : int(lengths.max()) if len(lengths) else 0]
        return out

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with every tensor on ``device``."""
        return self._map(lambda t: t.to(device))

    def frame_mask(self, name: str) -> Tensor:
        """(N, T) bool: which frames of frame stream ``name`` are real (not padding)."""
        steps = torch.arange(self.streams[name].shape[1], device=self.streams[name].device)
        return steps[None, :] < self.lengths[name][:, None]

    @classmethod
    def from_dataset(cls, data: Dataset, *, classes: Mapping[str, Sequence[str]] | None = None,
                     languages: Sequence[str] = ()) -> Batch:  # fmt: skip
        """Tensors of a :class:`~emolingua.models.data.Dataset`: pooled streams as they are, frame
        streams zero-padded with their lengths; categorical targets as indices into ``classes[name]``
        (a label outside it is masked out), value targets as floats; ``language_ids`` 1.. for
        ``languages`` (0 = any other); the metadata as numpy arrays in ``meta``.

        >>> batch = Batch.from_dataset(data, classes={"label": ["ang", "hap"]}, languages=["de"])  # doctest: +SKIP
        """
        classes = dict(classes or {})
        streams, lengths = {}, {}
        for name, s in data.streams.items():
            if isinstance(s, Frames):
                padded, n = s.padded()
                streams[name], lengths[name] = torch.from_numpy(padded), torch.from_numpy(n.astype(np.int64))
            else:
                streams[name] = torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32))
        targets, masks = {}, {}
        for name, values in data.targets.items():
            keep = data.mask(name)
            if data.is_categorical(name):
                if name not in classes:
                    raise KeyError(f"target {name!r}: give its classes (classes={{{name!r}: [...]}})")
                index = {c: i for i, c in enumerate(classes[name])}
                idx = np.array([index.get(v, -1) for v in values.tolist()], dtype=np.int64)
                keep &= idx >= 0
                targets[name] = torch.from_numpy(np.where(keep, idx, 0))
            else:
                targets[name] = torch.from_numpy(np.where(keep, values, 0.0).astype(np.float32))
            masks[name] = torch.from_numpy(keep)
        lang_index = {lang: i + 1 for i, lang in enumerate(languages)}
        language_ids = torch.tensor([lang_index.get(v, 0) for v in data.language.tolist()], dtype=torch.long)
        meta = {"corpus": data.corpus, "language": data.language, "speaker": data.speaker, "ids": data.ids}
        return cls(streams=streams, targets=targets, masks=masks, lengths=lengths, language_ids=language_ids, meta=meta)


class SERModule(nn.Module, ABC):
    """Base of trainable models: named outputs, named loss terms, optional parameter groups."""

    @abstractmethod
    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Named outputs of one batch."""

    @abstractmethod
    def losses(self, outputs: dict[str, Tensor], batch: Batch, epoch: int) -> dict[str, Tensor]:
        """Named scalar loss terms of one batch; ``epoch`` (1-based) allows schedules of terms."""

    def param_groups(self, *, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups; by default weight decay on weight matrices only.

        Biases, norms and single weights (e.g. layer-mixing logits) are not decayed: shrinking
        them towards zero has no regularising meaning. Override for per-part learning rates.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.ndim >= 2], "lr": lr, "weight_decay": weight_decay},
                {"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0}]  # fmt: skip


def own_group(groups: list[dict[str, Any]], params: Sequence[nn.Parameter], *, lr: float) -> list[dict[str, Any]]:
    """``groups`` with ``params`` moved to a group of their own at ``lr``, without weight decay:
    ``return own_group(super().param_groups(lr=lr, weight_decay=wd), [self.logits], lr=1e-2)``."""
    moved = {id(p) for p in params}
    kept = [{**g, "params": [p for p in g["params"] if id(p) not in moved]} for g in groups]
    own = [{"params": list(params), "lr": lr, "weight_decay": 0.0}] if params else []
    return [*(g for g in kept if g["params"]), *own]


def masked_cross_entropy(logits: Tensor, batch: Batch, target: str, *, weight: Tensor | None = None) -> Tensor:
    """Cross-entropy over the rows that carry ``target``; zero (with a gradient) when none do."""
    keep = batch.mask(target)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(logits[keep], batch.targets[target][keep], weight=weight)


def masked_mse(prediction: Tensor, batch: Batch, target: str) -> Tensor:
    """Mean squared error over the rows that carry value target ``target``; zero when none do."""
    keep = batch.mask(target)
    if not bool(keep.any()):
        return prediction.sum() * 0.0
    return nn.functional.mse_loss(prediction.reshape(-1)[keep], batch.targets[target][keep])
