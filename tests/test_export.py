"""ONNX export: the graph gives the torch path's numbers (fp32 features), through the runner and the Pipeline."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from conftest import speechlike
from emolingua.errors import ConfigError, InputFileError
from emolingua.export import OnnxRunner, export_onnx
from emolingua.models import Dataset, Model, get_model
from emolingua.pipelines import Pipeline

pytest.importorskip("onnxruntime")

#: 0.6 s, 2.3 s, 7 s, 31.5 s (two windows) and 30 s + 50 samples (a second window of no whole frame)
LENGTHS = (9600, 36800, 112000, 504000, 480050)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [speechlike(n / 16000, seed=i) for i, n in enumerate(LENGTHS)]


@pytest.fixture(scope="module")
def exported(tiny_pipeline, tmp_path_factory):
    return export_onnx(model=tiny_pipeline, output=tmp_path_factory.mktemp("onnx") / "toy-onnx")


@pytest.fixture(scope="module")
def torch_fp32(tiny_pipeline) -> Pipeline:
    return Pipeline(tiny_pipeline, precision="fp32")


def _assert_same_scores(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=0, err_msg=name)


def test_the_export_is_a_pipeline_folder_with_the_graph_its_mel_recipe_and_labels(exported, tiny_pipeline):
    import onnx

    spec = json.loads((exported / "pipeline.json").read_text())
    source = json.loads((tiny_pipeline / "pipeline.json").read_text())
    assert spec["labels"] == source["labels"] and spec["segments"] == source["segments"]
    graph = onnx.load(str(exported / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["mel", "lengths"]
    assert [o.name for o in graph.graph.output] == ["proba", "arousal", "valence"]
    mel_dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert mel_dims == ["windows", 80, "frames"]
    # only the encoder layers up to the highest one a head reads
    top = max(max(Model.load(tiny_pipeline / h).config.view.layer_indices(3)) for h in ("emotion", "arousal", "valence"))
    assert spec["onnx"]["encoder_layers"] == top
    assert spec["onnx"]["postprocessing"]["proba"]["labels"] == source["labels"]
    assert spec["onnx"]["mel"]["n_fft"] == 400 and spec["onnx"]["mel"]["hop_length"] == 160
    assert np.load(exported / "mel_filters.npy").shape == (201, 80)
    assert json.loads((exported / "preprocessing.json").read_text()) == spec["onnx"]["mel"]


def test_onnx_scores_equal_the_torch_path_at_fp32_on_short_and_multi_window_clips(exported, torch_fp32, clips):
    got = OnnxRunner(exported).score(clips)
    want = torch_fp32.score(clips)
    _assert_same_scores(got, want)
    assert np.allclose(got["proba"].sum(axis=1), 1.0, atol=1e-5)
    assert ((got["arousal"] >= 0) & (got["arousal"] <= 1)).all()


def test_one_session_takes_any_number_of_windows_and_frames_and_clips_stay_independent(exported, clips):
    runner = OnnxRunner(exported)
    shapes = {runner.windows(c)[0].shape for c in clips}
    assert len(shapes) == 4 and {s[0] for s in shapes} == {1, 2}  # other (windows, frames) on every call
    together = runner.score(clips)
    for i, clip in enumerate(clips):
        alone = runner.score([clip])
        np.testing.assert_allclose(alone["proba"][0], together["proba"][i], atol=1e-6)


def test_the_pipeline_with_backend_onnx_gives_the_torch_labels(exported, torch_fp32, clips):
    ser = Pipeline(exported, backend="onnx")
    assert ser.labels == torch_fp32.labels
    inputs = [{"array": c, "sampling_rate": 16000} for c in clips]
    onnx_results = list(ser.predict(inputs, segments="none"))
    torch_results = list(torch_fp32.predict(inputs, segments="none"))
    for a, b in zip(onnx_results, torch_results):
        assert not a.error and a.summary["label"] == b.summary["label"]
        assert abs(a.summary["score"] - b.summary["score"]) < 1e-4
        assert abs(a.summary["valence"] - b.summary["valence"]) < 1e-4
    assert ser(inputs[0])[0]["label"] == torch_fp32(inputs[0])[0]["label"]


def test_a_pipeline_on_padded_30_s_windows_exports_too(tiny_pipeline, tmp_path, clips):
    padded = tmp_path / "padded"
    shutil.copytree(tiny_pipeline, padded)
    for head in ("emotion", "arousal", "valence"):
        meta_path = padded / head / "model.json"
        meta = json.loads(meta_path.read_text())
        for info in meta["features"].values():
            info["identity"]["options"]["input"] = "padded"
        meta_path.write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the edited options change the extractor's fingerprint
        want = Pipeline(padded, precision="fp32").score(clips[:1] + clips[3:4])
        out = export_onnx(model=padded, output=tmp_path / "padded-onnx")
    runner = OnnxRunner(out)
    assert runner.windows(clips[0])[0].shape == (1, 80, 3000)
    _assert_same_scores(runner.score(clips[:1] + clips[3:4]), want)


def _with_emotion_head(source, folder, model: Model):
    shutil.copytree(source, folder)
    shutil.rmtree(folder / "emotion")
    model.save(folder / "emotion")
    return folder


def _fit(name: str, stream: str, features: dict, **options) -> Model:
    rng = np.random.default_rng(0)
    labels = np.repeat(["angry", "happy", "neutral", "sad"], 8)
    rows = Dataset(streams={stream: rng.standard_normal((32, 3, 128))}, targets={"label": labels},
                   features={stream: features})  # fmt: skip
    return get_model(name, layers=(1,), threads=1, **options).fit(rows)


def test_models_and_extractors_the_graph_cannot_hold_are_refused_in_one_line(tiny_pipeline, tmp_path):
    info = Model.load(tiny_pipeline / "emotion").features_
    stream = next(iter(info))
    mlp = _fit("mlp", stream, info[stream], **get_model("mlp").quick_options)
    with pytest.raises(ConfigError, match=r"model mlp.*supports linear heads \(logreg, linear-svm, ridge\)") as err:
        export_onnx(model=_with_emotion_head(tiny_pipeline, tmp_path / "mlp", mlp), output=tmp_path / "out1")
    assert "\n" not in str(err.value)
    with pytest.warns(UserWarning, match="speaker twins: 32 of 32 rows have no speaker"):  # rows without speakers
        twins = _fit("logreg", stream, info[stream], speaker_twins=(stream,))
    with pytest.raises(ConfigError, match=r"speaker twins of .*depend on the other rows") as err:
        export_onnx(model=_with_emotion_head(tiny_pipeline, tmp_path / "twins", twins), output=tmp_path / "out0")
    assert "\n" not in str(err.value)
    mfcc = _fit("logreg", "mfcc", {"spec": "mfcc", "identity": {"options": {}}})
    with pytest.raises(ConfigError, match=r"extractor 'mfcc'.*whisper") as err:
        export_onnx(model=_with_emotion_head(tiny_pipeline, tmp_path / "mfcc", mfcc), output=tmp_path / "out2")
    assert "\n" not in str(err.value)


def test_a_folder_without_a_usable_graph_is_one_input_error(exported, tiny_pipeline, tmp_path):
    with pytest.raises(InputFileError, match="not an ONNX export"):
        OnnxRunner(tmp_path / "nothing")
    with pytest.raises(InputFileError, match="not an ONNX export"):
        Pipeline(tiny_pipeline, backend="onnx")
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(InputFileError, match="not a usable ONNX export") as err:
        OnnxRunner(broken)
    assert "\n" not in str(err.value)
    with pytest.raises(InputFileError, match="use backend onnx"):
        Pipeline(exported)  # the export has no torch heads


def test_the_cli_exports_and_predicts_with_the_onnx_backend(tiny_pipeline, tmp_path):
    import soundfile as sf
    from typer.testing import CliRunner

    from emolingua.cli import app

    runner = CliRunner()
    out = tmp_path / "cli-onnx"
    result = runner.invoke(app, ["export", "onnx", "--model", str(tiny_pipeline), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "model.onnx").is_file() and str(out) in result.output
    wav = tmp_path / "talk.wav"
    sf.write(wav, speechlike(2.0, seed=3), 16000)
    result = runner.invoke(app, ["predict", str(wav), "--model", str(out), "--backend", "onnx", "--segments", "none",
                                 "--output", str(tmp_path / "out.csv")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.csv").is_file()
