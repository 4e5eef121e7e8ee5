"""One training loop for every torch model: samplers, optimiser, scheduler, early stopping, checkpoints.

The module (a :class:`~emolingua.models.module.SERModule`) says what to compute; the
:class:`Trainer` does the rest, in the manner of SpeechBrain's ``Brain``:

>>> trainer = Trainer(TrainConfig(epochs=30, monitor="ua_sum", mode="max"))     # doctest: +SKIP
>>> module = trainer.fit(module, train=batch, evaluate=lambda m: {"ua_sum": ...},
...                      checkpoint_dir="runs/x/ckpt")
>>> module.history_[-1]       # loss terms and valid metrics of the last epoch

Determinism: the sampler draws from the Trainer's own ``torch.Generator``; dropout and other
global-RNG draws happen inside a forked RNG seeded with ``seed``; both states are checkpointed,
so a run killed after epoch k and rerun with the same checkpoint folder ends with exactly the
weights of an uninterrupted run. The caller's RNG, thread count and determinism flag are
restored when :meth:`Trainer.fit` returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from emolingua.config import runtime
from emolingua.errors import ConfigError, NotAvailableError
from emolingua.fileio import atomic_write
from emolingua.models.module import Batch, SERModule
from emolingua.system import limited_threads

__all__ = ["Checkpointer", "TrainConfig", "Trainer"]

_log = logging.getLogger("emolingua.trainer")

_CHOICES = {"optimiser": ("adamw", "adam", "sgd"), "scheduler": ("none", "cosine", "plateau"),
            "sampler": ("random", "class-balanced", "by-language"), "mode": ("max", "min"),
            "device": ("auto", "cpu", "cuda")}  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """How a module is trained.

    ``monitor`` names the value that selects the best epoch and stops early: a key of what
    ``evaluate`` returns on valid (e.g. ``"ua_sum"``), or ``"loss"`` (the summed training loss)
    when there is no valid set. ``sampler="by-language"`` gives every batch rows of one
    language only and alternates languages batch by batch, one optimiser step per batch;
    ``"class-balanced"`` draws rows (with replacement) with equal total weight per class of
    target ``balance_target``. ``bucket`` > 0 (with ``random`` or ``by-language``): the shuffled
    rows are cut into pools of ``bucket`` batches, each pool sorted by frame count before it is
    cut into batches, and the batches shuffled: padding, and so the time of a recurrent net on
    frames, shrinks while every row is still seen once per epoch. ``threads`` and ``device`` are runtime settings, not part of
    what is learned.
    """

    epochs: int = 60
    lr: float = 1e-3
    weight_decay: float = 1e-2
    optimiser: str = "adamw"
    momentum: float = 0.9
    scheduler: str = "none"
    batch_size: int = 64
    sampler: str = "random"
    bucket: int = 0
    balance_target: str = "label"
    grad_clip: float | None = None
    patience: int = 10
    monitor: str = "loss"
    mode: str = "min"
    seed: int = 0
    device: str = runtime("auto")
    threads: int | None = runtime(None)

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"train.{name}: {getattr(self, name)!r} is not one of {', '.join(choices)}")
        if self.bucket < 0:
            raise ConfigError(f"train.bucket: must be >= 0, got {self.bucket}")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"train.lr / train.weight_decay: need lr > 0 and weight_decay >= 0, "
                              f"got {self.lr} and {self.weight_decay}")  # fmt: skip
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"train.grad_clip: must be > 0 or None, got {self.grad_clip}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"train.threads: must be >= 1 or None, got {self.threads}")

    def learned(self) -> dict[str, Any]:
        """The fields that change what is learned (runtime settings left out): a checkpoint's identity."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.metadata.get("runtime")}


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise NotAvailableError("train.device: 'cuda' was asked for but no CUDA device is visible; use 'auto' or 'cpu'")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


class Checkpointer:
    """One checkpoint file in ``folder``, replaced atomically after every completed epoch.

    It holds tensors, numbers, strings and lists/dicts of them only, so it loads with
    ``torch.load(..., weights_only=True)``: reading a checkpoint never runs code.
    """

    FILE = "checkpoint.pt"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.FILE

    def save(self, state: dict[str, Any]) -> None:
        with atomic_write(self.path) as f:
            torch.save(state, f)

    def load(self) -> dict[str, Any] | None:
        """The last checkpoint (tensors on CPU), or None when the folder has none yet."""
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)


