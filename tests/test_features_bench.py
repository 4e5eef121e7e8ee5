"""``bench features``: batches of files decoded one at a time, wrong options caught before timing."""

from __future__ import annotations

import pytest

import emolingua.audio
from emolingua.errors import ConfigError
from emolingua.features import bench
from emolingua.features.acoustic import MfccExtractor


@pytest.fixture
def files(tmp_path, tone) -> list[str]:
    return [str(tone(tmp_path / f"{i}.wav", seconds=0.5 - 0.05 * i, seed=i)) for i in range(6)]


def test_batches_follow_duration(files, monkeypatch):
    monkeypatch.setattr(bench, "BATCH_SECONDS", 0.8)
    batches = bench.path_batches(files)
    assert len(batches) > 1 and sorted(p for b in batches for p in b) == sorted(files)
    assert [p for b in batches for p in b] == files[::-1]  # shortest first, from the headers
    given = bench.path_batches(files, durations=[0.1 * i for i in range(6)])  # the manifest's durations win
    assert [p for b in given for p in b] == files


def test_only_one_batch_is_held_decoded(files, monkeypatch):
    """Memory is bounded by a batch: a batch is decoded only once the previous one was extracted."""
    monkeypatch.setattr(bench, "BATCH_SECONDS", 0.8)
    batches = bench.path_batches(files)
    counts = {"decoded": 0, "extracted": 0, "held": 0}
    load, extract = emolingua.audio.load_audio, MfccExtractor.extract

    def counting_load(path, **kwargs):
        counts["decoded"] += 1
        return load(path, **kwargs)

    def counting_extract(self, clips):
        if counts["decoded"]:  # not the warm-up call
            counts["held"] = max(counts["held"], counts["decoded"] - counts["extracted"])
            counts["extracted"] += len(clips)
        return extract(self, clips)

    monkeypatch.setattr(emolingua.audio, "load_audio", counting_load)
    monkeypatch.setattr(MfccExtractor, "extract", counting_extract)
    result = bench._measure("mfcc", {}, batches, 0, 1)
    assert result["clips"] == counts["extracted"] == len(files)
    assert counts["held"] == max(len(b) for b in batches) < len(files)
    assert result["audio_seconds"] == pytest.approx(sum(0.5 - 0.05 * i for i in range(6)), abs=1e-3)


def test_wrong_option_fails_before_timing():
    with pytest.raises(ConfigError, match="frame_layers=\\[99\\]"):
        bench.bench_features(extractors=[("mfcc", {}), ("whisper-base", {"frame_layers": [99]})], generated=1)


def test_default_set_is_the_three_precisions():
    assert [o["precision"] for name, o in bench.DEFAULT_EXTRACTORS if name == "whisper-base"] == ["fp32", "int8", "bf16"]
