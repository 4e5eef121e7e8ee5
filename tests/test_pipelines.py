"""The Python pipeline: every input kind, segments, batch invariance, embeddings, model folders."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import speechlike, talk

from emolingua import Pipeline, pipeline
from emolingua.audio import AudioError
from emolingua.errors import ConfigError, InputFileError
from emolingua.models import Model
from emolingua.pipelines import default_model_dir, resolve_model


@pytest.fixture(scope="module")
def ser(tiny_pipeline):
    return pipeline("emotion", model=tiny_pipeline)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for i in range(3):
        path = folder / f"c{i}.wav"
        sf.write(path, talk([("silence", 0.3), ("speech", 1.2 + 0.4 * i), ("silence", 0.3)], seed=8 + i), 16000)
        paths.append(str(path))
    return paths


def test_a_path_gives_every_label_with_its_score_best_first(ser, clips):
    out = ser(clips[0])
    assert [d["label"] for d in out] and sorted(d["label"] for d in out) == sorted(ser.labels)
    scores = [d["score"] for d in out]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0)
    assert ser(clips[0], top_k=2) == out[:2]


def test_every_input_kind_gives_the_answer_of_the_file(ser, clips, tmp_path):
    from pathlib import Path

    want = ser(clips[1])
    x, rate = sf.read(clips[1], dtype="float32")
    same = [ser(Path(clips[1])), ser(Path(clips[1]).read_bytes()), ser(x), ser({"array": x, "sampling_rate": rate})]
    for got in same:
        assert [d["label"] for d in got] == [d["label"] for d in want]
        np.testing.assert_allclose([d["score"] for d in got], [d["score"] for d in want], atol=1e-6)
    # another rate and two channels: resampled and mixed down, close to the 16 kHz answer
    x44 = soxr.resample(x, 16000, 44100)
    for item in ({"array": x44, "sampling_rate": 44100}, {"array": np.stack([x44, x44], axis=1), "sampling_rate": 44100}):
        got = ser(item)
        assert got[0]["label"] == want[0]["label"]
        np.testing.assert_allclose(sorted(d["score"] for d in got), sorted(d["score"] for d in want), atol=0.05)
    stereo = tmp_path / "stereo.flac"
    sf.write(stereo, np.stack([x, x], axis=1), 16000)
    np.testing.assert_allclose([d["score"] for d in ser(str(stereo))], [d["score"] for d in want], atol=1e-4)


def test_a_list_gives_a_list_and_a_file_answers_the_same_alone_or_in_any_batch(ser, clips):
    alone = [ser(p) for p in clips]
    together = ser(clips)
    shuffled = ser([clips[2], clips[0], clips[1], clips[0]])
    assert together == alone
    assert shuffled == [alone[2], alone[0], alone[1], alone[0]]


def test_segments_give_rows_with_times_scores_and_dimensions(ser, clips):
    rows = ser(clips[2], segments="window", window=0.5)
    assert len(rows) >= 3 and rows[0]["start"] == 0.0
    for r in rows:
        assert r["end"] > r["start"] and r["label"] in ser.labels and set(r["scores"]) == set(ser.labels)
        assert 0.0 <= r["arousal"] <= 1.0 and 0.0 <= r["valence"] <= 1.0
    vad = ser([clips[0], clips[1]], segments="vad")
    assert len(vad) == 2 and all(len(v) >= 1 for v in vad)


def test_the_file_summary_weighs_segments_by_duration(ser, clips):
    result = next(ser.predict([clips[2]], segments="window", window=0.5))
    summary = result.summary
    w = np.array([s["end"] - s["start"] for s in result.segments])
    p = np.array([[s["scores"][c] for c in ser.labels] for s in result.segments])
    mean = (p * w[:, None]).sum(axis=0) / w.sum()
    assert summary["label"] == ser.labels[int(mean.argmax())] and summary["score"] == pytest.approx(mean.max())
    assert summary["segments"] == len(result.segments) and summary["end"] == pytest.approx(result.duration, abs=1e-3)


def test_predict_goes_on_after_a_bad_input_and_the_call_raises_naming_it(ser, clips, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    results = list(ser.predict([clips[0], str(bad), str(tmp_path / "missing.wav"), clips[1]]))
    assert [bool(r.error) for r in results] == [False, True, True, False]
    assert "not readable as audio" in results[1].error and "not found" in results[2].error
    assert results[1].summary["error"] == results[1].error
    with pytest.raises(AudioError, match="bad.wav"):
        ser([clips[0], str(bad)])


def test_silence_gives_no_segments_and_says_so(ser):
    result = next(ser.predict([talk([("silence", 2.0)])], segments="vad"))
    assert result.segments == [] and result.summary["note"] == "no speech found"


def test_embed_is_the_vector_the_emotion_head_reads(ser, clips):
    one = ser.embed(clips[0])
    assert one.ndim == 1 and one.dtype == np.float32 and np.isfinite(one).all()
    both = ser.embed([clips[0], clips[1]])
    np.testing.assert_array_equal(both[0], one)
    assert not np.allclose(both[0], both[1])


def test_a_ten_minute_recording_streams_in_bounded_memory(ser, tmp_path):
    path = tmp_path / "long.wav"
    minute = talk([("speech", 6.0), ("silence", 1.5), ("speech", 3.0), ("silence", 1.0)] * 4 + [("silence", 18.0)], seed=4)
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        for _ in range(10):
            f.write(minute[: 60 * 16000])
    tracemalloc.start()
    try:
        result = next(ser.predict([str(path)], segments="vad", max_segment=5.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not result.error and result.duration == pytest.approx(600.0)
    assert len(result.segments) >= 40 and all(s["end"] - s["start"] <= 5.0 + 1e-6 for s in result.segments)
    assert peak < 600 * 16000 * 4 / 4, f"peak {peak / 1e6:.1f} MB"  # a quarter of the recording as float32


def test_segments_none_refuses_a_recording_longer_than_its_limit(ser):
    with pytest.raises(AudioError, match="max_seconds"):
        ser(speechlike(3.0), max_seconds=2.0)


def test_folders_names_and_the_hub_resolve(tiny_pipeline, tmp_path, monkeypatch):
    assert resolve_model(tiny_pipeline) == tiny_pipeline
    assert pipeline(str(tiny_pipeline)).labels == Pipeline(tiny_pipeline).labels  # a folder as the first argument
    with pytest.raises(InputFileError, match="a saved model, not a pipeline folder"):
        resolve_model(tiny_pipeline / "emotion")
    with pytest.raises(InputFileError, match="not a pipeline folder"):
        resolve_model(tmp_path)
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id: calls.append(repo_id) or str(tiny_pipeline))
    assert resolve_model("hf:someone/ser-model") == tiny_pipeline and calls == ["someone/ser-model"]

    def offline(repo_id):
        raise OSError("no connection")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(InputFileError, match="hf:someone/ser-model: could not fetch.*no connection"):
        resolve_model("hf:someone/ser-model")
    with pytest.raises(ConfigError, match="task 'translation'"):
        pipeline("translation")
    with pytest.raises(ConfigError, match="backend='tf'"):
        Pipeline(tiny_pipeline, backend="tf")


def test_the_shipped_default_is_small_complete_and_predicts():
    folder = default_model_dir()
    weights = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert weights <= 1_000_000
    spec = json.loads((folder / "pipeline.json").read_text())
    assert set(spec["heads"]) == {"emotion", "arousal", "valence"} and len(spec["languages"]) >= 5
    assert (folder / "MODEL_CARD.md").is_file()
    ser = pipeline("emotion")
    out = ser(speechlike(2.0, seed=5))
    assert out[0]["label"] in spec["labels"] and sum(d["score"] for d in out) == pytest.approx(1.0)


def test_the_encoder_stops_at_the_last_layer_a_head_reads_with_identical_scores(tiny_pipeline):
    ser = Pipeline(tiny_pipeline)
    chosen = max(Model.load(tiny_pipeline / h).config.view.layers[0] for h in ("emotion", "arousal", "valence"))
    assert list(ser._up_to.values()) == [chosen]
    clips = [speechlike(1.0, seed=s) for s in range(3)]
    early = ser.score(clips)
    ser._up_to = {k: None for k in ser._up_to}
    full = ser.score(clips)
    for key in early:
        np.testing.assert_array_equal(early[key], full[key])
