"""One configuration dialect: frozen dataclasses read from YAML/TOML, dotted overrides, runtime fields unfingerprinted."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import pytest
from typer.testing import CliRunner

from emolingua.benchmark import BenchmarkConfig
from emolingua.config import fingerprint, load_config, runtime, to_dict
from emolingua.errors import ConfigError


@dataclass(frozen=True)
class Model:
    hidden: int = 64
    dropout: float = 0.1
    kind: Literal["mlp", "gru"] = "mlp"


@dataclass(frozen=True)
class Train:
    lr: float = 1e-3
    epochs: int = 10
    device: str = runtime("cpu")
    workers: int = runtime(1)


@dataclass(frozen=True)
class Run:
    name: str
    model: Model = field(default_factory=Model)
    train: Train = field(default_factory=Train)
    options: dict[str, Any] = field(default_factory=dict)
    layers: tuple[int, ...] = (0,)
    note: Optional[str] = None
    threads: int | None = runtime(None)


def test_dotted_overrides_reach_nested_dataclasses_and_dict_fields():
    cfg = load_config(Run, name="r", overrides=["model.hidden=128", "train.lr=3e-4", "options.C=[0.1, 1]",
                                                "options.precision=fp32", "layers=[1,2]", "model.kind=gru"])  # fmt: skip
    assert cfg.model == Model(hidden=128, kind="gru") and cfg.train.lr == 3e-4 and cfg.train.epochs == 10
    assert cfg.options == {"C": [0.1, 1], "precision": "fp32"} and cfg.layers == (1, 2)


def test_overrides_win_over_the_file_and_keep_its_other_nested_values(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: r\nmodel: {hidden: 32, dropout: 0.5}\noptions: {C: [1.0], max_iter: 50}\n")
    cfg = load_config(Run, path, overrides=["model.hidden=128", "options.C=[0.1]"])
    assert cfg.model == Model(hidden=128, dropout=0.5) and cfg.options == {"C": [0.1], "max_iter": 50}


@pytest.mark.parametrize("text, match", [
    ("name: r\nmodle: {hidden: 3}\n", r"run.yaml: unknown config keys \['modle'\]; known: \['layers', 'model', "),
    ("name: r\nmodel: {hiden: 3}\n", r"run.yaml: unknown config keys \['model.hiden'\]; known: \['model.dropout', "
                                     r"'model.hidden', 'model.kind'\]"),
    ("name: r\nmodel: {hidden: many}\n", r"run.yaml: model.hidden: expected an integer, got 'many'"),
    ("name: r\nmodel: {kind: lstm}\n", r"run.yaml: model.kind: expected one of 'mlp', 'gru', got 'lstm'"),
    ("name: r\ntrain: {lr: fast}\n", r"run.yaml: train.lr: expected a number, got 'fast'"),
    ("name: r\nlayers: 3\n", r"run.yaml: layers: expected a list of integers, got 3"),
    ("name: r\noptions: [1]\n", r"run.yaml: options: expected a mapping, got \[1\]"),
    ("name: r\nmodel: 3\n", r"run.yaml: model: expected a mapping of Model options, got 3"),
    ("model: {hidden: 3}\n", r"run.yaml: missing config keys \['name'\]"),
])  # fmt: skip
def test_a_file_with_wrong_types_or_unknown_keys_is_rejected_naming_the_key(tmp_path, text, match):
    (tmp_path / "run.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(Run, tmp_path / "run.yaml")


@pytest.mark.parametrize("override, match", [
    ("model.hiden=3", r"--set model.hiden=3: unknown config keys \['model.hiden'\]; known: \['model.dropout', "),
    ("trian.lr=3", r"--set trian.lr=3: unknown config keys \['trian'\]; known: \['layers', 'model', 'name', "),
    ("model.hidden=3.5", r"--set model.hidden=3.5: model.hidden: expected an integer, got 3.5"),
    ("name.first=x", r"--set name.first=x: name is a text, not a mapping"),
    ("threads", r"--set 'threads': expected KEY=VALUE"),
])  # fmt: skip
def test_a_bad_override_names_itself_and_the_known_keys(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(Run, name="r", overrides=[override])


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_round_trip_through_a_file(tmp_path, suffix):
    import json
    import tomllib

    cfg = Run(name="r", model=Model(hidden=7, kind="gru"), train=Train(lr=3e-4), options={"C": [0.5]},
              layers=(2, 3), threads=4)  # fmt: skip
    data = to_dict(cfg)
    data.pop("note")  # TOML has no null
    path = tmp_path / f"run{suffix}"
    if suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(data))
    elif suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        lines = [f"name = {json.dumps(data['name'])}", f"layers = {data['layers']}", f"threads = {data['threads']}",
                 "[model]", *[f"{k} = {json.dumps(v)}" for k, v in data["model"].items()],
                 "[train]", *[f"{k} = {json.dumps(v)}" for k, v in data["train"].items()],
                 "[options]", "C = [0.5]"]  # fmt: skip
        path.write_text("\n".join(lines) + "\n")
        assert tomllib.loads(path.read_text())["train"]["lr"] == 3e-4
    assert load_config(Run, path) == cfg


def test_runtime_fields_stay_out_of_the_fingerprint():
    cfg = Run(name="r")
    same = dataclasses.replace(cfg, threads=8, train=dataclasses.replace(cfg.train, device="cuda", workers=4))
    assert fingerprint(same) == fingerprint(cfg)
    assert fingerprint(dataclasses.replace(cfg, train=Train(lr=0.1))) != fingerprint(cfg)
    assert fingerprint(dataclasses.replace(cfg, note="x"), exclude=["note"]) == fingerprint(cfg, exclude=["note"])
    bench = BenchmarkConfig(corpora="c", output="o1")
    moved = dataclasses.replace(bench, output="o2", store="s", workers=2, threads=3)
    assert fingerprint(moved) == fingerprint(bench)
    assert fingerprint(dataclasses.replace(bench, seed=1)) != fingerprint(bench)


def test_the_extractors_runtime_marker_is_the_same_one():
    from emolingua.features.base import runtime as features_runtime

    assert features_runtime is runtime


def test_benchmark_config_from_file_with_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("corpora: data\noutput: out\nmodel_options: {max_iter: 50}\n")
    cfg = BenchmarkConfig.from_file(tmp_path / "c.yaml", seed=None, overrides=["protocol=speaker-kfold:3",
                                                                               "model_options.C=[0.1]", "seed=3"])  # fmt: skip
    assert cfg.corpora == str(tmp_path / "data") and cfg.protocol == "speaker-kfold:3" and cfg.seed == 3
    assert cfg.model_options == {"max_iter": 50, "C": [0.1]}


# ---------------------------------------------------------------------------- the command line
runner = CliRunner()


def _stop_before_work(monkeypatch) -> list[BenchmarkConfig]:
    import emolingua.benchmark as bm

    seen: list[BenchmarkConfig] = []

    def fake_run(cfg, **kw):
        seen.append(cfg)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(bm, "run_benchmark", fake_run)
    monkeypatch.setattr(bm, "scan_corpora", lambda **kw: pytest.fail("scanned"))
    return seen


def test_cli_set_overrides_any_field_on_top_of_config_and_flags(tmp_path, monkeypatch):
    from emolingua.cli import app

    seen = _stop_before_work(monkeypatch)
    (tmp_path / "c.yaml").write_text("corpora: data\noutput: out\nseed: 1\n")
    res = runner.invoke(app, ["benchmark", "--config", str(tmp_path / "c.yaml"), "--seed", "2", "--model", "mlp",
                              "-s", "protocol=speaker-kfold:3", "-s", "model_options.C=[0.1]", "-s", "seed=3",
                              "--set", "feature_options.precision=fp32"])  # fmt: skip
    assert res.exit_code == 2 and "stopped by the test" in res.stderr
    (cfg,) = seen
    assert (cfg.protocol, cfg.seed, cfg.model) == ("speaker-kfold:3", 3, "mlp")
    assert cfg.model_options == {"C": [0.1]} and cfg.feature_options == {"precision": "fp32"}
    seen.clear()
    res = runner.invoke(app, ["benchmark", "-s", f"corpora={tmp_path}", "-s", "output=o", "-s", "workers=2"])
    assert seen[0].corpora == str(tmp_path) and seen[0].workers == 2


def test_cli_misspelt_key_fails_before_any_work_naming_the_known_keys(tmp_path, monkeypatch):
    from emolingua.cli import app

    seen = _stop_before_work(monkeypatch)
    res = runner.invoke(app, ["benchmark", "--corpora", str(tmp_path), "--output", str(tmp_path / "o"),
                              "-s", "protcol=loso"])  # fmt: skip
    assert res.exit_code == 2 and not seen and "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --set protcol=loso: unknown config keys ['protcol']")
    assert "known: ['corpora', 'drop_labels', 'emobox_reference', 'executor', 'feature_options'" in lines[0]
