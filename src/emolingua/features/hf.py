"""Self-supervised speech encoders through transformers: every hidden state, pooled over valid frames.

``hf:<hub id or local folder>`` loads wav2vec2, HuBERT, WavLM, data2vec-audio, XLS-R, UniSpeech(-SAT)
and the like (any model ``AutoModel`` loads whose input is the raw waveform, ``input_values``)
with its ``AutoFeatureExtractor``. A folder without ``preprocessor_config.json`` gets a plain
``Wav2Vec2FeatureExtractor`` (16 kHz, ``do_normalize`` from the model config if it says, else on
for models whose feature encoder uses layer norm, as fairseq trained them, off for group norm).

>>> ex = get_extractor("hf:/models/wavlm-base-plus", precision="int8")   # doctest: +SKIP
>>> ex.extract([samples])[0].pooled.shape    # (13 hidden states, 2 * 768)  # doctest: +SKIP

Streams are ``layer0`` (the input of the first transformer layer) .. ``layerL`` (the encoder's
output, after the final layer norm of "stable layer norm" models, as transformers 4.x returns
it). Each row of ``Features.pooled`` is the mean and standard deviation over the clip's valid
frames, side by side.

Long audio is cut into at most ``max_seconds_per_window`` long windows of equal length (the last
one may be a few samples shorter), each preprocessed (normalised) and encoded as a clip of its
own, and the statistics pooled over all windows' frames: nothing is dropped. Clips shorter
than the feature encoder's receptive field (400 samples for wav2vec2) are padded with silence to
give one frame.

Batching never changes the numbers (a batched result equals the one-at-a-time result up to float
rounding). Rule:

* Models whose feature encoder uses layer norm (``feat_extract_norm == "layer"``: WavLM,
  wav2vec2-large-lv60, XLS-R, HuBERT-large, UniSpeech-SAT) and whose transformers implementation
  honours the attention mask everywhere (model types in :data:`MASK_BATCHING_MODEL_TYPES`)
  batch clips of different lengths, zero-padded, with an attention mask.
* Every other model runs clips of identical length together and everything else one clip per
  pass: wav2vec2-base and HuBERT-base normalise their first convolution over time (group norm)
  and so see the padding; data2vec-audio and wav2vec2-conformer have convolutions after the
  feature encoder that leak padded frames into valid ones.
* ``precision="int8"`` (dynamic int8 quantisation of the Linear layers) runs one sequence per
  pass: its activation scales are per tensor, so a batch would couple its clips.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch

from emolingua.errors import ConfigError, InputFileError, NotAvailableError
from emolingua.features.base import ExtractorConfig, FeatureExtractor, Features, check_layers, runtime
from emolingua.fileio import file_sha256
from emolingua.system import limited_threads

__all__ = ["HFConfig", "HFExtractor", "MASK_BATCHING_MODEL_TYPES", "hub_reachable", "layer_features",
           "load_pretrained", "model_config", "model_folder", "quiet_loading"]  # fmt: skip

T = TypeVar("T")

SAMPLE_RATE = 16000

#: Model types whose transformers implementation gives the same valid frames with padding and an
#: attention mask as without (checked for feature encoders with layer norm; see the module docstring).
MASK_BATCHING_MODEL_TYPES = frozenset({"wav2vec2", "hubert", "wavlm", "unispeech", "unispeech-sat"})

#: Model types whose attention reads its projection weights as tensors
#: (``F.multi_head_attention_forward``): int8 leaves those Linear layers in fp32.
_ATTENTION_READS_WEIGHTS = frozenset({"wavlm"})

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class HFConfig(ExtractorConfig):
    """Options of the ``hf`` extractor.

    precision: ``fp32``, or ``int8`` (dynamic int8 quantisation of the Linear layers; one
        sequence per pass).
    max_seconds_per_window: longer audio is encoded in windows of at most this length.
    frame_layers: hidden states whose frame sequences are kept (float16), e.g. ``(6,)``.
    frame_stride: keep every n-th frame of those sequences.
    normalize: override the feature extractor's ``do_normalize`` (``None``: as it says).
    revision: hub revision (branch, tag or commit) for hub ids; ignored for folders.
    batch_seconds: runtime: at most this much padded audio (batch x longest) per forward pass.
    """

    precision: str = "fp32"
    max_seconds_per_window: float = 30.0
    frame_layers: tuple[int, ...] = ()
    frame_stride: int = 1
    normalize: bool | None = None
    revision: str | None = None
    batch_seconds: float = runtime(60.0)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "int8"):
            raise ConfigError(f"precision={self.precision!r}: must be fp32 or int8")
        if not self.max_seconds_per_window > 0:
            raise ConfigError(f"max_seconds_per_window={self.max_seconds_per_window!r}: must be > 0")
        if self.frame_stride < 1:
            raise ConfigError(f"frame_stride={self.frame_stride!r}: must be >= 1")
        if not self.batch_seconds > 0:
            raise ConfigError(f"batch_seconds={self.batch_seconds!r}: must be > 0")
        object.__setattr__(self, "frame_layers", tuple(int(x) for x in self.frame_layers))


# -- models from a folder or the Hugging Face hub, offline first ------------------------------------


def model_folder(argument: str, *, who: str) -> Path | None:
    """The folder ``argument`` names, or ``None`` for a hub id; :class:`InputFileError` for a missing folder."""
    path = Path(argument).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or argument.startswith((".", "~")) or path.exists() or argument.count("/") > 1:
        raise InputFileError(f"{who}: no model folder at {argument}: give an existing folder holding config.json")
    return None


def _offline_message(who: str, repo_id: str, family: str) -> str:
    return (f"{who}: the model {repo_id!r} is not available offline (not in the local Hugging Face cache) and the "
            f"hub cannot be reached; download it once with network access, or pass a local folder: "
            f"{family}:/path/to/folder")  # fmt: skip


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_reachable(*, timeout: float = 3.0) -> bool:
    """Whether the hub may be asked: not in offline mode and its host (or proxy) answers within ``timeout`` s.

    huggingface_hub retries an unreachable host for about 25 s; a TCP connect bounded by a
    thread is the quick answer.
    """
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return False
    from huggingface_hub import constants

    url = urllib.parse.urlparse(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(url.scheme)
    target = urllib.parse.urlparse(proxy) if proxy else url
    return _connects(target.hostname or "", target.port or (443 if target.scheme == "https" else 80), timeout)


@functools.lru_cache(maxsize=None)
def _connects(host: str, port: int, timeout: float) -> bool:
    answered: list[bool] = []

    def probe() -> None:  # name resolution has no timeout of its own: the thread bounds it
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """While loading a model: no "Loading weights" bars, info logs or deprecation warnings from transformers."""
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as tf_logging

    verbosity, bars = tf_logging.get_verbosity(), tf_logging.is_progress_bar_enabled()
    hub_bars = not hub_utils.are_progress_bars_disabled()
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantiz.*deprecated.*")
            yield
    finally:
        tf_logging.set_verbosity(verbosity)
        if bars:
            tf_logging.enable_progress_bar()
        if hub_bars:
            hub_utils.enable_progress_bars()


def load_pretrained(load: Callable[..., T], source: str, *, hub: bool, who: str, family: str, **kwargs: Any) -> T:
    """``load(source, **kwargs)`` quietly; for a hub id the local cache first, the network only if it answers."""
    with quiet_loading():
        if not hub:
            return load(source, **kwargs)
        try:
            return load(source, local_files_only=True, **kwargs)
        except OSError as exc:
            if not hub_reachable():
                raise NotAvailableError(_offline_message(who, source, family)) from exc
        try:
            return load(source, **kwargs)
        except OSError as exc:
            raise NotAvailableError(f"{who}: {source!r} could not be had from the Hugging Face hub ({exc}); "
                                    f"check the id, or pass a local folder: {family}:/path/to/folder") from exc  # fmt: skip


def _hub_config_file(repo_id: str, revision: str | None, *, who: str, family: str) -> Path:
    from huggingface_hub import hf_hub_download

    return load_pretrained(functools.partial(hf_hub_download, filename="config.json", revision=revision), repo_id,
                           hub=True, who=who, family=family)  # fmt: skip


def model_config(argument: str, *, revision: str | None = None, who: str, family: str) -> dict[str, Any]:
    """The model's ``config.json`` (from the folder, or the hub cache), read without loading weights."""
    folder = model_folder(argument, who=who)
    path = folder / "config.json" if folder is not None else _hub_config_file(argument, revision, who=who, family=family)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{who}: no config.json in {folder}: give a folder saved by save_pretrained") from None
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{who}: cannot read {path}: {exc}") from None


