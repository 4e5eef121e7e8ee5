"""One configuration dialect: frozen dataclasses, read from YAML/TOML/JSON, overridden by dotted names.

>>> cfg = load_config(RunConfig, "run.yaml", overrides=["model.hidden=128", "train.lr=3e-4"])  # doctest: +SKIP
>>> fingerprint(cfg)            # runtime fields (threads, workers, device) left out            # doctest: +SKIP

A config is a frozen dataclass whose fields may be plain values, ``Optional``, ``tuple[...]``,
``list[...]``, ``dict`` (free-form options such as a model's), ``Literal`` or nested config
dataclasses. :func:`load_config` rejects unknown keys (naming the known ones) and values of the
wrong type when the file is read, as one-line :class:`~emolingua.errors.ConfigError` messages
that name the file (or the ``--set`` override) and the dotted key. Fields marked with
:func:`runtime` (threads, workers, device, where output goes) do not change the numbers and so
never enter :func:`fingerprint`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, TypeVar

from emolingua.errors import ConfigError, InputFileError

__all__ = ["build_config", "check_value", "fingerprint", "load_config", "parse_override", "read_config_file", "runtime", "to_dict"]

T = TypeVar("T")


def runtime(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field that does not change the numbers (threads, workers, batch size, device): never fingerprinted."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"runtime": True})


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@functools.lru_cache(maxsize=None)
def _yaml_loader() -> type:
    """PyYAML's safe loader, but reading ``3e-4`` as a number (YAML 1.2), not as text."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:float"]
                                      for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}  # fmt: skip
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."),
    )
    return Loader


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML, TOML or JSON file (by suffix; anything else is read as YAML)."""
    p = Path(path)
    if p.is_dir():
        raise InputFileError(f"{p}: is a folder, not a config file; give a .yaml, .toml or .json file")
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise InputFileError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{p}: cannot read the config ({_one_line(getattr(exc, 'strerror', None) or exc)})") from None
    import yaml

    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib  # Python 3.11+

            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:  # YAML (JSON is YAML too)
            data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a safe loader
    except ValueError as exc:  # json and tomllib errors
        raise ConfigError(f"{p}: not valid {suffix.lstrip('.').upper()} ({_one_line(exc)}); fix the syntax") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        why = getattr(exc, "problem", None) or exc
        raise ConfigError(f"{p}: not valid YAML ({_one_line(why)}{where}); fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a mapping of option: value, got {type(data).__name__}; "
                          "see the config.yaml written beside any report")  # fmt: skip
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", value)``, the value read as a YAML scalar or list (``3e-4``, ``[1,2]``, ``true``)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. -s seed=3 -s model_options.C=[0.1]")
    try:
        value = yaml.load(raw, Loader=_yaml_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text}: value not readable ({_one_line(getattr(exc, 'problem', None) or exc)}); "
                          "quote text, write lists as [a, b]") from None  # fmt: skip
    return key.strip(), value


# ---------------------------------------------------------------------------- types
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _config_class(tp: Any) -> type | None:
    """The config dataclass a field holds (also through ``Optional``), else None."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a) and isinstance(a, type)]
        return found[0] if len(found) == 1 else None
    return None


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or nothing" if type(None) in args else "")
    if origin in (tuple, list):
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _config_class(tp):
        return f"a mapping of {tp.__name__} options"
    if origin is dict or tp is dict:
        return "a mapping"
    return {int: "an integer", str: "a text", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _fit(value: Any, tp: Any) -> tuple[bool, Any]:
    """Whether ``value`` has the type ``tp``, and the value to store (lists become tuples for tuple fields)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, fitted = _fit(value, arg)
            if ok:
                return True, fitted
        return False, value
    if tp is type(None):
        return value is None, value
    if origin is Literal:
        return value in args, value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:  # an integer is a fine number; kept as is so that fingerprints do not change
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return True, str(value)  # `layers: 6` in YAML is an integer
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False, value
        if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):  # tuple[X, Y]: fixed length
            if len(value) != len(args):
                return False, value
            fitted = [_fit(v, a) for v, a in zip(value, args)]
        else:
            fitted = [_fit(v, args[0]) for v in value] if args else [(True, v) for v in value]
        if not all(ok for ok, _ in fitted):
            return False, value
        return True, (tuple if origin is tuple else list)(v for _, v in fitted)
    if origin is dict or tp is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return False, value
        if len(args) == 2 and args[1] is not Any:
            fitted = {k: _fit(v, args[1]) for k, v in value.items()}
            return all(ok for ok, _ in fitted.values()), {k: v for k, (_, v) in fitted.items()}
        return True, dict(value)
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value  # an annotation this checker does not know: the config's own business


def check_value(what: str, value: Any, tp: Any) -> Any:
    """``value`` if it has the type ``tp`` (lists become tuples for tuple fields), else one-line ConfigError.

    >>> check_value("mfcc option frame_stride", "abc", int)     # doctest: +SKIP
    ConfigError: mfcc option frame_stride='abc': expected an integer, got str
    """
    ok, fitted = _fit(value, tp)
    if not ok:
        raise ConfigError(f"{what}={value!r}: expected {_describe(tp)}, got {type(value).__name__}")
    return fitted


def _build(cls: type[T], data: dict[str, Any], *, where: Callable[[str], str], prefix: str = "") -> T:
    """``cls(**data)`` with unknown keys, missing keys and wrong types reported by dotted name."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    known = [prefix + name for name in sorted(fields)]
    if unknown := sorted(set(data) - set(fields)):
        raise ConfigError(f"{where(prefix + unknown[0])}: unknown config keys {[prefix + k for k in unknown]}; known: {known}")
    hints = _hints(cls)
    values = {}
    for name, value in data.items():
        key, tp = prefix + name, hints[name]
        sub = _config_class(tp)
        if sub is not None and isinstance(value, dict):
            values[name] = _build(sub, value, where=where, prefix=key + ".")
            continue
        ok, values[name] = _fit(value, tp)
        if not ok:
            raise ConfigError(f"{where(key)}: {key}: expected {_describe(tp)}, got {value!r}")
    missing = [prefix + n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # fmt: skip
    if missing:
        raise ConfigError(f"{where(missing[0])}: missing config keys {missing}; give them in the file or with -s KEY=VALUE")
    return cls(**values)


def _set(data: dict[str, Any], cls: type, key: str, value: Any, *, source: str) -> None:
    """Put ``value`` at the dotted ``key`` of ``data``, checking each step against ``cls``'s fields."""
    parts = key.split(".")
    node, current, prefix = data, cls, ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if current is not None:  # inside a config dataclass: the key must be one of its fields
            fields = {f.name for f in dataclasses.fields(current) if f.init}
            if part not in fields:
                raise ConfigError(f"{source}: unknown config keys {[prefix + part]}; known: {[prefix + n for n in sorted(fields)]}")
            tp = _hints(current)[part]
            sub = _config_class(tp)
            is_mapping = sub is not None or typing.get_origin(tp) is dict or tp is dict
            if not last and not is_mapping:
                raise ConfigError(f"{source}: {prefix + part} is {_describe(tp)}, not a mapping of options; "
                                  f"use -s {prefix + part}=VALUE")  # fmt: skip
            current = sub
        if last:
            node[part] = value
            return
        child = node.get(part)
        if dataclasses.is_dataclass(child) and not isinstance(child, type):
            child = to_dict(child, lists=False)
        elif not isinstance(child, dict):
            child = {}
        node[part] = child = dict(child)
        node, prefix = child, prefix + part + "."


def load_config(cls: type[T], path: str | os.PathLike | None = None, *, overrides: Iterable[str] = (),
                prepare: Callable[[dict[str, Any], Path], dict[str, Any]] | None = None, **values: Any) -> T:  # fmt: skip
    """A checked ``cls`` from a YAML/TOML/JSON file (or none), then ``values``, then dotted ``overrides``.

    ``overrides`` are ``"a.b=value"`` texts (the command line's ``-s``), reaching nested config
    dataclasses and ``dict`` fields; ``prepare(data, folder)`` may rewrite the file's own mapping
    (e.g. read relative paths against the file's folder). Unknown keys, missing keys and wrong
    types raise :class:`ConfigError` naming the file (or the override) and the dotted key.
    """
    where_file = str(path) if path is not None else "config"
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
        if prepare is not None:
            data = prepare(data, Path(path).absolute().parent)
    sources: dict[str, str] = {}
    for key, value in values.items():
        data[key] = value
    for text in overrides:
        key, value = parse_override(text)
        _set(data, cls, key, value, source=f"--set {text}")
        sources[key] = f"--set {text}"

    def where(key: str) -> str:
        """The override that set ``key`` (or an enclosing or enclosed key), else the file."""
        for k, s in reversed(sources.items()):
            if key == k or key.startswith(k + ".") or k.startswith(key + "."):
                return s
        return where_file

    return _build(cls, data, where=where)


def build_config(cls: type[T], values: dict[str, Any], *, what: str) -> T:
    """A checked ``cls`` from keyword values (a model's or an extractor's options), errors prefixed by ``what``.

    >>> build_config(LinearConfig, {"C": [0.1, 1]}, what="logreg")     # doctest: +SKIP
    """
    return _build(cls, dict(values), where=lambda key: what)


# ---------------------------------------------------------------------------- output
def _plain(value: Any, *, lists: bool) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value, lists=lists)
    if isinstance(value, dict):
        return {k: _plain(v, lists=lists) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and lists:
        return [_plain(v, lists=lists) for v in value]
    return copy.deepcopy(value)


def to_dict(cfg: Any, *, lists: bool = True) -> dict[str, Any]:
    """The config as plain data (nested configs as mappings; tuples as lists unless ``lists=False``): YAML/TOML ready."""
    return {f.name: _plain(getattr(cfg, f.name), lists=lists) for f in dataclasses.fields(cfg)}


def _identity(cfg: Any, exclude: set[str], prefix: str = "") -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        key, value = prefix + f.name, getattr(cfg, f.name)
        if f.metadata.get("runtime") or key in exclude:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[f.name] = _identity(value, exclude, key + ".")
        else:
            out[f.name] = _plain(value, lists=True)
    return out


def fingerprint(cfg: Any, *, exclude: Iterable[str] = ()) -> str:
    """sha256 (hex) of the config without its :func:`runtime` fields and the dotted names in ``exclude``."""
    blob = json.dumps(_identity(cfg, set(exclude)), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