def _cpu_state(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _better(score: float, best: float | None, mode: str) -> bool:
    if best is None:
        return not math.isnan(score)
    return score > best if mode == "max" else score < best


class Trainer:
    """Trains a :class:`SERModule` on a :class:`Batch` of rows; see the module docstring."""

    def __init__(self, config: TrainConfig | None = None, *, log: Callable[[str], None] | None = None) -> None:
        self.config = config or TrainConfig()
        self.log = log or _log.info
        self.steps = 0  # optimiser steps taken by the last fit (since its start or resume)

    # -- samplers ---------------------------------------------------------------------------
    def batches(self, data: Batch, gen: torch.Generator) -> list[Tensor]:
        """The row indices of each batch of one epoch, drawn from ``gen``."""
        cfg, n = self.config, len(data)
        if cfg.sampler == "random":
            return self._cut(torch.randperm(n, generator=gen), data, gen)
        if cfg.sampler == "class-balanced":
            name = cfg.balance_target
            if name not in data.targets:
                raise ConfigError(f"train.balance_target: the data have no target {name!r}; "
                                  f"targets: {', '.join(sorted(data.targets)) or 'none'}")  # fmt: skip
            rows = torch.nonzero(data.mask(name).cpu()).flatten()
            y = data.targets[name].cpu()[rows].long()
            counts = torch.bincount(y)
            weights = 1.0 / counts[y].double()
            draw = torch.multinomial(weights, len(rows), replacement=True, generator=gen)
            return list(rows[draw].split(cfg.batch_size))
        if data.language_ids is None:
            raise ConfigError("train.sampler: 'by-language' needs the batch's language_ids; give them or use 'random'")
        lang = data.language_ids.cpu()
        queues = [self._cut(torch.nonzero(lang == k).flatten()[torch.randperm(int((lang == k).sum()), generator=gen)],
                            data, gen) for k in torch.unique(lang).tolist()]  # fmt: skip
        out: list[Tensor] = []
        for i in range(max(len(q) for q in queues)):  # round robin: one batch of each language in turn
            out.extend(q[i] for q in queues if i < len(q))
        return out

    def _cut(self, order: Tensor, data: Batch, gen: torch.Generator) -> list[Tensor]:
        """Shuffled rows ``order`` cut into batches (length-bucketed when ``bucket`` > 0)."""
        size, pool = self.config.batch_size, self.config.bucket * self.config.batch_size
        if not pool or not data.lengths:
            return list(order.split(size))
        frames = sum(v.cpu() for v in data.lengths.values())
        out: list[Tensor] = []
        for chunk in order.split(pool):
            out.extend(chunk[torch.argsort(frames[chunk], stable=True)].split(size))
        return [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]

    # -- optimiser and scheduler ------------------------------------------------------------
    def _optimiser(self, module: SERModule) -> torch.optim.Optimizer:
        cfg = self.config
        groups = module.param_groups(lr=cfg.lr, weight_decay=cfg.weight_decay)
        # the fused kernel updates all tensors in one pass: 4-6x faster steps on this CPU than the
        # per-tensor loop (the default on CPU), same arithmetic per element, deterministic
        fused = {"fused": True} if all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda")
                                       for g in groups for p in g["params"]) else {}  # fmt: skip
        if cfg.optimiser == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, **fused)
        if cfg.optimiser == "adam":
            return torch.optim.Adam(groups, lr=cfg.lr, **fused)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)

    def _scheduler(self, opt: torch.optim.Optimizer) -> Any:
        cfg = self.config
        if cfg.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        if cfg.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=cfg.mode, patience=max(1, cfg.patience // 3))
        return None

    # -- global state -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _isolated(self, device: torch.device) -> Iterator[None]:
        """Seeded global RNG, threads and determinism for the run; the caller's are restored after."""
        deterministic = torch.are_deterministic_algorithms_enabled()
        devices = [device.index or 0] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), limited_threads(self.config.threads):
                torch.manual_seed(self.config.seed)
                if device.type == "cpu":
                    torch.use_deterministic_algorithms(True)
                yield
        finally:
            torch.use_deterministic_algorithms(deterministic)

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, module: SERModule, *, train: Batch, evaluate: Callable[[SERModule], dict[str, float]] | None = None,
            checkpoint_dir: str | Path | None = None) -> SERModule:  # fmt: skip
        """Train ``module`` in place and return it with the best epoch's weights.

        ``evaluate(module)`` is called after every epoch (module in eval mode, no gradients)
        and returns valid metrics, one of which is ``config.monitor``. With ``checkpoint_dir``
        a rerun resumes after the last completed epoch. The fitted module gets ``history_``
        (one dict per epoch: ``loss``, ``loss.<term>``, valid metrics, ``lr``, ``steps``) and
        ``best_epoch_``.
        """
        if len(train) == 0:
            raise ConfigError("train: the training batch has no rows")
        cfg = self.config
        device = _device(cfg.device)
        ckpt = Checkpointer(checkpoint_dir) if checkpoint_dir is not None else None
        module.to(device)
        with self._isolated(device):
            opt = self._optimiser(module)
            sched = self._scheduler(opt)
            gen = torch.Generator().manual_seed(cfg.seed)
            history: list[dict[str, Any]] = []
            best: dict[str, Any] = {"epoch": 0, "score": None, "state": None}
            start, stopped = 1, False
            saved = ckpt.load() if ckpt else None
            if saved is not None:
                if saved["config"] != cfg.learned():
                    raise ConfigError(f"{ckpt.path}: holds a run with another training config; "
                                      "use a new checkpoint folder or delete this one")  # fmt: skip
                module.load_state_dict(saved["module"])
                opt.load_state_dict(saved["optimiser"])
                if sched is not None:
                    sched.load_state_dict(saved["scheduler"])
                gen.set_state(saved["rng"]["sampler"])
                torch.set_rng_state(saved["rng"]["torch"])
                if device.type == "cuda" and saved["rng"].get("cuda") is not None:
                    torch.cuda.set_rng_state(saved["rng"]["cuda"], device)
                history, best, stopped = saved["history"], saved["best"], saved["stopped"]
                start = saved["epoch"] + 1
            self.steps = 0
            epoch = start
            while epoch <= cfg.epochs and not stopped:
                record = self._epoch(module, train, opt, gen, epoch, device)
                if evaluate is not None:
                    module.eval()
                    with torch.no_grad():
                        record.update({k: float(v) for k, v in evaluate(module).items()})
                if cfg.monitor not in record:
                    raise ConfigError(f"train.monitor: {cfg.monitor!r} is not among the epoch's values "
                                      f"({', '.join(sorted(record))})")  # fmt: skip
                score = record[cfg.monitor]
                if _better(score, best["score"], cfg.mode):
                    best = {"epoch": epoch, "score": score, "state": _cpu_state(module)}
                if cfg.scheduler == "plateau":
                    sched.step(score)
                elif sched is not None:
                    sched.step()
                history.append(record)
                stopped = epoch - best["epoch"] >= cfg.patience
                self.log(self._line(record, epoch, best["epoch"]))
                if ckpt is not None:
                    ckpt.save({"config": cfg.learned(), "epoch": epoch, "module": _cpu_state(module),
                               "optimiser": opt.state_dict(), "scheduler": None if sched is None else sched.state_dict(),
                               "rng": {"sampler": gen.get_state(), "torch": torch.get_rng_state(),
                                       "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                               "history": history, "best": best, "stopped": stopped})  # fmt: skip
                epoch += 1
        if best["state"] is not None:
            module.load_state_dict(best["state"])
        module.eval()
        module.history_ = history
        module.best_epoch_ = best["epoch"]
        return module

    def _epoch(self, module: SERModule, train: Batch, opt: torch.optim.Optimizer, gen: torch.Generator,
               epoch: int, device: torch.device) -> dict[str, Any]:  # fmt: skip
        module.train()
        sums: dict[str, float] = {}
        rows = steps = 0
        t0 = time.perf_counter()
        for idx in self.batches(train, gen):
            batch = train.rows(idx).to(device)
            terms = module.losses(module(batch), batch, epoch)
            loss = torch.stack([t.reshape(()) for t in terms.values()]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), self.config.grad_clip)
            opt.step()
            steps += 1
            n = len(idx)
            rows += n
            for name, value in [("loss", loss), *((f"loss.{k}", v) for k, v in terms.items())]:
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * n
        self.steps += steps
        self._seconds = time.perf_counter() - t0  # for the progress line only: not reproducible, kept out of history
        record: dict[str, Any] = {"epoch": epoch, **{k: v / rows for k, v in sums.items()}}
        record["lr"] = opt.param_groups[0]["lr"]
        record["steps"] = steps
        return record

    def _line(self, record: dict[str, Any], epoch: int, best_epoch: int) -> str:
        terms = ", ".join(f"{k[5:]} {v:.4g}" for k, v in record.items() if k.startswith("loss."))
        valid = "  ".join(f"{k} {v:.4g}" for k, v in record.items()
                          if not k.startswith("loss") and k not in ("epoch", "lr", "steps"))  # fmt: skip
        return (f"epoch {epoch}/{self.config.epochs}  loss {record['loss']:.4g} ({terms})"
                f"{'  ' + valid if valid else ''}  lr {record['lr']:.3g}  best {best_epoch}"
                f"  {self._seconds:.1f}s")  # fmt: skip