class HFExtractor(FeatureExtractor):
    """``hf:<hub id or local folder>``: wav2vec2-family encoders through transformers."""

    name = "hf"
    takes_argument = True
    Config = HFConfig
    config: HFConfig

    def __init__(self, argument: str | None = None, **options: Any) -> None:
        super().__init__(argument, **options)
        self._model: torch.nn.Module | None = None
        self._model_config: Any = None
        self._fe: Any = None
        self._identity: dict[str, Any] | None = None

    # -- where the model lives ----------------------------------------------------------------------
    def _local_dir(self) -> Path | None:
        """The folder the argument names, or ``None`` for a hub id."""
        assert self.argument is not None
        return model_folder(self.argument, who=self.spec)

    def _source(self) -> tuple[str, dict[str, Any]]:
        local = self._local_dir()
        if local is not None:
            return str(local), {}
        return str(self.argument), ({"revision": self.config.revision} if self.config.revision else {})

    def _from_pretrained(self, load: Callable[..., T]) -> T:
        source, kw = self._source()
        return load_pretrained(load, source, hub=self._local_dir() is None, who=self.spec, family=self.name, **kw)

    def check_options(self) -> None:
        """Read config.json (folder or hub cache) to check ``frame_layers``; a missing model fails here."""
        assert self.argument is not None
        cfg = model_config(self.argument, revision=self.config.revision, who=self.spec, family=self.name)
        n_layers = cfg.get("num_hidden_layers")
        if isinstance(n_layers, int):
            check_layers("frame_layers", self.config.frame_layers, n_layers + 1, who=self.spec)

    # -- loading ------------------------------------------------------------------------------------
    def _load_config(self) -> Any:
        if self._model_config is None:
            from transformers import AutoConfig

            self._model_config = self._from_pretrained(AutoConfig.from_pretrained)
        return self._model_config

    def _load(self) -> torch.nn.Module:
        if self._model is None:
            from transformers import AutoModel

            model = self._from_pretrained(AutoModel.from_pretrained)
            if getattr(model, "main_input_name", "input_values") != "input_values":
                raise ConfigError(
                    f"{self.spec}: a {type(model).__name__} does not take the raw waveform (input_values); "
                    "use a wav2vec2-family model (for Whisper: whisper:<hub id or folder>)"
                )
            model = model.float().eval()
            if getattr(model, "adapter", None) is not None:  # we want the encoder's states, not the adapter's
                model.adapter = None
            self._model_config = model.config
            self._fe = self._load_feature_extractor(model.config)
            if self.config.precision == "int8":
                model = _quantize(model)
            self._model = model
        return self._model

    def _load_feature_extractor(self, model_config: Any) -> Any:
        from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor

        local = self._local_dir()
        fe = None
        if local is None or (local / "preprocessor_config.json").is_file():
            try:
                fe = self._from_pretrained(AutoFeatureExtractor.from_pretrained)
            except OSError:  # a hub model without preprocessor_config.json gets the fallback below
                if local is not None:
                    raise
        if fe is None:
            layer_norm = getattr(model_config, "feat_extract_norm", "layer") == "layer"
            fe = Wav2Vec2FeatureExtractor(
                feature_size=1,
                sampling_rate=SAMPLE_RATE,
                padding_value=0.0,
                do_normalize=bool(getattr(model_config, "do_normalize", layer_norm)),
                return_attention_mask=layer_norm,
            )
        if self.config.normalize is not None:
            if not hasattr(fe, "do_normalize"):
                raise ConfigError(f"{self.spec} option normalize: its feature extractor has no do_normalize")
            fe.do_normalize = self.config.normalize
        rate = getattr(fe, "sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ConfigError(f"{self.spec}: the model expects {rate} Hz audio; only {SAMPLE_RATE} Hz is supported")
        return fe

    # -- identity -----------------------------------------------------------------------------------
    def model_identity(self) -> dict[str, Any]:
        """``files_sha256`` (weights and configs) for a folder; ``hub_id`` and resolved ``revision`` otherwise."""
        if self._identity is None:
            local = self._local_dir()
            if local is not None:
                self._identity = {"files_sha256": _folder_digests(local)}
            else:
                commit = _hub_commit(str(self.argument), self.config.revision, who=self.spec)
                self._identity = {"hub_id": self.argument, "revision": commit}
        return self._identity

    # -- streams ------------------------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        return int(self._load_config().num_hidden_layers) + 1

    @property
    def streams(self) -> list[str]:
        return [f"layer{i}" for i in range(self.n_states)]

    @property
    def batches_with_mask(self) -> bool:
        """Whether clips of different lengths may share a forward pass (see the module docstring)."""
        cfg = self._load_config()
        return cfg.model_type in MASK_BATCHING_MODEL_TYPES and getattr(cfg, "feat_extract_norm", None) == "layer"

    def n_frames(self, n_samples: int) -> int | None:
        """Valid output frames for ``n_samples`` input samples (``None``: the model cannot tell)."""
        model = self._load()
        fn = getattr(model, "_get_feat_extract_output_lengths", None)
        if fn is None:
            return None
        try:
            out = fn(torch.tensor(n_samples), add_adapter=False)
        except TypeError:
            out = fn(torch.tensor(n_samples))
        return int(out)

    def _min_samples(self) -> int:
        """The feature encoder's receptive field: the shortest input that gives one frame."""
        cfg = self._load_config()
        kernels, strides = getattr(cfg, "conv_kernel", None), getattr(cfg, "conv_stride", None)
        if not kernels or not strides:
            return 400
        r = 1
        for k, s in reversed(list(zip(kernels, strides))):
            r = (r - 1) * s + k
        return int(r)

    # -- the public call ----------------------------------------------------------------------------
    def extract(self, clips: Sequence[np.ndarray]) -> list[Features]:
        with limited_threads(self.config.threads):  # the caller's thread count is left as it was
            return self._extract(clips)

    def _extract(self, clips: Sequence[np.ndarray]) -> list[Features]:
        cfg = self.config
        if len(clips) == 0:
            return []
        self._load()
        min_len = self._min_samples()
        max_len = max(int(cfg.max_seconds_per_window * SAMPLE_RATE), min_len)
        # every window preprocessed on its own: (clip index, input values)
        pieces: list[tuple[int, np.ndarray]] = []
        for ci, clip in enumerate(clips):
            clip = np.asarray(clip, dtype=np.float32).reshape(-1)
            for start, stop in _windows(len(clip), max_len):
                piece = clip[start:stop]
                if len(piece) < min_len:
                    piece = np.pad(piece, (0, min_len - len(piece)))
                pieces.append((ci, self._preprocess(piece)))
        per_clip: list[list[list[torch.Tensor]]] = [[] for _ in clips]
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]))
        for group in self._groups([len(pieces[i][1]) for i in order]):
            idx = [order[g] for g in group]
            for i, states in zip(idx, self._encode([pieces[i][1] for i in idx])):
                per_clip[pieces[i][0]].append(states)
        return [self._features(windows) for windows in per_clip]

    def _preprocess(self, piece: np.ndarray) -> np.ndarray:
        out = self._fe(piece, sampling_rate=SAMPLE_RATE, return_tensors="np")
        if "input_values" not in out:
            raise ValueError(f"hf: the feature extractor of {self.argument!r} gives no input_values")
        return np.asarray(out["input_values"][0], dtype=np.float32).reshape(-1)

    def _groups(self, lengths: list[int]) -> list[list[int]]:
        """Consecutive groups of the sorted ``lengths`` that may share a forward pass."""
        budget = self.config.batch_seconds * SAMPLE_RATE
        single = self.config.precision == "int8"
        masked = self.batches_with_mask
        groups: list[list[int]] = []
        current: list[int] = []
        for i, n in enumerate(lengths):
            if current and (
                single or (not masked and n != lengths[current[0]]) or n * (len(current) + 1) > budget
            ):
                groups.append(current)
                current = []
            current.append(i)
        if current:
            groups.append(current)
        return groups

    @torch.inference_mode()
    def _encode(self, inputs: list[np.ndarray]) -> list[list[torch.Tensor]]:
        """Hidden states of each input: per input a list of (valid frames, hidden) tensors."""
        model = self._load()
        lengths = [len(x) for x in inputs]
        batch = torch.zeros(len(inputs), max(lengths))
        mask = torch.zeros(len(inputs), max(lengths), dtype=torch.long)
        for b, x in enumerate(inputs):
            batch[b, : len(x)] = torch.from_numpy(x)
            mask[b, : len(x)] = 1
        kwargs: dict[str, Any] = {"attention_mask": mask} if self.batches_with_mask else {}
        with warnings.catch_warnings():
            # WavLM hands torch a bool padding mask and a float position bias
            warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask.*")
            out = model(batch, output_hidden_states=True, return_dict=True, **kwargs)
        states = list(out.hidden_states)
        if out.last_hidden_state.shape == states[-1].shape:  # after the final layer norm (transformers 5
            states[-1] = out.last_hidden_state  # records the last layer's output before it)
        result = []
        for b, n in enumerate(lengths):
            valid = self.n_frames(n)
            if valid is None:  # only without padding: every frame is valid
                valid = states[0].shape[1]
            result.append([s[b, :valid] for s in states])
        return result

    def _features(self, windows: list[list[torch.Tensor]]) -> Features:
        return layer_features(windows, frame_layers=self.config.frame_layers, frame_stride=self.config.frame_stride)


