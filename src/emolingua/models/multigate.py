"""Multilingual SER with per-language multi-gating, architecture search and a contrastive loss.

Wang, Meng, Lan, Zhang, Guo, Gupta (2022), "Multilingual Speech Emotion Recognition With
Multi-Gating Mechanism And Neural Architecture Search" (arXiv 2211.08237), on emolingua's
streams; the facts used are in ``../shared/reference/methods.md`` section 1.

The net, in the order data flows:

- **experts**, shared by all languages: a :class:`SequenceExpert` per frame stream (Conv1d k3
  + Conv1d k5 summed, a masked batch-first BiLSTM, attention pooling whose query is the last
  valid frame's state) and an :class:`Adaptor` per utterance-vector stream; each gives 256-d;
- **architecture search**: a :class:`HardConcreteMask` over a 256x256 map applied to each
  sequence expert's vector, one per language (the paper), one shared (the reference code) or
  none, with an optional expected-L0 penalty;
- **gates**, one per language: an MLP (d -> 128 -> 64 -> 32 -> K) with a softmax over the K
  streams, fed by an utterance vector (GE2E by default); the fused vector is the gated sum of
  the streams concatenated with the gated speaker vector (``gate="none"``: equal weights, the
  language-specific model's plain sum);
- **towers**, one per language with its own label set: a BatchNorm MLP; the contrastive
  auxiliary loss (:func:`class_contrastive_loss`) on each tower's penultimate features.

A language never seen in training (the mission's low-resource case; the paper gives no
answer) goes through a **universal gate and tower**, trained alongside the per-language ones
on every label: each training batch is, with probability ``language_dropout``, routed to the
universal gate and tower instead of its language's.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from emolingua.errors import ConfigError
from emolingua.metrics import unweighted_accuracy
from emolingua.models.contract import Prepared
from emolingua.models.metric_ae import continuous_metric_loss
from emolingua.models.data import Dataset, Frames
from emolingua.models.module import Batch, SERModule, own_group
from emolingua.models.normalisation import TWIN, twin_of
from emolingua.models.torch_model import TorchConfig, TorchModel
from emolingua.models.trainer import TrainConfig, Trainer

__all__ = ["Adaptor", "HardConcreteMask", "MultiGate", "MultiGateConfig", "MultiGateLS", "MultiGateNet", "SequenceExpert",
           "class_contrastive_loss"]

D = 256


class SequenceExpert(nn.Module):
    """(N, T, d_in) frames with their lengths -> (N, 256): convolutions, a BiLSTM, attention pooling.

    Padded frames are zero before the convolutions (as "same" padding of the sequence alone
    would be), the LSTM is packed, and attention never looks at padding: a row gives the same
    vector alone or in a batch of any lengths.
    """

    def __init__(self, d_in: int, d: int = D) -> None:
        super().__init__()
        self.conv3 = nn.Conv1d(d_in, d, kernel_size=3, padding=1)
        self.conv5 = nn.Conv1d(d_in, d, kernel_size=5, padding=2)
        self.lstm = nn.LSTM(d, d // 2, batch_first=True, bidirectional=True)
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        steps = torch.arange(x.shape[1], device=x.device)
        valid = steps[None, :] < lengths[:, None]  # (N, T)
        x = x * valid[..., None]
        h = (self.conv3(x.transpose(1, 2)) + self.conv5(x.transpose(1, 2))).transpose(1, 2)
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        last = out[torch.arange(len(out), device=x.device), (lengths - 1).clamp(min=0)]
        scores = (self.key(out) @ self.query(last).unsqueeze(-1)).squeeze(-1) / math.sqrt(out.shape[-1])
        weights = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=1)
        return (weights.unsqueeze(-1) * self.value(out)).sum(dim=1)


class Adaptor(nn.Module):
    """An utterance vector -> 256-d (Linear, ReLU, Linear), as the paper's BYOL-S adaptor.

    A stream of several layers ``(layers, d)`` (e.g. whisper's pooled layers) is first mixed by
    learned softmax layer weights (beyond the paper), so the adaptor sees one ``d``-vector.
    """

    def __init__(self, shape: Sequence[int], d: int = D, hidden: int = 512) -> None:
        super().__init__()
        shape = [int(s) for s in shape]
        self.layer_logits = nn.Parameter(torch.zeros(shape[0])) if len(shape) == 2 and shape[0] > 1 else None
        d_in = shape[-1] if self.layer_logits is not None else _width(shape)
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def layer_weights(self) -> Tensor | None:
        return None if self.layer_logits is None else torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: Tensor) -> Tensor:
        if self.layer_logits is not None:
            x = (self.layer_weights()[None, :, None] * x).sum(dim=1)
        return self.body(x.flatten(1))


class HardConcreteMask(nn.Module):
    """A hard-concrete (Louizos et al. 2018; sub-network routing) mask over a ``(d, d)`` map.

    Training: ``s = sigmoid((log u - log(1-u) + log_alpha) / beta)`` with fresh uniform noise
    ``u``; evaluation: ``s = sigmoid(log_alpha)`` (deterministic); then
    ``z = clamp(s * (zeta - gamma) + gamma, 0, 1)``. The output is ``h @ (z * W)``.
    """

    def __init__(self, d: int = D, *, beta: float = 0.9, gamma: float = -0.1, zeta: float = 2.0) -> None:
        super().__init__()
        self.beta, self.gamma, self.zeta = beta, gamma, zeta
        self.log_alpha = nn.Parameter(torch.full((d, d), 2.0))  # starts mostly open: z ~ 1
        self.weight = nn.Parameter(torch.empty(d, d))
        nn.init.xavier_uniform_(self.weight)

    def gates(self) -> Tensor:
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def expected_l0(self) -> Tensor:
        """The expected fraction of open entries (differentiable): the sparsity penalty."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.gamma / self.zeta)).mean()

    def density(self) -> float:
        """The fraction of entries open (z > 0) at evaluation."""
        with torch.no_grad():
            s = torch.sigmoid(self.log_alpha)
            return float(((s * (self.zeta - self.gamma) + self.gamma) > 0).float().mean())

    def forward(self, h: Tensor) -> Tensor:
        return h @ (self.gates() * self.weight)


def class_contrastive_loss(features: Tensor, labels: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The GE2E softmax loss with emotion classes in place of speakers (Wan et al. 2018).

    Class centroids of the L2-normalised features; a sample's own class uses the centroid of
    the *other* samples of that class (leave one out); ``S = w * cos + b``; the loss is the mean
    over samples of ``-S_own + logsumexp_k S_k``. Samples alone in their class in the batch
    have no leave-one-out centroid and are left out; with fewer than two classes, zero.
    """
    e = nn.functional.normalize(features, dim=1)
    classes, index, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    keep = counts[index] > 1
    if len(classes) < 2 or not bool(keep.any()):
        return features.sum() * 0.0
    sums = torch.zeros(len(classes), e.shape[1], dtype=e.dtype, device=e.device).index_add_(0, index, e)
    centroids = nn.functional.normalize(sums / counts[:, None], dim=1)
    own = nn.functional.normalize((sums[index] - e) / (counts[index] - 1).clamp(min=1)[:, None], dim=1)
    cos = e @ centroids.T  # (N, classes)
    cos = cos.scatter(1, index[:, None], (e * own).sum(dim=1, keepdim=True))  # own class: leave one out
    s = w * cos + b
    loss = -s.gather(1, index[:, None]).squeeze(1) + torch.logsumexp(s, dim=1)
    return loss[keep].mean()


class _Gate(nn.Module):
    def __init__(self, d_in: int, k: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                  nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, k))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.body(x.flatten(1)), dim=1)


class _Tower(nn.Module):
    def __init__(self, d_in: int, n_classes: int, widths: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout else []
        for w in widths:
            layers += [nn.Linear(d_in, w), nn.BatchNorm1d(w), nn.ReLU(), *([nn.Dropout(dropout)] if dropout else [])]
            d_in = w
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(d_in, n_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.out(h), h


UNIVERSAL = "*"
_SOURCE_MODELS: dict[str, dict[str, Any]] = {}  # see MultiGate._fit_once


class MultiGateNet(SERModule):
    """The multi-domain model (``gate="mlp"``) or the language-specific one (``gate="none"``); see the module docstring.

    ``label_sets`` maps each training language to its classes (indices into ``classes``, the
    union); ``frame_streams`` / ``vector_streams`` name the inputs and ``speaker`` the
    utterance vector that feeds the gates and is concatenated to the fused vector.
    """

    def __init__(self, *, input_shapes: dict[str, Sequence[int]], classes: Sequence[str],
                 label_sets: dict[str, Sequence[str]], languages: Sequence[str], frame_streams: Sequence[str],
                 vector_streams: Sequence[str], speaker: str | None, gate: str = "mlp", gate_input: str | None = None,
                 mask: str = "per-language", mask_streams: str = "frames", l0: float = 0.0, alpha: float = 0.1,
                 mask_lr: float | None = None, universal: bool = True,
                 language_dropout: float = 0.2, tower: Sequence[int] = (1024, 512, 256), dropout: float = 0.0,
                 class_weights: Sequence[float] | None = None, affect_dim: int = 0, affect_loss: str = "metric",
                 affect_weight: float = 1.0, wide: bool = False, **_: Any) -> None:  # fmt: skip
        super().__init__()
        self.classes = list(classes)
        self.languages = list(languages)  # language id i + 1 is languages[i]; 0 is unseen
        self.frame_streams, self.vector_streams = list(frame_streams), list(vector_streams)
        self.speaker, self.gate_kind, self.mask_kind, self.mask_streams = speaker, gate, mask, mask_streams
        self.gate_input = gate_input or speaker
        self.l0, self.alpha, self.universal, self.language_dropout = l0, alpha, universal, language_dropout
        self.mask_lr = mask_lr
        self.experts = nn.ModuleDict({_key(s): SequenceExpert(int(input_shapes[s][-1])) for s in self.frame_streams})
        self.adaptors = nn.ModuleDict({_key(s): Adaptor(input_shapes[s]) for s in self.vector_streams})
        heads = [*self.languages, *([UNIVERSAL] if universal else [])]
        masks = {"per-language": heads, "shared": [UNIVERSAL], "none": []}[mask]
        self.masks = nn.ModuleDict({_key(h): HardConcreteMask() for h in masks})
        k = len(self.frame_streams) + len(self.vector_streams) + (1 if speaker else 0)
        if gate == "mlp":
            if self.gate_input is None:
                raise ValueError("multigate: the gates need an utterance vector (gate_input or speaker)")
            d_gate = _width(input_shapes[self.gate_input])
            self.gates = nn.ModuleDict({_key(h): _Gate(d_gate, k) for h in heads})
        self.speaker_adaptor = Adaptor([_width(input_shapes[speaker])]) if speaker else None
        d_fused = D * (2 if speaker else 1)
        self.label_index = {h: [self.classes.index(c) for c in label_sets.get(h, self.classes)] for h in heads}
        if universal:
            self.label_index[UNIVERSAL] = list(range(len(self.classes)))
        self.towers = nn.ModuleDict({_key(h): _Tower(d_fused, len(self.label_index[h]), tower, dropout) for h in heads})
        self.sim = nn.ParameterDict({_key(h): nn.Parameter(torch.tensor([10.0, -5.0])) for h in heads})
        # wide & deep (beyond the paper): per head a linear map of the gated raw utterance vectors,
        # added to the tower's logits, so each domain also has a linear probe of the layers its gate picks
        d_wide = sum(_width(input_shapes[s]) for s in self.vector_streams)
        self.wide = (nn.ModuleDict({_key(h): nn.Linear(d_wide, len(self.label_index[h])) for h in heads})
                     if wide and d_wide else None)  # fmt: skip
        self.wide_dropout = nn.Dropout(dropout)
        # a language-independent affect embedding of the fused vector, so unseen languages get one too
        self.affect = nn.Linear(d_fused, affect_dim) if affect_dim > 0 else None
        self.affect_loss, self.affect_weight = affect_loss, affect_weight
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else torch.ones(len(self.classes))
        self.register_buffer("class_weight", weight)

    # -- the parts --------------------------------------------------------------------------
    def stream_vectors(self, batch: Batch, head: str) -> list[Tensor]:
        """Each stream's 256-d vector (sequence experts, and with ``mask_streams="all"`` the utterance
        vectors' adaptors too, through ``head``'s mask), in gate order."""
        out = []
        mask = self.masks[_key(head if self.mask_kind == "per-language" else UNIVERSAL)] if self.mask_kind != "none" else None
        for s in self.frame_streams:
            v = self.experts[_key(s)](batch.streams[s], batch.lengths[s])
            out.append(mask(v) if mask is not None else v)
        for s in self.vector_streams:
            v = self.adaptors[_key(s)](batch.streams[s])
            out.append(mask(v) if mask is not None and self.mask_streams == "all" else v)
        if self.speaker_adaptor is not None:
            out.append(self.speaker_adaptor(batch.streams[self.speaker]))
        return out

    def gate_weights(self, batch: Batch, head: str) -> Tensor:
        """(N, K) weights over the streams (rows sum to one); equal weights without gates."""
        k = len(self.frame_streams) + len(self.vector_streams) + (1 if self.speaker else 0)
        if self.gate_kind != "mlp":
            return torch.ones(len(batch), k, device=self.class_weight.device)
        return self.gates[_key(head)](batch.streams[self.gate_input])

    def heads_of(self, batch: Batch) -> list[tuple[str, Tensor]]:
        """(head, row indices) groups: each row's language head, or the universal one."""
        lang = batch.language_ids if batch.language_ids is not None else torch.zeros(len(batch), dtype=torch.long)
        groups = []
        for i in torch.unique(lang).tolist():
            rows = torch.nonzero(lang == i).flatten()
            head = self.languages[i - 1] if i > 0 and _key(self.languages[i - 1]) in self.towers else UNIVERSAL
            if head == UNIVERSAL and not self.universal:
                head = self.languages[0]  # no universal head: an unseen language uses the first tower
            groups.append((head, rows))
        return groups

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        n, c = len(batch), len(self.classes)
        dev = self.class_weight.device
        logits = torch.full((n, c), -1e4, device=dev)  # a class outside a row's label set never wins
        features = torch.zeros(n, self.towers[next(iter(self.towers))].out.in_features, device=dev)
        k = len(self.frame_streams) + len(self.vector_streams) + (1 if self.speaker else 0)
        gates = torch.zeros(n, k, device=dev)
        affect = torch.zeros(n, self.affect.out_features if self.affect is not None else 0, device=dev)
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        route_universal = (self.training and self.universal and self.language_dropout > 0
                           and float(torch.rand(())) < self.language_dropout)  # fmt: skip
        for head, rows in self.heads_of(batch):
            head = UNIVERSAL if route_universal else head
            if self.training and len(rows) < 2:  # batch norm cannot train on one row: left out of the loss
                continue
            part = batch.rows(rows) if len(rows) < n else batch
            vectors = self.stream_vectors(part, head)
            w = self.gate_weights(part, head)
            if self.speaker:
                fused = torch.cat([sum(w[:, j : j + 1] * v for j, v in enumerate(vectors[:-1])),
                                   w[:, -1:] * vectors[-1]], dim=1)  # fmt: skip
            else:
                fused = sum(w[:, j : j + 1] * v for j, v in enumerate(vectors))
            out, h = self.towers[_key(head)](fused)
            if self.wide is not None:
                nf = len(self.frame_streams)
                raw = torch.cat([w[:, nf + i : nf + i + 1] * part.streams[s].flatten(1)
                                 for i, s in enumerate(self.vector_streams)], dim=1)  # fmt: skip
                out = out + self.wide[_key(head)](self.wide_dropout(raw))
            logits[rows[:, None], torch.tensor(self.label_index[head], device=dev)[None, :]] = out
            features[rows] = h
            gates[rows] = w
            if self.affect is not None:
                affect[rows] = self.affect(fused)
            done[rows] = True
        return {"logits": logits, "features": features, "gates": gates, "done": done, "affect": affect}

    def losses(self, outputs: dict[str, Tensor], batch: Batch, epoch: int) -> dict[str, Tensor]:
        keep = batch.mask("label") & outputs["done"]
        y = batch.targets["label"]
        terms = {"ce": nn.functional.cross_entropy(outputs["logits"][keep], y[keep], weight=self.class_weight)
                 if bool(keep.any()) else outputs["logits"].sum() * 0.0}  # fmt: skip
        if self.alpha > 0:
            contrastive = outputs["logits"].sum() * 0.0
            for head, rows in self.heads_of(batch):
                rows = rows[keep[rows]]
                if len(rows) > 2:
                    w, b = self.sim[_key(head if _key(head) in self.sim else UNIVERSAL)]
                    contrastive = contrastive + class_contrastive_loss(outputs["features"][rows], y[rows], w.clamp(min=1e-6), b)
            terms["contrastive"] = self.alpha * contrastive
        if self.affect is not None and "affect" in batch.targets:
            rows = batch.mask("affect") & outputs["done"]
            z, v = outputs["affect"][rows], batch.targets["affect"][rows]
            if self.affect_loss == "metric":
                metric = continuous_metric_loss(z, v)
                terms["affect"] = self.affect_weight * (metric["res"] + metric["sl"])
            else:  # a plain regression of the value on the embedding's first unit
                terms["affect"] = self.affect_weight * (nn.functional.mse_loss(z[:, 0], v) if len(v) else z.sum() * 0.0)
        if self.l0 > 0 and len(self.masks):
            terms["l0"] = self.l0 * torch.stack([m.expected_l0() for m in self.masks.values()]).mean()
        return terms

    def param_groups(self, *, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        groups = super().param_groups(lr=lr, weight_decay=weight_decay)
        if self.mask_lr is None:
            return groups
        # at the network's step log alpha cannot travel from its open start (2) to closed (< -3)
        # within one fit (docs/methods/multigate.md)
        return own_group(groups, [m.log_alpha for m in self.masks.values()], lr=self.mask_lr)

    def mask_density(self) -> dict[str, float]:
        """Each mask's fraction of open entries at evaluation, by head."""
        return {_unkey(k): m.density() for k, m in self.masks.items()}


def _key(name: str) -> str:
    """A ModuleDict key for a stream or language name (no dots allowed there)."""
    return name.replace(".", "\u2024").replace("/", "\u2215")


def _unkey(key: str) -> str:
    return key.replace("\u2024", ".").replace("\u2215", "/")


def _width(shape: Sequence[int]) -> int:
    return int(math.prod(int(s) for s in shape))



# ----------------------------------------------------------------------------- the estimators
@dataclass(frozen=True)
class MultiGateConfig(TorchConfig):
    """Options of ``multigate`` (defaults as the reference trains; see the module docstring).

    ``domain``: what gets its own gate, mask and tower: ``language`` (the paper) or ``corpus`` (two
    corpora of one language, e.g. RAVDESS and SAVEE, then do not share one; a corpus unseen in
    training goes through the universal head); ``dropout``: before and inside the towers (0 in
    the reference); ``scale_lr``: divide ``train.lr`` by the number of domains (the reference); ``frame_streams`` / ``vector_streams``: the inputs (empty: every frame stream / every pooled
    stream but the speaker's); ``speaker``: the utterance vector concatenated to the fused vector
    (``"auto"``: a stream named ``ge2e`` if there is one; ``""`` or ``"none"``: none); ``gate_input``: what
    feeds the gates (``"auto"``: the speaker vector, else the first utterance vector); ``gate``: ``mlp`` or ``none`` (equal weights);
    ``mask``: ``per-language``, ``shared`` or ``none``; ``mask_streams``: what the mask acts on,
    ``frames`` (the sequence experts, the paper) or ``all`` (the utterance vectors' adaptors too, for
    variants without sequence experts); ``l0``: weight of the expected-L0 penalty;
    ``alpha``: weight of the contrastive loss (``alpha_grid``: candidates chosen on valid);
    ``"none"`` as the only entry of ``frame_streams`` / ``vector_streams`` uses no stream of
    that kind (single-stream ablations); ``universal`` and ``language_dropout``: the head for
    unseen languages; ``few_shot_below``: a training language with fewer labelled rows per class
    than this is fitted by the few-shot path (see :meth:`MultiGate.adapt`, ``adapt_epochs``
    epochs; 0 turns the path off); ``frame_step``: frames averaged over windows of n stored frames (the
    stride, chosen on valid when several are given); ``stream_steps``: ``"stream=n"`` entries that
    pool a stream by a further factor n (MFCC's 100 frames/s become whisper's 25 at stride 2);
    ``split_layers``: pooled layered streams given to the model as one stream per layer (``name@i``),
    so each domain's gate weights the layers per utterance, as the logistic-regression baseline
    picks one layer per corpus (beyond the paper; see docs/methods/multigate.md); ``affect_target``
    (e.g. ``arousal``, a value target of the rows): a language-independent ``affect_dim``-d
    embedding of the fused vector trained with Das et al.'s continuous metric loss
    (``affect_loss: metric``) or a plain regression (``mse``), weight ``affect_weight``;
    :meth:`MultiGate.dimensions` reads arousal/valence out of it, also for unseen languages;
    ``wide``: wide & deep (beyond the paper), each head adds a linear map of the gated raw utterance
    vectors (dropout ``dropout``) to its tower's logits.
    """

    frame_streams: tuple[str, ...] = ()
    vector_streams: tuple[str, ...] = ()
    domain: str = "language"
    dropout: float = 0.0
    scale_lr: bool = True
    speaker: str = "auto"
    gate_input: str = "auto"
    gate: str = "mlp"
    mask: str = "per-language"
    mask_streams: str = "frames"
    l0: float = 0.0
    mask_lr: float | None = None
    alpha: float = 0.1
    alpha_grid: tuple[float, ...] = ()
    universal: bool = True
    language_dropout: float = 0.2
    tower: tuple[int, ...] = (1024, 512, 256)
    few_shot_below: int = 25
    adapt_epochs: int = 30
    frame_step: tuple[int, ...] = (4,)
    split_layers: tuple[str, ...] = ()
    affect_target: str | None = None
    affect_dim: int = 2
    affect_loss: str = "metric"
    affect_weight: float = 1.0
    wide: bool = False
    stream_steps: tuple[str, ...] = ("mfcc/mfcc=4",)
    train: TrainConfig = TrainConfig(epochs=20, patience=20, lr=5e-4, weight_decay=1e-5, batch_size=32,
                                     sampler="by-language", bucket=20)  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, allowed in (("gate", ("mlp", "none")), ("mask", ("per-language", "shared", "none")),
                              ("mask_streams", ("frames", "all")),
                              ("domain", ("language", "corpus")), ("affect_loss", ("metric", "mse"))):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if self.mask_lr is not None and not self.mask_lr > 0:
            raise ConfigError(f"mask_lr: expected a learning rate > 0 or none, got {self.mask_lr!r}")
        if not self.frame_step or any(k < 1 for k in self.frame_step):
            raise ConfigError(f"frame_step: expected whole numbers >= 1, got {list(self.frame_step)}")
        self.steps_of()

    def steps_of(self) -> dict[str, int]:
        """``stream_steps`` as a mapping stream -> factor."""
        out = {}
        for entry in self.stream_steps:
            name, _, n = str(entry).rpartition("=")
            if not name or not n.isdigit() or int(n) < 1:
                raise ConfigError(f"stream_steps: {entry!r} is not 'stream=n' with a whole n >= 1")
            out[name] = int(n)
        return out


class MultiGate(TorchModel):
    """``multigate``: Wang et al. 2022: shared experts, a gate, a searched mask and a tower per language.

    >>> get_model("multigate", frame_streams=("whisper-base/layer6", "mfcc/mfcc")).fit(train, valid=valid)  # doctest: +SKIP
    >>> m.gate_weights_(test)       # (N, K) weights over the streams       # doctest: +SKIP
    """

    name = "multigate"
    Config = MultiGateConfig
    config: MultiGateConfig
    Net = MultiGateNet
    uses_frames = True
    monitor = "ua_sum"
    quick_options: ClassVar[dict[str, Any]] = {"tower": [32], "train": {"epochs": 4, "patience": 4, "batch_size": 16}}

    def fit(self, train: Dataset, *, valid: Dataset | None = None) -> MultiGate:
        super().fit(self._domains(train), valid=None if valid is None else self._domains(valid))
        return self

    def _prepare(self, data: Dataset, *, labels: bool = True) -> Prepared:
        return super()._prepare(self._domains(data), labels=labels)

    def _domains(self, data: Dataset) -> Dataset:
        """The rows with each one's domain in the language column (``domain="corpus"``: its corpus) and
        the layered streams of ``split_layers`` given as one stream per layer."""
        streams, features = dict(data.streams), dict(data.features)
        for name in self.config.split_layers:
            if name not in streams and f"{name}@0" in streams:
                continue  # split already (fit's rows pass through _prepare again)
            if name not in streams:
                raise ConfigError(f"model {self.name}: split_layers: no stream {name!r}; the rows have {', '.join(data.streams)}")
            layered = streams.pop(name)
            if isinstance(layered, Frames):
                raise ConfigError(f"model {self.name}: split_layers: {name!r} is a frame stream; only pooled layers split")
            made = features.pop(name, None)
            for i in range(layered.shape[1]):
                streams[f"{name}@{i}"] = layered[:, i : i + 1]
                if made is not None:
                    features[f"{name}@{i}"] = {**made, "layer": i}
        by_corpus = self.config.domain == "corpus" and not np.array_equal(data.language, data.corpus)
        if not by_corpus and streams.keys() == data.streams.keys():
            return data
        return Dataset(streams=streams, targets=data.targets, corpus=data.corpus,
                       language=data.corpus if by_corpus else data.language, speaker=data.speaker, ids=data.ids,
                       features=features)  # fmt: skip

    def search_grid(self, train: Dataset) -> list[dict[str, Any]]:
        steps = self.config.frame_step
        grid = [{"frame_step": (k,)} for k in steps] if len(steps) > 1 else [{}]
        if self.config.alpha_grid:  # the contrastive weight chosen on valid as well
            grid = [{**g, "alpha": a, "alpha_grid": ()} for g in grid for a in self.config.alpha_grid]
        return grid

    def _roles(self, data: Dataset) -> dict[str, Any]:
        cfg = self.config
        speaker = "" if cfg.speaker == "none" else cfg.speaker
        if speaker == "auto":
            speaker = "ge2e" if "ge2e" in data.streams else ""
        frames = list(cfg.frame_streams) or sorted(k for k, v in data.streams.items() if isinstance(v, Frames))
        vectors = list(cfg.vector_streams) or sorted(k for k, v in data.streams.items()
                                                     if not isinstance(v, Frames) and k != speaker)  # fmt: skip
        frames, vectors = ([] if names == ["none"] else names for names in (frames, vectors))
        gate_input = cfg.gate_input if cfg.gate_input != "auto" else (speaker or (vectors[0] if vectors else ""))
        for name in [*frames, *vectors, *([speaker] if speaker else []), *([gate_input] if gate_input else [])]:
            if name not in data.streams:
                raise ConfigError(f"model {self.name}: no stream {name!r}; the rows have {', '.join(data.streams)}")
        if cfg.gate == "mlp" and not gate_input:
            raise ConfigError(f"model {self.name}: the gates need an utterance vector: give speaker= or gate_input=")
        if not frames and not vectors:
            raise ConfigError(f"model {self.name}: no input streams")
        # each twinned stream's per-speaker z-scores (made by the normaliser) is a gated vector stream of
        # its own; the speaker vector's twin too (what sets an utterance apart from its speaker's others)
        vectors += [t for v in [*vectors, speaker] if v and (t := twin_of(v, self.config.view.speaker_twins))]
        return {"frame_streams": frames, "vector_streams": vectors, "speaker": speaker or None,
                "gate_input": gate_input or None}  # fmt: skip

    def _stream_names(self, data: Dataset) -> list[str]:
        roles = self._roles(data)
        names = [*roles["frame_streams"], *roles["vector_streams"], roles["speaker"], roles["gate_input"]]
        return sorted({n for n in names if n and not n.endswith(TWIN)})

    def _view(self, data: Dataset) -> dict[str, Any]:
        viewed = super()._view(data)
        step, extra = self.config.frame_step[0], self.config.steps_of()
        return {k: v.pooled(step * extra.get(k, 1)) if isinstance(v, Frames) else v for k, v in viewed.items()}

    def net_options(self) -> dict[str, Any]:
        cfg = self.config
        return {**self._roles_, "classes": self.classes_.tolist(), "label_sets": self.label_sets_,
                "languages": list(self.languages_), "gate": cfg.gate, "mask": cfg.mask,
                "mask_streams": cfg.mask_streams, "l0": cfg.l0, "mask_lr": cfg.mask_lr,
                "alpha": cfg.alpha, "universal": cfg.universal, "language_dropout": cfg.language_dropout,
                "tower": list(cfg.tower), "dropout": cfg.dropout,
                "affect_dim": cfg.affect_dim if cfg.affect_target else 0, "affect_loss": cfg.affect_loss,
                "affect_weight": cfg.affect_weight, "wide": cfg.wide}  # fmt: skip

    def train_config(self) -> TrainConfig:
        # the reference divides the learning rate by the number of languages (one step per language batch)
        n = len(self.languages_) if self.config.scale_lr else 1
        return dataclasses.replace(self.config.train, lr=self.config.train.lr / max(1, n))

    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        self._roles_ = self._roles(train.data)
        few = self._few_shot_languages(train)
        if not few:
            self._fit_once(train, valid)
        else:  # the few-shot path: a model of the other languages (as if zero-shot), then a head per few-shot language
            lang = train.data.language
            sets = self.label_sets_
            self.languages_ = tuple(g for g in self.languages_ if g not in few)
            self.label_sets_ = {g: v for g, v in sets.items() if g not in few}
            self._fit_once(train.subset(~np.isin(lang, few)),
                           None if valid is None else valid.subset(~np.isin(valid.data.language, few)))
            for g in few:
                self._add_language(g, sets[g])
                self._adapt(train.subset(lang == g), g)
            self.selected = {**self.selected, "few_shot": few}
        self.mask_density_ = self.net_.mask_density()
        self.affect_readouts_ = self._affect_readouts(train) if self.config.affect_target else {}

    def _batch(self, data: Prepared) -> Batch:
        batch = super()._batch(data)
        name, rows = self.config.affect_target, data.data
        if name and name in rows.targets and not rows.is_categorical(name):
            keep = rows.mask(name)
            batch.targets["affect"] = torch.from_numpy(np.where(keep, rows.targets[name], 0.0).astype(np.float32))
            batch.masks["affect"] = torch.from_numpy(keep)
        return batch

    def _affect(self, data: Prepared) -> np.ndarray:
        self.net_.eval()
        with torch.no_grad():
            return self.net_(self._batch(data))["affect"].double().numpy()

    def _affect_readouts(self, train: Prepared) -> dict[str, list[float]]:
        """Least-squares lines from the affect embedding to each value target of the training rows."""
        name, rows = self.config.affect_target, train.data
        if name not in rows.targets or rows.is_categorical(name):
            raise ValueError(f"{self.name}: affect_target {name!r} is not a value target of the training rows; "
                             f"they have {', '.join(rows.targets)}")  # fmt: skip
        Z = self._affect(train)
        out = {}
        for target in [t for t in rows.targets if not rows.is_categorical(t)]:
            ok = rows.mask(target)
            if ok.sum() > Z.shape[1] + 1:
                coef, *_ = np.linalg.lstsq(np.c_[Z[ok], np.ones(ok.sum())], rows.targets[target][ok].astype(float), rcond=None)
                out[target] = coef.tolist()
        return out

    def dimensions(self, data: Dataset) -> dict[str, np.ndarray]:
        """Arousal/valence (every value target seen in training) read out of the affect embedding,
        for any language, seen or not: ``model.dimensions(test)["arousal"]``."""
        if not self.affect_readouts_:
            raise RuntimeError(f"{self.name}: trained without affect_target; no dimensions to read out")
        Z = self._affect(self._prepare(data, labels=False))
        return {k: Z @ np.asarray(c[:-1]) + c[-1] for k, c in self.affect_readouts_.items()}

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = super()._state()
        return {**meta, "affect_readouts": self.affect_readouts_}, arrays

    def _fit_once(self, train: Prepared, valid: Prepared | None) -> None:
        """``TorchModel._fit``, remembered for the process: the folds of one few-shot repeat share
        their source rows (K = 0, 1, 5, ... differ only in the target's shots), so the source model
        is trained once. The key covers the rows, their labels and values, and every option."""
        parts = [json.dumps([self.net_options(), self.train_config().learned(), self.config.seed, self.config.members,
                             self.languages_, self.label_sets_], sort_keys=True, default=str)]  # fmt: skip
        for data in (train, valid):
            if data is not None:
                parts += [data.data.ids.tolist(), data.y.tolist()]
                parts += [(k, v.shape, float(np.sum(v.values if isinstance(v, Frames) else v, dtype=np.float64)))
                          for k, v in sorted(data.streams.items())]  # fmt: skip
        key = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
        if key in _SOURCE_MODELS:
            saved = _SOURCE_MODELS[key]
            self.net_meta_, self.history, self.selected, self.input_layers_ = copy.deepcopy(saved["meta"])
            nets = [self._net_from(state) for state in saved["states"]]
            for net, best_epoch in zip(nets, saved["best_epochs"]):
                net.best_epoch_, net.history_ = best_epoch, self.history
            self.net_, self.members_ = nets[0], nets[1:]
            return
        super()._fit(train, valid)
        _SOURCE_MODELS.clear()  # one source model at a time: a few MB, but frames-sized keys are not kept
        _SOURCE_MODELS[key] = {"meta": copy.deepcopy((self.net_meta_, self.history, self.selected, self.input_layers_)),
                               "states": [{k: v.clone() for k, v in net.state_dict().items()} for net in self.nets_()],
                               "best_epochs": [net.best_epoch_ for net in self.nets_()]}  # fmt: skip

    def _add_language(self, language: str, classes: list[str]) -> None:
        """Give the fitted net a head for a new language (built, not yet trained), kept when saved."""
        self.languages_ = (*self.languages_, language)
        self.label_sets_ = {**self.label_sets_, language: list(classes)}
        self.net_meta_ = {**self.net_meta_, "languages": list(self.languages_), "label_sets": self.label_sets_}
        nets = [self._net_from(old.state_dict(), seed=self.config.seed, strict=False) for old in self.nets_()]
        self.net_, self.members_ = nets[0], nets[1:]

    def _few_shot_languages(self, train: Prepared) -> list[str]:
        """Training languages with fewer than ``few_shot_below`` labelled rows per class (never all of them)."""
        if self.config.few_shot_below <= 0:
            return []
        lang, y = train.data.language, train.y
        langs = np.unique(lang)
        few = [str(g) for g in langs if (lang == g).sum() / len(set(y[lang == g].tolist())) < self.config.few_shot_below]
        return [] if len(few) == len(langs) else sorted(few)

    def _adapt(self, rows: Prepared, language: str) -> None:
        """Fit ``language``'s gate and tower on ``rows``, starting from the universal ones (or the
        first language's), with everything else frozen; no valid rows: ``adapt_epochs`` epochs,
        the epoch with the lowest training loss kept (in every member of an ensemble)."""
        epochs = [self._adapt_net(net, rows, language) for net in self.nets_()]
        self.history = [*self.history, {"adapted": language, "rows": len(rows), "epochs": epochs[0],
                                        **({"member_epochs": epochs} if len(epochs) > 1 else {})}]  # fmt: skip

    def _adapt_net(self, net: MultiGateNet, rows: Prepared, language: str) -> int:
        head = _key(language)
        source = _key(UNIVERSAL) if self.config.universal else _key(self.languages_[0])
        gates = [net.gates] if hasattr(net, "gates") else []
        for part in gates:
            part[head].load_state_dict(part[source].state_dict())
        net.towers[head].body.load_state_dict(net.towers[source].body.state_dict())
        with torch.no_grad():  # each class's output row from the source tower's row of that class
            net.sim[head].copy_(net.sim[source])
            src = net.label_index[_unkey(source)]
            for j, c in enumerate(net.label_index[language]):
                if c in src:
                    net.towers[head].out.weight[j] = net.towers[source].out.weight[src.index(c)]
                    net.towers[head].out.bias[j] = net.towers[source].out.bias[src.index(c)]
                    if net.wide is not None:
                        net.wide[head].weight[j] = net.wide[source].weight[src.index(c)]
                        net.wide[head].bias[j] = net.wide[source].bias[src.index(c)]
        if net.mask_kind == "per-language":
            net.masks[head].load_state_dict(net.masks[source].state_dict())
        for p in net.parameters():
            p.requires_grad_(False)
        for part in [net.towers, net.sim, *gates, *([net.wide] if net.wide is not None else [])]:
            part[head].requires_grad_(True)
        dropout, net.language_dropout = net.language_dropout, 0.0
        cfg = dataclasses.replace(self.config.train, epochs=self.config.adapt_epochs, patience=self.config.adapt_epochs,
                                  sampler="random", bucket=0, monitor="loss", mode="min", seed=self.config.seed,
                                  threads=self.config.threads)  # fmt: skip
        try:
            Trainer(cfg).fit(net, train=self._batch(rows))
        finally:
            net.language_dropout = dropout
            for p in net.parameters():
                p.requires_grad_(True)
        net.eval()
        return int(net.best_epoch_)

    def adapt(self, data: Dataset, *, language: str | None = None) -> MultiGate:
        """The few-shot path for a language the model was not trained on: fit its own gate and
        tower (from the universal ones) on a few labelled utterances, experts frozen.

        >>> m.adapt(k_shots, language="sw").predict(test)        # doctest: +SKIP

        The labels must be among the model's classes; ``language`` (default: the rows' one
        language) is the name the new head gets, and rows to predict must carry it.
        """
        langs = sorted(set(data.language.tolist()))
        if language is None and len(langs) != 1:
            raise ValueError(f"adapt: the rows hold several languages ({', '.join(langs)}); give language=")
        lang = language or langs[0]
        if lang in self.languages_:
            raise ValueError(f"adapt: {lang!r} is a training language; adapt is for a new one")
        named = np.full(len(data), lang, dtype=object)  # with domain="corpus" the new head is a new corpus
        data = Dataset(streams=data.streams, targets=data.targets, language=named, speaker=data.speaker, ids=data.ids,
                       corpus=named if self.config.domain == "corpus" else data.corpus, features=data.features)  # fmt: skip
        y = data.targets.get(self.target_)
        if y is None:
            raise ValueError(f"adapt: the rows have no {self.target_!r} labels")
        unknown = sorted(set(y.tolist()) - set(self.classes_.tolist()))
        if unknown:
            raise ValueError(f"adapt: labels {unknown} are not among the model's classes {self.classes_.tolist()}")
        self._add_language(lang, sorted(set(y.tolist())))
        self._adapt(self._prepare(data), lang)
        return self

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(meta, arrays)
        self.mask_density_ = self.net_.mask_density()
        self.affect_readouts_ = meta.get("affect_readouts", {})

    def valid_metrics(self, predicted: np.ndarray, valid: Prepared) -> dict[str, float]:
        """``ua_sum``: the sum over languages of each language's UA (the reference's checkpoint rule), and ``ua``."""
        assert self.classes_ is not None
        pred = self.classes_[predicted]
        lang = valid.data.language
        per = {str(g): unweighted_accuracy(valid.y[lang == g], pred[lang == g]) for g in np.unique(lang)}
        return {"ua_sum": float(sum(per.values())), "ua": unweighted_accuracy(valid.y, pred),
                **{f"ua.{g}": v for g, v in per.items()}}  # fmt: skip

    def stream_names_(self) -> list[str]:
        """The streams the gates weigh, in the order of :meth:`gate_weights_`'s columns."""
        net = self.net_
        return [*net.frame_streams, *net.vector_streams, *([net.speaker] if net.speaker else [])]

    def explain(self, data: Dataset) -> dict[str, Any]:
        """Gate weights on ``data`` per domain (mean and sd over utterances, per stream), mask
        densities, learned layer weights of pooled multi-layer streams, and the loss terms per epoch."""
        w = self.gate_weights_(data)
        dom = self._domains(data).language  # with domain="corpus" each corpus has its own gate
        gates = {str(g): {"n": int((dom == g).sum()), "mean": w[dom == g].mean(axis=0).tolist(),
                          "sd": w[dom == g].std(axis=0).tolist()} for g in np.unique(dom)}  # fmt: skip
        layers = {_unkey(k): a.layer_weights().detach().tolist() for k, a in self.net_.adaptors.items()
                  if a.layer_logits is not None}  # fmt: skip
        history = [{k: v for k, v in h.items() if k == "epoch" or k.startswith("loss") or k.startswith("ua")}
                   for h in self.history if "epoch" in h]  # fmt: skip
        return {"streams": self.stream_names_(), "gates": gates, "mask_density": self.mask_density_,
                "layer_weights": layers, "history": history}

    def gate_weights_(self, data: Dataset) -> np.ndarray:
        """(N, K) gate weights of each row over the streams (frame streams, vector streams, speaker)."""
        batch = self._batch(self._prepare(data, labels=False))
        self.net_.eval()
        with torch.no_grad():
            return self.net_(batch)["gates"].numpy().astype(np.float64)


@dataclass(frozen=True)
class MultiGateLSConfig(MultiGateConfig):
    """The language-specific model: no gates (the streams summed), no mask, no universal head."""

    gate: str = "none"
    mask: str = "none"
    universal: bool = False


class MultiGateLS(MultiGate):
    """``multigate-ls``: the language-specific model of Wang et al. 2022 (experts summed, one tower)."""

    name = "multigate-ls"
    Config = MultiGateLSConfig
