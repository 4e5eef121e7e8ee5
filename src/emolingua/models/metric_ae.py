"""Das et al. 2022: continuous metric learning in autoencoders, with the companion paper's VAE family.

One backbone (88-40-20-10-2 encoder, linear 2-d bottleneck, 2-10-20-40-88 decoder) and six
registered models that differ only in their loss terms:

========================  =========================================================================
``dae``                   denoising autoencoder: Gaussian noise on the z-scored input, clean target
``dae-metric-act``        plus the continuous metric loss ``L_res + L_sl`` on activation (arousal)
``dae-metric-val``        the same on valence
``vae``                   variational autoencoder, KL weight 1
``vae-annealed``          cyclical KL annealing, beta ramping to 0.25 in each cycle
``vae-ss``                annealed VAE plus ``gamma * L_clus`` over the emotion classes
========================  =========================================================================

>>> ae = get_model("dae-metric-act").fit(train, valid=valid)      # doctest: +SKIP
>>> ae.transform(test)          # (N, 2) latent embedding            # doctest: +SKIP
>>> ae.predict(test)            # activation read out of the latent  # doctest: +SKIP
>>> ae.dimensions(test)         # {"arousal": ..., "valence": ...}   # doctest: +SKIP

The read-outs are least-squares lines from the latent to each value target the training rows
carry (fitted on the training rows after the net), so a language without labels still gets an
arousal/valence signal. The metric loss (:func:`continuous_metric_loss`) is a plain function
of a latent batch and a value target, so any :class:`~emolingua.models.module.SERModule` can add
it on one of its layers. Choices the papers leave open (noise level, KL cycles and ramp, the
cluster weight) are options; their defaults were chosen on RAVDESS's valid speakers
(``benchmarks/continuous_metric_defaults.py``; docs/methods/continuous-metric.md): noise sd 0.05
for ``dae`` and 0.2 with the metric loss, 2 KL cycles, cluster weight 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from emolingua.errors import ConfigError
from emolingua.models.contract import ModelConfig, Prepared, RegressionModel
from emolingua.models.data import Dataset
from emolingua.models.module import Batch, SERModule
from emolingua.models.trainer import TrainConfig, Trainer

__all__ = ["AutoencoderConfig", "AutoencoderNet", "MetricAutoencoder", "cluster_loss", "continuous_metric_loss",
           "cyclical_beta", "gaussian_kl", "metric_slope"]  # fmt: skip

_ACTIVATIONS = {"relu": nn.ReLU, "linear": nn.Identity, "tanh": nn.Tanh}
#: options that take several values to choose among on valid
_GRIDS = ("noise", "kl_cycles", "cluster")


# ------------------------------------------------------------------------------------- losses
def metric_slope(z: Tensor, values: Tensor, *, eps: float = 1e-12) -> Tensor:
    """The closed-form least-squares slope ``p = (l_d^T l_d)^-1 l_d^T z_d`` over consecutive pairs.

    ``z``: (N, d) latents, ``values``: (N,) labels; returns (d,). All label differences zero:
    the slope is undefined and returned as zeros.
    """
    ld, zd = values[:-1] - values[1:], z[:-1] - z[1:]
    denom = (ld * ld).sum()
    if float(denom) <= eps:
        return torch.zeros(z.shape[1], dtype=z.dtype, device=z.device)
    return (ld @ zd) / denom


def continuous_metric_loss(z: Tensor, values: Tensor) -> dict[str, Tensor]:
    """Das et al.'s continuous metric loss on consecutive pairs of a batch: ``{"res": L_res, "sl": L_sl}``.

    ``L_res = mean_i ||z_d,i - l_d,i p||^2`` and ``L_sl = ||p - 1||``. A latent whose differences
    follow the label differences along a unit slope costs nothing. When every label of the
    batch is equal there is no slope to fit: ``L_res`` asks equal labels for equal latents
    (``mean ||z_d||^2``) and ``L_sl`` is 0. Fewer than two rows: both 0.

    >>> continuous_metric_loss(z, arousal)["res"]   # doctest: +SKIP
    """
    if len(z) < 2:
        zero = z.sum() * 0.0
        return {"res": zero, "sl": zero}
    ld, zd = values[:-1] - values[1:], z[:-1] - z[1:]
    p = metric_slope(z, values)
    res = ((zd - ld[:, None] * p[None, :]) ** 2).sum(dim=1).mean()
    if not bool((ld != 0).any()):
        return {"res": res, "sl": z.sum() * 0.0}
    return {"res": res, "sl": torch.linalg.vector_norm(p - 1.0)}


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over the latent, averaged over rows."""
    return (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()


def cyclical_beta(epoch: int, *, epochs: int, cycles: int, ramp: float, beta_max: float) -> float:
    """The KL weight of ``epoch`` (1-based) under cyclical annealing (Fu et al. 2019).

    The run is cut into ``cycles`` equal cycles; in each, beta rises linearly from 0 to
    ``beta_max`` over the first ``ramp`` fraction and stays there. ``cycles`` 0: ``beta_max``
    throughout.

    >>> [cyclical_beta(e, epochs=8, cycles=2, ramp=0.5, beta_max=0.25) for e in range(1, 9)]
    [0.0, 0.125, 0.25, 0.25, 0.0, 0.125, 0.25, 0.25]
    """
    if cycles <= 0 or ramp <= 0:
        return beta_max
    period = epochs / cycles
    done = ((epoch - 1) % period) / period  # the fraction of its cycle done when this epoch starts
    return beta_max * min(1.0, done / ramp)


def cluster_loss(z: Tensor, labels: Tensor) -> Tensor:
    """``L_clus``: the summed distance of latents to their class centroid over the summed
    distance between class centroids (Euclidean). Fewer than two classes present: 0."""
    classes = torch.unique(labels)
    if len(classes) < 2:
        return z.sum() * 0.0
    centroids = torch.stack([z[labels == c].mean(dim=0) for c in classes])
    own = centroids[torch.searchsorted(classes, labels)]
    within = torch.linalg.vector_norm(z - own, dim=1).sum()
    between = torch.pdist(centroids).sum()
    return within / between.clamp(min=1e-8)


# ---------------------------------------------------------------------------------------- net
def _stack(sizes: Sequence[int], acts: Sequence[str]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for (a, b), act in zip(zip(sizes[:-1], sizes[1:]), acts):
        layers += [nn.Linear(a, b), _ACTIVATIONS[act]()]
    return nn.Sequential(*layers)


class AutoencoderNet(SERModule):
    """The backbone: an MLP encoder to a linear latent (two heads, mean and log-variance, when
    ``variational``), a mirrored decoder, and the loss terms the options switch on."""

    def __init__(self, *, d_in: int, hidden: Sequence[int] = (40, 20, 10), latent: int = 2,
                 encoder_act: str = "relu", decoder_act: Sequence[str] = ("linear", "relu", "linear", "linear"),
                 noise: float = 0.1, variational: bool = False, metric: bool = False, beta: float = 1.0,
                 kl_cycles: int = 0, kl_ramp: float = 0.5, epochs: int = 50, cluster: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        sizes = [d_in, *hidden]
        self.encoder = _stack(sizes, [encoder_act] * len(hidden))
        self.to_latent = nn.Linear(sizes[-1], latent)
        self.to_logvar = nn.Linear(sizes[-1], latent) if variational else None
        back = [latent, *reversed(hidden), d_in]
        self.decoder = _stack(back, list(decoder_act))
        self.noise, self.variational, self.metric = noise, variational, metric
        self.beta, self.kl_cycles, self.kl_ramp, self.epochs, self.cluster = beta, kl_cycles, kl_ramp, epochs, cluster

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.encoder(x)
        return self.to_latent(h), None if self.to_logvar is None else self.to_logvar(h)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        x = batch.streams["x"]
        noisy = x + self.noise * torch.randn_like(x) if self.training and self.noise > 0 else x
        mu, logvar = self.encode(noisy)
        z = mu
        if logvar is not None and self.training:  # the reparameterisation trick; evaluation uses the mean
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        out = {"z": mu, "recon": self.decoder(z)}
        if logvar is not None:
            out["logvar"] = logvar
        return out

    def losses(self, outputs: dict[str, Tensor], batch: Batch, epoch: int) -> dict[str, Tensor]:
        x = batch.streams["x"]
        terms = {"rec": ((outputs["recon"] - x) ** 2).sum(dim=1).mean()}  # E ||x - g(f(x~))||^2
        if self.metric:
            keep = batch.mask("value")
            terms.update(continuous_metric_loss(outputs["z"][keep], batch.targets["value"][keep]))
        if self.variational:
            beta = cyclical_beta(epoch, epochs=self.epochs, cycles=self.kl_cycles, ramp=self.kl_ramp, beta_max=self.beta)
            terms["kl"] = beta * gaussian_kl(outputs["z"], outputs["logvar"])
        if self.cluster > 0 and "label" in batch.targets:
            keep = batch.mask("label")
            terms["clus"] = self.cluster * cluster_loss(outputs["z"][keep], batch.targets["label"][keep])
        return terms


# -------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class AutoencoderConfig(ModelConfig):
    """Options of the autoencoder family (see the module docstring).

    ``target``: the value the metric loss orders the latent by and the read-out predicts
    (``arousal`` or ``valence``, or any value target); ``hidden``/``latent``: the backbone
    (88-40-20-10-2 as published); ``encoder_act`` and ``decoder_act`` (one per decoder layer: as
    printed, linear-ReLU-linear-linear, which may be a typo); ``noise``: the standard deviation
    of the Gaussian noise added to the z-scored input; ``metric``: add the continuous metric loss; ``variational``, ``beta``, ``kl_cycles``,
    ``kl_ramp``: the VAE and its KL schedule (cycles 0: constant beta); ``cluster``: the weight
    gamma of the class-centroid cluster loss over ``cluster_target``; ``outlier_z``: training
    rows with any |z| above it are dropped (the papers' 10). ``noise``, ``kl_cycles`` and
    ``cluster`` take several values to choose among on valid (by the read-out's CCC).
    """

    target: str | None = "arousal"
    hidden: tuple[int, ...] = (40, 20, 10)
    latent: int = 2
    encoder_act: str = "relu"
    decoder_act: tuple[str, ...] = ("linear", "relu", "linear", "linear")
    noise: tuple[float, ...] = (0.05,)
    metric: bool = False
    variational: bool = False
    beta: float = 1.0
    kl_cycles: tuple[int, ...] = (0,)
    kl_ramp: float = 0.5
    cluster: tuple[float, ...] = (0.0,)
    cluster_target: str = "label"
    outlier_z: float = 10.0
    train: TrainConfig = TrainConfig(epochs=50, patience=50, lr=1e-3, weight_decay=0.0, optimiser="adam",
                                     batch_size=64)  # fmt: skip

    def __post_init__(self) -> None:
        for name, values in (("encoder_act", [self.encoder_act]), ("decoder_act", list(self.decoder_act))):
            if bad := [v for v in values if v not in _ACTIVATIONS]:
                raise ConfigError(f"{name}: {bad[0]!r} is not one of {', '.join(_ACTIVATIONS)}")
        if len(self.decoder_act) != len(self.hidden) + 1:
            raise ConfigError(f"decoder_act: one activation per decoder layer ({len(self.hidden) + 1}), "
                              f"got {len(self.decoder_act)}")  # fmt: skip
        for name in _GRIDS:
            if not getattr(self, name) or any(v < 0 for v in getattr(self, name)):
                raise ConfigError(f"{name}: expected one or more values >= 0, got {list(getattr(self, name))}")
        if self.latent < 1 or self.outlier_z <= 0 or self.beta < 0 or not 0 <= self.kl_ramp <= 1:
            raise ConfigError("latent >= 1, outlier_z > 0, beta >= 0, cluster >= 0 and 0 <= kl_ramp <= 1 are required")


class MetricAutoencoder(RegressionModel):
    """``dae``: a denoising autoencoder on pooled features with a latent read-out (Das et al. 2022).

    >>> get_model("dae", noise=(0.05, 0.1, 0.2)).fit(train, valid=valid).transform(test)  # doctest: +SKIP
    """

    name = "dae"
    Config: ClassVar[type[ModelConfig]] = AutoencoderConfig
    config: AutoencoderConfig
    quick_options: ClassVar[dict[str, Any]] = {"train": {"epochs": 5}}

    def search_grid(self, train: Dataset) -> list[dict[str, Any]]:
        grid: list[dict[str, Any]] = [{}]
        for name in _GRIDS:  # every option given several values is chosen on valid, jointly
            values = getattr(self.config, name)
            if len(values) > 1:
                grid = [{**g, name: (v,)} for g in grid for v in values]
        return grid

    def _values(self, data: Prepared, name: str) -> np.ndarray | None:
        """Target ``name`` of the rows as float with NaN where absent (None: the rows lack it)."""
        if name == self.target_ and data.y is not None:
            return np.asarray(data.y, dtype=np.float64)
        if name not in data.data.targets or data.data.is_categorical(name):
            return None
        return np.where(data.data.mask(name), data.data.targets[name], np.nan).astype(np.float64)

    def _batch(self, data: Prepared, *, labels: bool) -> Batch:
        x = torch.from_numpy(np.ascontiguousarray(data.flat, dtype=np.float32))
        batch = Batch(streams={"x": x})
        if labels and data.y is not None:
            batch.targets["value"] = torch.from_numpy(np.asarray(data.y, dtype=np.float32))
            batch.masks["value"] = torch.ones(len(x), dtype=torch.bool)
        name = self.config.cluster_target
        if labels and self.config.cluster[0] > 0:
            rows = data.data
            if name not in rows.targets or not rows.is_categorical(name):
                raise ValueError(f"{self.name}: the cluster loss needs class labels {name!r}; the rows have "
                                 f"{', '.join(rows.targets) or 'no targets'}")  # fmt: skip
            keep = rows.mask(name)
            classes = {c: i for i, c in enumerate(sorted(set(rows.targets[name][keep].tolist())))}
            batch.targets["label"] = torch.tensor([classes.get(v, 0) for v in rows.targets[name].tolist()])
            batch.masks["label"] = torch.from_numpy(keep)
        return batch

    def _fit(self, train: Prepared, valid: Prepared | None) -> None:
        cfg = self.config
        X = train.flat
        inliers = ~(np.abs(X) > cfg.outlier_z).any(axis=1)
        if not inliers.any():
            raise ValueError(f"{self.name}: every training row has a feature with |z| > {cfg.outlier_z}")
        train = train.subset(inliers)
        meta = {"d_in": int(X.shape[1]), "hidden": list(cfg.hidden), "latent": cfg.latent, "encoder_act": cfg.encoder_act,
                "decoder_act": list(cfg.decoder_act), "noise": float(cfg.noise[0]), "variational": cfg.variational,
                "metric": cfg.metric, "beta": cfg.beta, "kl_cycles": int(cfg.kl_cycles[0]), "kl_ramp": cfg.kl_ramp,
                "epochs": cfg.train.epochs, "cluster": float(cfg.cluster[0])}  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = AutoencoderNet(**meta)
        # the papers train a fixed number of epochs; the epoch kept is the one of lowest training loss
        train_cfg = dataclasses.replace(cfg.train, seed=cfg.seed, threads=cfg.threads, monitor="loss", mode="min")
        self.net_ = Trainer(train_cfg).fit(net, train=self._batch(train, labels=True))
        self.net_meta_ = meta
        self.history = self.net_.history_
        self.selected = {"outliers_dropped": int((~inliers).sum()), "epochs": self.net_.best_epoch_}
        # least-squares read-outs latent -> each value target the training rows carry
        Z = self._latent(train)
        self.readouts_: dict[str, list[float]] = {}
        names = [self.target_, *(k for k in train.data.targets if k != self.target_)]
        for name in names:
            y = self._values(train, name)
            if y is None or np.isfinite(y).sum() < 2:
                continue
            ok = np.isfinite(y)
            A = np.c_[Z[ok], np.ones(ok.sum())]
            coef, *_ = np.linalg.lstsq(A, y[ok], rcond=None)
            self.readouts_[name] = coef.tolist()

    def _latent(self, data: Prepared) -> np.ndarray:
        self.net_.eval()
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(data.flat, dtype=np.float32))
            return self.net_.encode(x)[0].double().numpy()

    def _read(self, Z: np.ndarray, name: str) -> np.ndarray:
        coef = np.asarray(self.readouts_[name])
        return Z @ coef[:-1] + coef[-1]

    def _predict(self, data: Prepared) -> np.ndarray:
        return self._read(self._latent(data), self.target_)

    # -- public API beyond the contract ---------------------------------------------------------
    def transform(self, data: Dataset) -> np.ndarray:
        """The latent embedding, (N, latent) float64 (the VAE's mean): ``model.transform(test)``."""
        from emolingua.system import limited_threads

        with limited_threads(self.config.threads):
            return self._latent(self._prepare(data, labels=False))

    def embed(self, data: Dataset) -> np.ndarray:
        """The latent embedding (see :meth:`transform`), float32."""
        return np.asarray(self.transform(data), dtype=np.float32)

    def dimensions(self, data: Dataset) -> dict[str, np.ndarray]:
        """Every read-out the model has (e.g. arousal and valence), each (N,): ``model.dimensions(test)``."""
        return self.read_out(self.transform(data))

    def read_out(self, latent: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`dimensions` of latents already computed by :meth:`transform`."""
        return {name: self._read(latent, name) for name in self.readouts_}

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        return {"net": self.net_meta_, "readouts": self.readouts_}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.net_meta_, self.readouts_ = meta["net"], meta["readouts"]
        with torch.random.fork_rng(devices=[]):
            net = AutoencoderNet(**self.net_meta_)
        net.load_state_dict({k[len("net.") :]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                             if k.startswith("net.")}, strict=True)  # fmt: skip
        self.net_ = net.eval()


@dataclass(frozen=True)
class _MetricActConfig(AutoencoderConfig):
    noise: tuple[float, ...] = (0.2,)
    metric: bool = True


@dataclass(frozen=True)
class _MetricValConfig(AutoencoderConfig):
    target: str | None = "valence"
    noise: tuple[float, ...] = (0.2,)
    metric: bool = True


@dataclass(frozen=True)
class _VAEConfig(AutoencoderConfig):
    noise: tuple[float, ...] = (0.0,)
    variational: bool = True


@dataclass(frozen=True)
class _AnnealedConfig(_VAEConfig):
    beta: float = 0.25
    kl_cycles: tuple[int, ...] = (2,)


@dataclass(frozen=True)
class _SSConfig(_AnnealedConfig):
    cluster: tuple[float, ...] = (1.0,)


class DAEMetricAct(MetricAutoencoder):
    """``dae-metric-act``: the denoising autoencoder with the continuous metric loss on activation."""

    name = "dae-metric-act"
    Config = _MetricActConfig


class DAEMetricVal(MetricAutoencoder):
    """``dae-metric-val``: the denoising autoencoder with the continuous metric loss on valence."""

    name = "dae-metric-val"
    Config = _MetricValConfig


class VAE(MetricAutoencoder):
    """``vae``: the variational autoencoder on the same backbone (KL weight 1)."""

    name = "vae"
    Config = _VAEConfig


class VAEAnnealed(MetricAutoencoder):
    """``vae-annealed``: the VAE with cyclical KL annealing (beta up to 0.25 in each cycle)."""

    name = "vae-annealed"
    Config = _AnnealedConfig


class VAESemiSupervised(MetricAutoencoder):
    """``vae-ss``: the annealed VAE plus the class-centroid cluster loss (semi-supervised)."""

    name = "vae-ss"
    Config = _SSConfig

