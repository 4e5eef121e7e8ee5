"""The one registry behind corpus readers, extractors and models; `emolingua models list`."""

from __future__ import annotations

import json
import sys
import types
import warnings
from importlib import metadata

import pytest
from typer.testing import CliRunner

from emolingua.cli import app
from emolingua.corpora import CorpusReader, get_reader, reader_names
from emolingua.corpora import base as corpora_base
from emolingua.errors import ConfigError, EmolinguaError, UnknownNameError
from emolingua.models import LogReg, get_model, model_names
from emolingua.models import _REGISTRY as MODELS
from emolingua.registry import Registry

runner = CliRunner()


class _Thing:
    pass


class _Other:
    pass


def _entry_points(monkeypatch, group: str, **targets: str) -> None:
    """Make ``group`` hold one entry point per ``name=module:attr`` (other groups stay empty)."""
    eps = [metadata.EntryPoint(name=name, value=value, group=group) for name, value in targets.items()]
    monkeypatch.setattr(metadata, "entry_points", lambda *, group: [ep for ep in eps if ep.group == group])


def _plugin_module(monkeypatch, name: str, **attrs: object) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


# ----------------------------------------------------------------------------- the helper
def test_duplicate_name_is_rejected_naming_both_classes():
    reg: Registry[object] = Registry("gadget", group="test.none")
    reg.register("a", _Thing)
    reg.register("a", _Thing)  # the same class again is harmless
    with pytest.raises(ConfigError, match=r"gadget 'a' is registered twice: by .*_Thing and by .*_Other"):
        reg.register("a", _Other)
    assert reg.get("a") is _Thing


def test_duplicate_reader_name_is_rejected_and_the_first_stays():
    with pytest.raises(ValueError, match="corpus 'emodb' is registered twice"):  # ConfigError is a ValueError

        class Impostor(CorpusReader):
            name = "emodb"
            language = "xx"

    assert get_reader("emodb").language == "de"


def test_failing_lookup_lists_the_known_names(monkeypatch):
    _entry_points(monkeypatch, "test.none")
    reg: Registry[object] = Registry("gadget", group="test.none")
    reg.register("zeta", _Thing)
    reg.register("alpha", _Other)
    with pytest.raises(UnknownNameError) as caught:
        reg.get("beta")
    assert isinstance(caught.value, EmolinguaError) and isinstance(caught.value, KeyError)
    assert str(caught.value) == "unknown gadget 'beta'; known gadgets: alpha, zeta"
    assert reg.names() == ["zeta", "alpha"]  # registration order
    assert reg.items() == [("zeta", _Thing), ("alpha", _Other)]


def test_unknown_model_and_corpus_list_their_names():
    with pytest.raises(UnknownNameError, match="unknown model 'xgboost'; known models: .*layer-weights.*logreg"):
        get_model("xgboost")
    with pytest.raises(UnknownNameError, match="unknown corpus 'nope'; known corpora: .*emodb"):
        get_reader("nope")


def test_an_entry_point_plugin_is_loaded_once_on_first_lookup(monkeypatch):
    class Widget:
        pass

    loads = []
    _plugin_module(monkeypatch, "emolingua_test_plugin", Widget=Widget)
    _entry_points(monkeypatch, "test.gadgets", widget="emolingua_test_plugin:Widget")
    real_load = metadata.EntryPoint.load
    monkeypatch.setattr(metadata.EntryPoint, "load", lambda ep: loads.append(ep.name) or real_load(ep))
    reg: Registry[object] = Registry("gadget", group="test.gadgets")
    assert not loads  # nothing is imported before someone asks
    assert reg.get("widget") is Widget
    assert "widget" in reg.names() and loads == ["widget"]


PLUGIN_MODEL = """
from dataclasses import dataclass
from emolingua.models import LinearConfig, LogReg

@dataclass(frozen=True)
class TunedConfig(LinearConfig):
    C: tuple[float, ...] = (0.1,)

class Tuned(LogReg):
    \"\"\"``test-tuned``: logistic regression with a shorter grid.\"\"\"

    name = "test-tuned"
    Config = TunedConfig
"""


