"""Segments: windows, whole recordings and silero-vad speech regions, read in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import speechlike, talk

from emolingua.audio import AudioError, load_audio
from emolingua.errors import ConfigError
from emolingua.segments import FileSource, SegmentOptions, open_source, segment_times, segments, speech_probabilities


def test_windows_cover_the_recording_with_a_short_last_one_kept():
    source = open_source(np.zeros(16000 * 9), rate=16000)
    assert segment_times(source=source, options=SegmentOptions(how="window", window=4.0)) == [
        (0.0, 4.0), (4.0, 8.0), (8.0, 9.0)]  # fmt: skip
    overlapping = segment_times(source=source, options=SegmentOptions(how="window", window=4.0, hop=2.0))
    assert overlapping[:3] == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0)] and overlapping[-1][1] == 9.0


def test_a_last_window_shorter_than_min_speech_is_dropped():
    source = open_source(np.zeros(16000 * 8 + 1600), rate=16000)  # 8.1 s
    times = segment_times(source=source, options=SegmentOptions(how="window", window=4.0, min_speech=0.25))
    assert times == [(0.0, 4.0), (4.0, 8.0)]


def test_none_is_the_whole_recording_and_refuses_one_longer_than_max_seconds():
    source = open_source(np.zeros(16000 * 3), rate=16000)
    assert segment_times(source=source, options=SegmentOptions(how="none")) == [(0.0, 3.0)]
    with pytest.raises(AudioError, match="longer than max_seconds=2 .*vad.*window"):
        segment_times(source=source, options=SegmentOptions(how="none", max_seconds=2))


def test_bad_options_are_refused_naming_the_value():
    with pytest.raises(ConfigError, match="segments='words'"):
        SegmentOptions(how="words")
    with pytest.raises(ConfigError, match="window=0"):
        SegmentOptions(how="window", window=0)
    with pytest.raises(ConfigError, match="threshold"):
        SegmentOptions(threshold=1.5)


def test_vad_finds_the_two_stretches_of_speech():
    x = talk([("silence", 1.5), ("speech", 2.0), ("silence", 2.0), ("speech", 1.5), ("silence", 1.0)], seed=8)
    times = segment_times(source=open_source(x, rate=16000), options=SegmentOptions(how="vad"))
    # every segment inside a stretch (padding aside; silero may start a little late), both found
    inside = [1.2 < s < e < 3.9 or 5.2 < s < e < 7.4 for s, e in times]
    assert times and all(inside), times
    assert any(e < 4 for _, e in times) and any(s > 5 for s, _ in times), times


def test_vad_cuts_long_speech_at_max_segment_and_finds_nothing_in_silence():
    x = talk([("silence", 0.5), ("speech", 7.0), ("silence", 0.5)], seed=1)
    times = segment_times(source=open_source(x, rate=16000), options=SegmentOptions(how="vad", max_segment=2.5))
    assert len(times) >= 3 and all(e - s <= 2.5 + 1e-6 for s, e in times)
    quiet = open_source(talk([("silence", 3.0)]), rate=16000)
    assert segment_times(source=quiet, options=SegmentOptions(how="vad")) == []


def test_vad_probabilities_do_not_change_torch_threads():
    import torch

    before = torch.get_num_threads()
    probs = speech_probabilities(open_source(speechlike(1.0), rate=16000))
    assert len(probs) == 32 and torch.get_num_threads() == before  # importing silero_vad sets 1 thread


def test_a_44k_stereo_file_streams_to_the_same_samples_as_a_whole_decode(tmp_path):
    x = speechlike(3.0, rate=44100)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([x, 0.5 * x], axis=1), 44100, subtype="FLOAT")
    source = FileSource(path)
    whole = load_audio(path).samples
    streamed = np.concatenate(list(source.blocks(seconds=0.7)))
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.abs(streamed[:n] - whole[:n]).max() < 1e-3
    piece = source.read(1.0, 2.0)
    assert len(piece) == 16000
    assert np.abs(piece[1000:-1000] - whole[17000:31000]).max() < 1e-3


def test_inputs_of_every_kind_open(tmp_path):
    x = speechlike(1.0)
    path = tmp_path / "a.flac"
    sf.write(path, x, 16000)
    assert open_source(str(path)).duration == pytest.approx(1.0)
    assert open_source(path.read_bytes()).duration == pytest.approx(1.0)
    assert open_source({"array": soxr.resample(x, 16000, 8000), "sampling_rate": 8000}).duration == pytest.approx(1.0)
    assert open_source(np.stack([x, x]), rate=16000).duration == pytest.approx(1.0)  # (channels, samples)


@pytest.mark.parametrize("item, reason", [
    (b"not audio at all", "not readable as audio"), (b"", "empty"),
    ({"array": np.zeros(10)}, "needs 'array' and 'sampling_rate'"),
    ({"array": np.array([0.0, np.nan]), "sampling_rate": 16000}, "NaN"), (3.5, "not an audio input"),
])  # fmt: skip
def test_bad_inputs_fail_with_one_reason(item, reason):
    with pytest.raises(AudioError, match=reason):
        open_source(item)


def test_a_truncated_file_fails_naming_it(tmp_path):
    path = tmp_path / "cut.flac"  # FLAC's header says how many samples follow
    sf.write(path, speechlike(2.0), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="cut.flac"):
        list(FileSource(path).blocks())


def test_a_ten_minute_recording_is_segmented_in_bounded_memory(tmp_path):
    path = tmp_path / "long.wav"
    minute = talk([("speech", 6.0), ("silence", 1.5), ("speech", 3.0), ("silence", 1.0)] * 4 + [("silence", 18.0)])
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        for _ in range(10):
            f.write(minute[: 60 * 16000])
    whole_bytes = 600 * 16000 * 4  # the recording as float32
    tracemalloc.start()
    try:
        n, covered = 0, 0.0
        for seg in segments(source=FileSource(path), options=SegmentOptions(how="vad", max_segment=5.0)):
            assert len(seg.samples) == int(round((seg.end - seg.start) * 16000))
            n, covered = n + 1, covered + seg.end - seg.start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n >= 40 and 200 < covered < 560  # 36 s of speech a minute, in stretches of 3 and 6 s
    assert peak < whole_bytes / 8, f"peak {peak / 1e6:.1f} MB"
