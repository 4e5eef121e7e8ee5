"""Every ordinary mistake is one line, ``error: <what>: <why>``, on stderr, with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import emolingua
from emolingua.cli import app

runner = CliRunner()
SRC = Path(emolingua.__file__).resolve().parents[1]  # the console script runs the code under test


def _one_error_line(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and len(lines) == 1, res.stderr
    return errors[0]


@pytest.fixture
def files(tmp_path, tone):
    (tmp_path / "random.parquet").write_bytes(os.urandom(400))
    (tmp_path / "manifest.txt").write_text("path\na.wav\n")
    (tmp_path / "nopath.csv").write_text("file,label\na.wav,angry\n")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "empty-root").mkdir()
    tone(tmp_path / "clip.wav")
    (tmp_path / "good.csv").write_text(f"path,duration\n{tmp_path / 'clip.wav'},0.2\n")
    return tmp_path


MANIFESTS = {"missing.parquet": "no such file", "random.parquet": "not a Parquet file",
             "manifest.txt": "unknown manifest format", "nopath.csv": "no 'path' column", "empty-root": "is a folder"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_features_extract_with_a_bad_manifest(files, name):
    line = _one_error_line(runner.invoke(app, ["features", "extract", str(files / name), "-e", "mfcc",
                                               "--store", str(files / "store")]))  # fmt: skip
    assert name in line and MANIFESTS[name] in line


@pytest.mark.parametrize("name", ["missing.parquet", "random.parquet", "manifest.txt", "nopath.csv"])
def test_benchmark_with_a_bad_manifest(files, name):
    line = _one_error_line(runner.invoke(app, ["benchmark", "--corpora", str(files / name), "--output", str(files / "o"),
                                               "--features", "mfcc", "--store", str(files / "store")]))  # fmt: skip
    assert name in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_manifest(files):
    (files / "good.csv").chmod(0)
    line = _one_error_line(runner.invoke(app, ["features", "extract", str(files / "good.csv"), "-e", "mfcc"]))
    assert "good.csv" in line


def test_features_extract_into_a_store_that_is_not_writable_computes_nothing(files):
    line = _one_error_line(runner.invoke(app, ["features", "extract", str(files / "good.csv"), "-e", "mfcc",
                                               "--store", str(files / "a-file" / "store")]))  # fmt: skip
    assert line.startswith(f"error: feature store {files / 'a-file' / 'store'}: not writable")


def test_features_extract_bad_extractor_and_workers(files):
    base = ["features", "extract", str(files / "good.csv"), "--store", str(files / "store")]
    assert "unknown extractor" in _one_error_line(runner.invoke(app, [*base, "-e", "nope"]))
    assert "unknown option colour" in _one_error_line(runner.invoke(app, [*base, "-e", "mfcc", "-O", "colour=red"]))
    assert "--workers 0: must be at least 1" in _one_error_line(runner.invoke(app, [*base, "-e", "mfcc", "--workers", "0"]))
    assert not (files / "store").exists() or not any((files / "store").rglob("*.npz"))


BENCHMARK = {
    ("--protocol", "nope"): "protocol 'nope': unknown",
    ("--model", "forest"): "model 'forest': unknown",
    ("--features", "nope"): "unknown extractor 'nope'",
    ("--layers", "top"): "layers 'top': unknown",
    ("--normalise", "zz"): "normalise 'zz': unknown",
    ("--seed", "-1"): "seed -1: must be at least 0",
    ("--workers", "0"): "workers 0: must be at least 1",
    ("--threads", "0"): "threads 0: must be at least 1",
    ("--corpus", "nosuch"): "no supported corpus found",  # the empty root is reported first
}


@pytest.mark.parametrize("option", sorted(BENCHMARK))
def test_benchmark_bad_option(files, option):
    args = ["benchmark", "--corpora", str(files / "empty-root"), "--output", str(files / "o"), "--store",
            str(files / "store"), "--features", "mfcc", *option]  # fmt: skip
    assert BENCHMARK[option] in _one_error_line(runner.invoke(app, args))


def test_benchmark_output_not_writable_and_missing_options(files):
    args = ["benchmark", "--corpora", str(files / "empty-root"), "--features", "mfcc"]
    line = _one_error_line(runner.invoke(app, [*args, "--output", str(files / "a-file" / "o")]))
    assert "output" in line and "not writable" in line
    assert "--corpora and --output" in _one_error_line(runner.invoke(app, ["benchmark"]))


def test_benchmark_unknown_corpus_names_the_corpora_there(tmp_path, tone):
    for stem in ("03a01Wa", "08b10Fb"):
        tone(tmp_path / "data" / "emodb" / "wav" / f"{stem}.wav")
    line = _one_error_line(runner.invoke(app, ["benchmark", "--corpora", str(tmp_path / "data"), "--output",
                                               str(tmp_path / "o"), "--features", "mfcc", "--corpus", "nosuch"]))  # fmt: skip
    assert "nosuch" in line and "corpora there: emodb" in line


CONFIGS = {"syntax.yaml": ("corpora: [x\n", "not valid YAML"), "list.yaml": ("- a\n- b\n", "must be a mapping"),
           "seed.yaml": ("corpora: x\noutput: y\nseed: abc\n", "seed: expected an integer, got 'abc'"),
           "keys.yaml": ("corpora: x\noutput: y\nprotcol: loso\n", "unknown config keys")}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_benchmark_bad_config(tmp_path, name):
    text, why = CONFIGS[name]
    (tmp_path / name).write_text(text)
    line = _one_error_line(runner.invoke(app, ["benchmark", "--config", str(tmp_path / name)]))
    assert name in line and why in line


def test_benchmark_config_is_a_folder(tmp_path):
    assert "is a folder" in _one_error_line(runner.invoke(app, ["benchmark", "--config", str(tmp_path)]))


def test_features_list_on_a_damaged_store(tmp_path):
    folder = tmp_path / "store" / "0123456789abcdef"
    (folder / "shards").mkdir(parents=True)
    (folder / "extractor.json").write_text('{"spec": "mfcc", "opt')  # a half-written file
    res = runner.invoke(app, ["features", "list", "--store", str(tmp_path / "store")])
    assert "Traceback" not in res.output
    # the damage is listed, not raised
    assert res.exit_code == 0 and "damaged: 0123456789abcdef" in res.stderr and "extractor.json" in res.stderr


def test_debug_shows_the_traceback_instead(tmp_path, monkeypatch):
    from emolingua.errors import InputFileError

    res = runner.invoke(app, ["--debug", "benchmark", "--config", str(tmp_path)])
    assert isinstance(res.exception, InputFileError)
    monkeypatch.setenv("EMOLINGUA_DEBUG", "1")
    assert isinstance(runner.invoke(app, ["benchmark", "--config", str(tmp_path)]).exception, InputFileError)


def test_a_programming_error_is_not_hidden(monkeypatch, tmp_path):
    import emolingua.benchmark as bm

    monkeypatch.setattr(bm.BenchmarkConfig, "from_file", classmethod(lambda cls, *a, **k: 1 / 0))
    res = runner.invoke(app, ["benchmark", "--config", str(tmp_path)])
    assert isinstance(res.exception, ZeroDivisionError)


def _run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "80"}
    env.pop("EMOLINGUA_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "emolingua", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_console_script_prints_one_unwrapped_line_to_a_pipe(tmp_path):
    long = tmp_path / ("a-rather-long-folder-name-" * 4) / "manifest-that-is-not-there.parquet"
    res = _run("features", "extract", str(long), "-e", "mfcc", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"error: {long}: no such file") and len(line) > 200
    debug = _run("--debug", "features", "extract", str(long), "-e", "mfcc", cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_benchmark_table_to_a_pipe_is_not_wrapped(tmp_path, tone):
    for i, spk in enumerate(("03", "08", "09", "10")):
        for j, stem in enumerate(("a01W", "b02W", "a01N", "b02N", "a02W", "a02N")):
            tone(tmp_path / "data" / "emodb" / "wav" / f"{spk}{stem}a.wav", seed=10 * i + j)
    res = runner.invoke(app, ["benchmark", "--corpora", str(tmp_path / "data"), "--output", str(tmp_path / "o"),
                              "--features", "mfcc", "--store", str(tmp_path / "store"), "--model-option", "C=[0.1]"])  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = [ln for ln in res.stdout.splitlines() if ln.startswith("| emodb |")]
    assert row in (tmp_path / "o" / "report.md").read_text().splitlines() and len(row) > 80
    assert json.loads((tmp_path / "o" / "results.json").read_text())["jobs"] == {"total": 4, "reused": 0, "computed": 4,
                                                                              "skipped": 0}  # fmt: skip


def test_other_libraries_are_quiet_unless_debug(monkeypatch):
    import warnings

    quiet = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_", "TRANSFORMERS_", "PYTHONWARNINGS"))}
    monkeypatch.setattr(os, "environ", quiet)
    assert runner.invoke(app, ["corpora", "taxonomy", "--json"]).exit_code == 0
    assert quiet["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and quiet["TRANSFORMERS_VERBOSITY"] == "error"
    assert quiet["PYTHONWARNINGS"] == "ignore"  # inherited by spawned extraction workers
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit("deprecated somewhere else", FutureWarning, "lib.py", 1, module="somelib")
        warnings.warn_explicit("a shard was damaged", UserWarning, "store.py", 1, module="emolingua.features.store")
    assert [str(w.message) for w in caught] == ["a shard was damaged"]