def layer_features(windows: list[list[torch.Tensor]], *, frame_layers: Sequence[int], frame_stride: int) -> Features:
    """Mean and standard deviation (float64) over every window's frames of each hidden state; kept frames in float16.

    ``windows``: per window of one clip, its hidden states as (frames, dim) tensors.
    """
    pooled, frames = [], {}
    for i in range(len(windows[0])):
        states = torch.cat([w[i] for w in windows]).double()
        mean = states.mean(0)
        # two passes: as exact as torch.std in float64, and several times faster over the first axis
        pooled.append(torch.cat([mean, (states - mean).square().mean(0).sqrt()]))
        if i in frame_layers:
            frames[f"layer{i}"] = states[::frame_stride].to(torch.float16).numpy()
    return Features(pooled=torch.stack(pooled).float().numpy(), frames=frames or None)


def _windows(n: int, max_len: int) -> list[tuple[int, int]]:
    """(start, stop) of at most ``max_len`` long windows of equal length (the last a little shorter)."""
    if n <= max_len:
        return [(0, n)]
    length = math.ceil(n / math.ceil(n / max_len))
    return [(start, min(start + length, n)) for start in range(0, n, length)]


def _quantize(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of the Linear layers (not those whose weights are read as tensors)."""
    spec: Any = {torch.nn.Linear}
    if getattr(model.config, "model_type", None) in _ATTENTION_READS_WEIGHTS:
        skip = {name for name, m in model.named_modules() if type(m).__name__.endswith("Attention")}
        spec = {
            name
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and name.rpartition(".")[0] not in skip
        }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantiz.*deprecated.*")
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def _sha256(path: Path) -> str:
    """The file's sha256, cached by (path, size, mtime); a hub blob named by its sha256 is not read."""
    real = path.resolve()
    if len(real.name) == 64 and all(c in "0123456789abcdef" for c in real.name):
        return real.name  # huggingface_hub stores LFS files under their sha256
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = file_sha256(real)
    return _HASH_CACHE[key]


def _folder_digests(folder: Path) -> dict[str, str]:
    """sha256 of the weight files transformers would load (safetensors before bin) and of the configs."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    weights = [p for p in files if p.suffix == ".safetensors"]
    if not weights:
        weights = [p for p in files if p.suffix == ".bin" and p.name.startswith("pytorch_model")]
    if not weights:
        raise InputFileError(f"hf: no weights in {folder}: expected *.safetensors or pytorch_model*.bin")
    configs = [p for p in files if p.name in ("config.json", "preprocessor_config.json")]
    return {p.name: _sha256(p) for p in weights + configs}


def _hub_commit(repo_id: str, revision: str | None, *, who: str) -> str:
    """The commit a hub revision resolves to (from the local cache when offline)."""
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    path = _hub_config_file(repo_id, revision, who=who, family="hf")
    if path.parent.parent.name == "snapshots":
        return path.parent.name
    return revision or "main"