def test_a_plugin_model_registers_itself_and_is_listed(monkeypatch, tmp_path):
    """The usual plugin: loading its entry point imports a module that defines a named Model."""
    (tmp_path / "emolingua_test_models.py").write_text(PLUGIN_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(MODELS, "_plugins_loaded", False)
    _entry_points(monkeypatch, "emolingua.models", tuned="emolingua_test_models:Tuned")
    try:
        assert model_names()[-1] == "test-tuned"  # registered once, under its own name
        assert get_model("test-tuned").config.C == (0.1,)
        result = runner.invoke(app, ["models", "list", "--json"])
        assert result.exit_code == 0, result.output
        tuned = next(r for r in json.loads(result.output) if r["name"] == "test-tuned")
        assert {"name": "C", "type": "tuple[float, ...]", "default": [0.1]} in tuned["options"]
        assert tuned["summary"] == "logistic regression with a shorter grid."
    finally:
        MODELS.pop("test-tuned")
        sys.modules.pop("emolingua_test_models", None)


def test_a_plugin_class_is_registered_under_its_entry_point_name(monkeypatch):
    class Yoruba(CorpusReader):  # no name: registers nothing by being defined
        language, language_name = "yo", "Yoruba"

    monkeypatch.setattr(corpora_base._REGISTRY, "_plugins_loaded", False)
    _plugin_module(monkeypatch, "emolingua_test_readers", Yoruba=Yoruba)
    _entry_points(monkeypatch, "emolingua.readers", yoruba="emolingua_test_readers:Yoruba")
    try:
        assert "yoruba" in reader_names()
        assert get_reader("yoruba").language == "yo"
    finally:
        corpora_base._REGISTRY.pop("yoruba")


def test_a_broken_plugin_is_a_warning_naming_it_and_the_rest_still_work(monkeypatch):
    _plugin_module(monkeypatch, "emolingua_test_fine", Fine=_Thing)
    _entry_points(monkeypatch, "test.gadgets", broken="emolingua_no_such_module:Thing", fine="emolingua_test_fine:Fine")
    reg: Registry[object] = Registry("gadget", group="test.gadgets")
    reg.register("builtin", _Other)
    with pytest.warns(RuntimeWarning, match=r"test.gadgets plugin 'broken' \(emolingua_no_such_module:Thing\) was not "
                                            r"loaded: ModuleNotFoundError"):  # fmt: skip
        names = reg.names()
    assert names == ["builtin", "fine"]
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        assert reg.names() == names
    assert not again  # plugins are read once, not on every lookup


def test_a_plugin_clashing_with_a_builtin_is_a_warning_not_a_crash(monkeypatch):
    _plugin_module(monkeypatch, "emolingua_test_clash", Clash=_Other)
    _entry_points(monkeypatch, "test.gadgets", thing="emolingua_test_clash:Clash")
    reg: Registry[object] = Registry("gadget", group="test.gadgets")
    reg.register("thing", _Thing)
    with pytest.warns(RuntimeWarning, match="plugin 'thing' .* registered twice"):
        assert reg.get("thing") is _Thing


def test_a_subclass_inheriting_a_name_does_not_replace_its_parent():
    class Variant(type(get_reader("emodb"))):
        language = "xx"

    assert get_reader("emodb").language == "de" and Variant.name == "emodb"


# ----------------------------------------------------------------------------- the command
def test_models_list_json_is_built_from_the_registry():
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == model_names()
    for row in rows:
        cls = MODELS.get(row["name"])
        options = {o["name"]: o["default"] for o in row["options"]}
        # every option is accepted by the model under that name, and the defaults are the config's
        model = get_model(row["name"], **{k: v for k, v in options.items()})
        assert model.config == cls.Config()
        assert row["task"] == cls.task and row["summary"]
    logreg = {o["name"]: o for o in next(r for r in rows if r["name"] == "logreg")["options"]}
    assert logreg["C"]["default"] == list(LogReg.Config().C) and logreg["stat"]["default"] == "all"


def test_models_list_table_shows_each_model_with_its_options():
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    for name in model_names():
        assert name in result.output
    assert 'normalise="train"' in result.output and "train.lr=0.001" in result.output
