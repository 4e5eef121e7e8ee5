"""ONNX export of a pipeline: one graph from the log-mel to the scores, and an onnxruntime runner.

>>> export_onnx(model="default", output="runs/default-onnx")                        # doctest: +SKIP
>>> Pipeline("runs/default-onnx", backend="onnx").score([samples])["proba"]         # doctest: +SKIP

``model.onnx`` holds everything after the log-mel, for ONE clip at a time: the Whisper encoder
(the convolutions, positions and only the layers up to the highest one a head reads), masked
to each window's valid frames; the mean and standard deviation of each hidden state over the
valid frames of all the clip's 30 s windows (as :func:`emolingua.features.hf.layer_features`
pools them); then per head its feature view, its z-score and its linear map (a softmax for
the emotion classes, a value clipped to 0..1 for arousal and valence).

Inputs: ``mel`` (windows, 80, frames) float32, the clip's log-mel windows padded with zeros to
the longest, and ``lengths`` (windows,) int64, each window's valid mel frames. Outputs:
``proba`` (1, labels) in the order of ``pipeline.json`` "labels", ``arousal`` (1,) and
``valence`` (1,) where the pipeline has those heads.

The log-mel stays outside the graph: an STFT in ONNX is neither portable across runtimes nor
needed (any runtime can compute Whisper's log-mel; ``preprocessing.json`` and
``mel_filters.npy`` give its exact recipe). The graph is float32 whatever precision the
features were trained in, so it matches the torch path at ``precision="fp32"``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from emolingua.errors import ConfigError, InputFileError
from emolingua.features import get_extractor
from emolingua.features.whisper import HOP, N_FFT, WINDOW_SAMPLES, WhisperExtractor, _layer_forward, log_mel
from emolingua.fileio import atomic_write, check_writable
from emolingua.models import Model

__all__ = ["OnnxRunner", "export_onnx"]

ONNX_FILE = "model.onnx"
FILTERS_FILE = "mel_filters.npy"
PREPROCESSING_FILE = "preprocessing.json"
#: 17: the first opset with LayerNormalization as one operator.
DEFAULT_OPSET = 17
LINEAR_HEADS = ("logreg", "linear-svm", "ridge")
#: Normalisations that do not depend on the other rows scored with a clip (at prediction, a
#: clip's corpus is unknown, so "corpus" uses the statistics of all training rows).
NORMALISE_MODES = ("train", "corpus", "none")
SUPPORTED = (f"ONNX export supports linear heads ({', '.join(LINEAR_HEADS)}) on one pooled whisper stream "
             f"(whisper-base or whisper:<model>), normalised {' / '.join(NORMALISE_MODES)}")  # fmt: skip


# ----------------------------------------------------------------------------- what the graph computes
@dataclass
class _Head:
    """One head as arrays: the hidden states it reads, which half of each mean/std vector, its
    z-score and its linear map (classes: ``coef`` (C, D); values: ``coef`` (D,))."""

    name: str
    layers: tuple[int, ...]
    stat: str
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray


def _unsupported(folder: Path, what: str) -> ConfigError:
    return ConfigError(f"{folder}: {what}; {SUPPORTED}")


def _stream(folder: Path, model: Model) -> str:
    """The one pooled stream ``model`` reads (its name is the extractor spec)."""
    streams = list(model.streams_)
    spec = str(model.features_.get(streams[0], {}).get("spec", "")) if len(streams) == 1 else ""
    if spec != streams[0] or len(model.streams_[spec]) != 2:  # a frame stream is named "<spec>/layerN"
        raise _unsupported(folder, f"model {model.name} reads streams {streams}")
    if spec.partition(":")[0] not in ("whisper", "whisper-base"):
        raise _unsupported(folder, f"model {model.name} reads extractor {spec!r}")
    return spec


def _head(folder: Path, name: str, model: Model, n_states: int) -> _Head:
    if model.name not in LINEAR_HEADS:
        raise _unsupported(folder, f"model {model.name}")
    if (name == "emotion") != (model.task == "classification"):
        raise _unsupported(folder, f"head {name} is a {model.task} model {model.name}")
    view = model.config.view
    assert model.normaliser_ is not None
    norm = model.normaliser_
    if norm.mode not in NORMALISE_MODES:
        raise _unsupported(folder, f"model {model.name} normalises {norm.mode} (it depends on the other rows)")
    if norm.twins:
        twins = ", ".join(norm.twins)
        raise _unsupported(folder, f"model {model.name} has speaker twins of {twins} (they depend on the other rows)")
    stream = _stream(folder, model)
    layers = view.layer_indices(n_states)
    width = model.streams_[stream][1] // (2 if view.stat in ("mean", "std") else 1)
    if norm.mode == "none":
        mean, std = np.zeros(len(layers) * width), np.ones(len(layers) * width)
    else:
        mean, std = (a.reshape(-1) for a in norm.stats[stream]["*"])
    coef, intercept = np.asarray(model.coef_, dtype=np.float64), np.atleast_1d(model.intercept_).astype(np.float64)
    if coef.ndim == 2 and coef.shape[0] == 1:  # binary: the scores of both classes, as _LinearClassifier._proba
        coef, intercept = (np.concatenate([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])) \
            if model.name == "logreg" else (np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept]))
    return _Head(name=name, layers=layers, stat=view.stat, mean=mean, std=std, coef=coef, intercept=intercept)


class ScoreGraph(torch.nn.Module):
    """Whisper encoder -> pooled statistics -> heads, for one clip's windows (see the module docstring)."""

    def __init__(self, *, encoder: torch.nn.Module, heads: list[_Head], fitted: bool) -> None:
        super().__init__()
        top = max(i for h in heads for i in h.layers)
        self.conv1, self.conv2 = encoder.conv1, encoder.conv2
        self.embed_positions = encoder.embed_positions
        self.layers = torch.nn.ModuleList(list(encoder.layers)[:top])
        # the last hidden state is taken after the final layer norm (as transformers returns it)
        self.final_norm = encoder.layer_norm if top == len(encoder.layers) else None
        self.fitted = fitted
        self.pooled_states = sorted({i for h in heads for i in h.layers})
        self.head_specs = [(h.name, h.layers, h.stat) for h in heads]
        for h in heads:
            for key in ("mean", "std", "coef", "intercept"):
                self.register_buffer(f"{h.name}_{key}", torch.from_numpy(getattr(h, key).astype(np.float32)))

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # fitted: the encoder sees each window's valid frames; padded: the whole 30 s window
        seen = lengths if self.fitted else torch.full_like(lengths, WINDOW_SAMPLES // HOP)
        mel_mask = (torch.arange(mel.shape[2])[None, :] < seen[:, None])[:, None, :].to(mel.dtype)
        x = F.gelu(self.conv1(mel * mel_mask)) * mel_mask
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        t_out = x.shape[1]
        frames = torch.arange(t_out)[None, :]
        valid = frames < ((seen + 1) // 2)[:, None]
        keep = valid[:, :, None].to(x.dtype)
        x = (x + self.embed_positions.weight[:t_out]) * keep
        states = [x]
        for i, layer in enumerate(self.layers):
            x = _layer_forward(layer, x, valid[:, None, None, :], torch.float32) * keep
            states.append(self.final_norm(x) if self.final_norm is not None and i == len(self.layers) - 1 else x)
        # statistics over the valid frames of every window together, as layer_features pools them
        weight = (frames < ((lengths + 1) // 2)[:, None])[:, :, None].to(x.dtype)
        count = weight.sum()
        pooled = {}
        for i in self.pooled_states:
            mean = (states[i] * weight).sum(dim=(0, 1)) / count
            std = (((states[i] - mean) * weight).square().sum(dim=(0, 1)) / count).sqrt()
            pooled[i] = (mean, std)
        outputs = []
        for name, layers, stat in self.head_specs:
            parts = [pooled[i][0] if stat == "mean" else pooled[i][1] if stat == "std" else torch.cat(pooled[i])
                     for i in layers]  # fmt: skip
            z = (torch.cat(parts) - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")
            coef, intercept = getattr(self, f"{name}_coef"), getattr(self, f"{name}_intercept")
            if coef.dim() == 2:
                outputs.append(torch.softmax(coef @ z + intercept, dim=0)[None, :])
            else:
                outputs.append(((coef * z).sum() + intercept).clamp(0.0, 1.0).reshape(1))
        return tuple(outputs)


# ----------------------------------------------------------------------------- export
def _mel_spec(*, fitted: bool) -> dict[str, Any]:
    return {"sample_rate": 16000, "n_fft": N_FFT, "hop_length": HOP, "window": "hann (periodic)", "n_mels": 80,
            "mel_filters": FILTERS_FILE, "frames": "len(samples) // hop_length (at least 1)",
            "power": "|STFT|^2 (torch.stft, centred, reflect padding)", "log": "log10(max(mel, 1e-10))",
            "floor": "max(log_mel, log_mel.max() - 8.0), per window", "scale": "(log_mel + 4.0) / 4.0",
            "window_seconds": WINDOW_SAMPLES // 16000, "input": "fitted" if fitted else "padded",
            "windows": "the clip cut into 30 s windows (the last one shorter), each its own log-mel; "
                       + ("mel frames = the window's frames" if fitted else
                          "each window zero-padded to 30 s before the log-mel (3000 frames)"),
            "lengths": "valid mel frames of each window: len(window samples) // 160, at least 1"}  # fmt: skip


def export_onnx(*, model: str | os.PathLike = "default", output: str | os.PathLike, opset: int | None = None) -> Path:
    """Write ``output/`` (model.onnx, pipeline.json, mel_filters.npy, preprocessing.json), a pipeline
    folder for ``backend="onnx"``; returns it.

    >>> export_onnx(model="default", output="runs/default-onnx")          # doctest: +SKIP
    """
    from emolingua.pipelines import HEADS, PIPELINE_FILE, resolve_model

    source = resolve_model(model)
    models = {h: Model.load(source / h) for h in HEADS if (source / h).is_dir()}
    if "emotion" not in models:
        raise InputFileError(f"{source}: no emotion/ model to export (already an ONNX export?)")
    streams = {_stream(source, m) for m in models.values()}
    if len(streams) != 1:
        raise _unsupported(source, f"its heads read different streams {sorted(streams)}")
    info = models["emotion"].features_[streams.pop()]
    options = {**info.get("identity", {}).get("options", {}), "precision": "fp32"}
    extractor = get_extractor(info["spec"], **options)
    assert isinstance(extractor, WhisperExtractor)
    encoder = extractor._load()
    heads = [_head(source, name, m, extractor.n_states) for name, m in models.items()]
    fitted = extractor.config.input == "fitted"
    graph = ScoreGraph(encoder=encoder, heads=heads, fitted=fitted).eval()

    out = check_writable(output, what="output")
    if out.resolve() == source.resolve():
        raise InputFileError(f"output {out}: the pipeline folder itself; choose another folder")
    opset = opset or DEFAULT_OPSET
    outputs = ["proba" if h.name == "emotion" else h.name for h in heads]
    example = (torch.zeros(2, 80, 300).uniform_(-1, 1), torch.tensor([300, 211]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(graph, example, str(out / ONNX_FILE), dynamo=False, opset_version=opset,
                          input_names=["mel", "lengths"], output_names=outputs,
                          dynamic_axes={"mel": {0: "windows", 2: "frames"}, "lengths": {0: "windows"}})  # fmt: skip
    _check_export(out / ONNX_FILE, graph)

    assert extractor._filters is not None
    np.save(out / FILTERS_FILE, extractor._filters.numpy())
    mel = _mel_spec(fitted=fitted)
    with atomic_write(out / PREPROCESSING_FILE, "w") as f:
        f.write(json.dumps(mel, indent=1))
    spec = json.loads((source / PIPELINE_FILE).read_text())
    spec["onnx"] = {
        "file": ONNX_FILE, "opset": opset, "exported_from": str(source), "extractor": info["spec"],
        "trained_precision": info.get("identity", {}).get("options", {}).get("precision"), "graph_precision": "fp32",
        "encoder_layers": len(graph.layers), "pooled_states": graph.pooled_states,
        "inputs": {"mel": {"shape": ["windows", 80, "frames"], "dtype": "float32",
                           "what": "log-mel windows of ONE clip, zero-padded to the longest"},
                   "lengths": {"shape": ["windows"], "dtype": "int64", "what": "valid mel frames of each window"}},
        "outputs": {o: {"shape": [1, len(spec["labels"])] if o == "proba" else [1], "dtype": "float32"} for o in outputs},
        "mel": mel,
        "postprocessing": {"proba": {"labels": spec["labels"], "what": "softmax over the labels, in this order"},
                           **{d: {"scale": [0.0, 1.0], "neutral": 0.5, "what": f"{d}, clipped to 0..1"}
                              for d in outputs if d != "proba"}},
    }  # fmt: skip
    with atomic_write(out / PIPELINE_FILE, "w") as f:
        f.write(json.dumps(spec, indent=1, default=str))
    for card in ("MODEL_CARD.md", "README.md"):
        if (source / card).is_file():
            shutil.copyfile(source / card, out / card)
    return out


def _check_export(path: Path, graph: ScoreGraph) -> None:
    """The file loads in onnxruntime and agrees with the torch graph on shapes other than the traced one."""
    import onnx

    onnx.checker.check_model(str(path))
    session = _session(path, threads=None)
    mel = torch.rand(3, 80, 437, generator=torch.Generator().manual_seed(0)) * 2 - 1
    lengths = torch.tensor([437, 437, 90])
    with torch.no_grad():
        want = [w.numpy() for w in graph(mel, lengths)]
    got = session.run(None, {"mel": mel.numpy(), "lengths": lengths.numpy()})
    worst = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    if not worst < 1e-4:
        raise RuntimeError(f"{path}: onnxruntime differs from the torch graph by {worst:.2g}")


# ----------------------------------------------------------------------------- running it
def _session(path: Path, *, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, one per physical core
    options.log_severity_level = 3
    # idle threads sleep instead of spinning: between runs the CPU goes to the log-mel (torch)
    # and to whatever else the process does, which spinning threads would slow down
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """Scores 16 kHz mono clips with an exported folder's ``model.onnx``: ``OnnxRunner("runs/m-onnx").score([x])``.

    ``threads``: onnxruntime's intra-op threads (None: one per physical core).
    """

    def __init__(self, folder: str | os.PathLike, *, threads: int | None = None) -> None:
        from emolingua.pipelines import PIPELINE_FILE

        self.folder = Path(folder)
        path = self.folder / ONNX_FILE
        if not path.is_file() or not (self.folder / FILTERS_FILE).is_file():
            raise InputFileError(f"{self.folder}: not an ONNX export (no {ONNX_FILE} or {FILTERS_FILE}); write one "
                                 f"with `emolingua export onnx --model MODEL --output {self.folder}`")  # fmt: skip
        try:
            spec = json.loads((self.folder / PIPELINE_FILE).read_text())
            if "onnx" not in spec:
                raise ValueError(f"{PIPELINE_FILE} has no onnx section")
            self.labels: list[str] = [str(c) for c in spec["labels"]]
            self.fitted = spec["onnx"]["mel"]["input"] == "fitted"
            self.filters = torch.from_numpy(np.load(self.folder / FILTERS_FILE).astype(np.float32))
            self.session = _session(path, threads=threads)
        except Exception as exc:  # noqa: BLE001 - unreadable JSON, a truncated file, an onnxruntime error: one line
            why = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise InputFileError(f"{self.folder}: not a usable ONNX export ({why})") from None
        self.outputs = [o.name for o in self.session.get_outputs()]

    def windows(self, clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mel`` (windows, 80, frames) and ``lengths`` (windows,) of one clip, as the Whisper extractor cuts it."""
        mels, lengths = [], []
        for start in range(0, max(len(clip), 1), WINDOW_SAMPLES):
            piece = clip[start : start + WINDOW_SAMPLES]
            mels.append(log_mel(piece, self.filters, pad_to=None if self.fitted else WINDOW_SAMPLES).numpy())
            lengths.append(max(len(piece) // HOP, 1))
        batch = np.zeros((len(mels), mels[0].shape[0], max(m.shape[1] for m in mels)), dtype=np.float32)
        for i, m in enumerate(mels):
            batch[i, :, : m.shape[1]] = m
        return batch, np.asarray(lengths, dtype=np.int64)

    def score(self, clips: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``proba`` (N, labels), and ``arousal`` / ``valence`` (N,) where the graph has them."""
        if not clips:
            return {name: np.zeros((0, len(self.labels)) if name == "proba" else (0,)) for name in self.outputs}
        rows: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for clip in clips:
            mel, lengths = self.windows(np.asarray(clip, dtype=np.float32).reshape(-1))
            for name, value in zip(self.outputs, self.session.run(None, {"mel": mel, "lengths": lengths})):
                rows[name].append(value)
        return {name: np.concatenate(values).astype(np.float64) for name, values in rows.items()}
