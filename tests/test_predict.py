"""``emolingua predict`` (and ``train``) from the command line: inputs, outputs, failures, exit status."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import soundfile as sf
from conftest import talk
from typer.testing import CliRunner

from emolingua.cli import app
from emolingua.predict import expand_inputs

runner = CliRunner()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("recordings")
    (root / "sub").mkdir()
    for i, name in enumerate(["a.wav", "b.flac", "sub/c.wav"]):
        sf.write(root / name, talk([("silence", 0.4), ("speech", 1.5), ("silence", 0.4)], seed=8 + i), 16000)
    (root / "notes.txt").write_text("not audio, and not picked up from a folder")
    (root / "broken.wav").write_text("not audio")
    return root


def test_folders_globs_and_stdin_expand_to_audio_files(recordings):
    folder = expand_inputs([str(recordings)])
    assert [p.rsplit("/", 1)[-1] for p in folder] == ["a.wav", "b.flac", "broken.wav", "c.wav"]
    assert expand_inputs([str(recordings / "*.flac")]) == [str(recordings / "b.flac")]
    import io

    listed = expand_inputs(["-"], stdin=io.StringIO(f"{recordings / 'a.wav'}\n\n{recordings / 'sub'}\n"))
    assert listed == [str(recordings / "a.wav"), str(recordings / "sub" / "c.wav")]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_rows_per_segment_and_per_file_with_failures_listed_and_exit_1(recordings, tiny_pipeline, tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    result = runner.invoke(app, ["predict", str(recordings), "--model", str(tiny_pipeline), "--segments", "window",
                                 "--window", "1.0", "--output", str(out)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "broken.wav: not readable as audio" in result.output and "1 of 4 files failed" in result.output
    table = {".csv": pd.read_csv, ".parquet": pd.read_parquet,
             ".jsonl": lambda p: pd.read_json(p, lines=True)}[suffix](out)  # fmt: skip
    files = table[table["kind"] == "file"]
    assert len(files) == 4 and set(table["kind"]) == {"segment", "file"}
    ok = files[files["error"].fillna("") == ""]
    assert len(ok) == 3 and set(ok["label"]) <= {"angry", "happy", "neutral", "sad"}
    segments = table[table["kind"] == "segment"]
    assert len(segments) == 9 and (segments["end"] > segments["start"]).all()  # 2.3 s each: 3 windows
    assert {"p:angry", "p:sad", "arousal", "valence"} <= set(table.columns)


def test_the_terminal_table_and_stdin(recordings, tiny_pipeline):
    result = runner.invoke(app, ["predict", "-", "--model", str(tiny_pipeline), "--segments", "none"],
                           input=f"{recordings / 'a.wav'}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a.wav" in result.output and "arousal" in result.output


def test_a_file_answers_the_same_alone_and_among_others(recordings, tiny_pipeline, tmp_path):
    alone, together = tmp_path / "alone.csv", tmp_path / "together.csv"
    a = str(recordings / "a.wav")
    runner.invoke(app, ["predict", a, "--model", str(tiny_pipeline), "--output", str(alone)])
    runner.invoke(app, ["predict", str(recordings / "b.flac"), a, "--model", str(tiny_pipeline), "--output", str(together)])
    one = pd.read_csv(alone)
    both = pd.read_csv(together)
    pd.testing.assert_frame_equal(one, both[both["file"] == a].reset_index(drop=True))


def test_usage_mistakes_are_one_line_with_exit_2(recordings, tiny_pipeline, tmp_path):
    bad_format = runner.invoke(app, ["predict", str(recordings / "a.wav"), "--model", str(tiny_pipeline),
                                     "--output", str(tmp_path / "out.xlsx")])  # fmt: skip
    assert bad_format.exit_code == 2 and "unknown output format" in bad_format.output
    no_model = runner.invoke(app, ["predict", str(recordings / "a.wav"), "--model", str(tmp_path)])
    assert no_model.exit_code == 2 and "not a pipeline folder" in no_model.output
    bad_segments = runner.invoke(app, ["predict", str(recordings / "a.wav"), "--model", str(tiny_pipeline),
                                       "--segments", "words"])  # fmt: skip
    assert bad_segments.exit_code == 2 and "segments='words'" in bad_segments.output
    nothing = runner.invoke(app, ["predict", str(tmp_path / "*.wav"), "--model", str(tiny_pipeline)])
    assert nothing.exit_code == 2 and "no audio files found" in nothing.output


def test_train_from_the_command_line_writes_a_pipeline(tiny_pipeline, tmp_path):
    spec = json.loads((tiny_pipeline / "pipeline.json").read_text())
    recipe = spec["recipe"]
    out = tmp_path / "again"
    result = runner.invoke(app, ["train", "--corpora", recipe["corpora"], "--output", str(out), "--features",
                                 recipe["features"], "-s", "feature_options.precision=fp32", "-s", "valid_fraction=0.25",
                                 "-s", "model_options.C=[0.1,1.0]", "-s", "affect=false"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "emotion: logreg on 48 rows, valid UA" in result.output and "(SI, 16 rows)" in result.output
    again = json.loads((out / "pipeline.json").read_text())
    assert set(again["heads"]) == {"emotion"} and again["heads"]["emotion"]["selected"] == spec["heads"]["emotion"]["selected"]
