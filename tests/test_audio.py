from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emolingua.audio import AudioError, is_audio_path, load_audio, probe_audio


@pytest.mark.parametrize(
    ("name", "subtype"),
    [
        ("a.wav", "PCM_U8"),
        ("a16.wav", "PCM_16"),
        ("a24.wav", "PCM_24"),
        ("a32.wav", "PCM_32"),
        ("af.wav", "FLOAT"),
        ("a.flac", "PCM_16"),
        ("a24.flac", "PCM_24"),
        ("a.ogg", "VORBIS"),
        ("a.aiff", "PCM_16"),
        ("a.aifc", "FLOAT"),  # float AIFF is written as AIFF-C
    ],
)
def test_load_formats_to_mono_float32_16k(tmp_path, tone, name, subtype):
    fmt = "AIFF" if name.endswith(".aifc") else None
    path = tone(tmp_path / name, seconds=0.5, rate=44100, channels=2, subtype=subtype, format=fmt)
    if fmt:
        assert path.read_bytes()[8:12] == b"AIFC"
    clip = load_audio(path)
    assert clip.samples.dtype == np.float32
    assert clip.samples.ndim == 1
    assert clip.sample_rate == 16000
    assert clip.original_rate == 44100
    assert clip.original_channels == 2
    assert clip.duration == pytest.approx(0.5, abs=0.01)
    # the tone survives decoding and resampling: amplitude near 0.3
    assert 0.2 < np.abs(clip.samples).max() < 0.4


def test_keep_native_rate_and_channels(tmp_path, tone):
    path = tone(tmp_path / "x.wav", seconds=0.25, rate=22050, channels=2)
    clip = load_audio(path, sample_rate=None, mono=False)
    assert clip.sample_rate == 22050
    assert clip.samples.shape == (int(0.25 * 22050), 2)


def test_resample_preserves_frequency(tmp_path, tone):
    path = tone(tmp_path / "x.wav", seconds=1.0, rate=48000)
    clip = load_audio(path, sample_rate=16000)
    spectrum = np.abs(np.fft.rfft(clip.samples))
    peak_hz = np.argmax(spectrum) * 16000 / len(clip.samples)
    assert abs(peak_hz - 220) < 2


def test_long_file_is_not_truncated(tmp_path):
    x = np.zeros(16000 * 95, dtype=np.float32)
    x[-1] = 0.5
    path = tmp_path / "long.flac"
    sf.write(path, x, 16000)
    clip = load_audio(path)
    assert len(clip.samples) == len(x)
    assert clip.samples[-1] == pytest.approx(0.5, abs=1e-3)


def test_probe_reports_header(tmp_path, tone):
    info = probe_audio(tone(tmp_path / "x.flac", seconds=0.3, rate=8000))
    assert (info.sample_rate, info.channels, info.frames) == (8000, 1, 2400)
    assert info.duration == pytest.approx(0.3)


def _truncated_flac(tmp_path, tone):
    good = tone(tmp_path / "good.flac", seconds=2.0)
    data = good.read_bytes()
    bad = tmp_path / "truncated.flac"
    bad.write_bytes(data[: len(data) // 2])
    return bad


def _nan_wav(tmp_path):
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp, tone: tmp / "missing.wav", "not found"),
        (lambda tmp, tone: (tmp / "empty.wav").write_bytes(b"") and tmp / "empty.wav" or tmp / "empty.wav", "empty"),
        (lambda tmp, tone: tone(tmp / "zero.wav", seconds=0.0), "zero-length"),
        (lambda tmp, tone: (tmp / "text.wav").write_text("not audio at all\n" * 20) and tmp / "text.wav", "not readable"),
        (_truncated_flac, "truncated"),
        (lambda tmp, tone: _nan_wav(tmp), "NaN"),
        (lambda tmp, tone: tmp, "directory"),
    ],
)
def test_bad_input_raises_typed_error_with_path_and_reason(tmp_path, tone, make, reason):
    path = make(tmp_path, tone)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.path == str(path)
    assert reason in info.value.reason
    assert str(path) in str(info.value)


def test_probe_catches_truncation_without_full_decode(tmp_path, tone):
    with pytest.raises(AudioError, match="truncated"):
        probe_audio(_truncated_flac(tmp_path, tone))


def test_is_audio_path():
    assert is_audio_path("x/Y.WAV") and is_audio_path("a.flac") and is_audio_path("b.aifc")
    assert not is_audio_path("data.tsv")


def test_absurd_float_amplitude_is_rejected_with_its_peak(tmp_path):
    path = tmp_path / "huge.wav"
    sf.write(path, np.array([0.0, 1e19, -0.5], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"absurd amplitude: peak 1e\+19"):
        load_audio(path)


def test_float_audio_a_little_over_full_scale_is_kept_as_it_is(tmp_path):
    path = tmp_path / "hot.wav"
    sf.write(path, np.array([0.0, 1.5, -2.0], dtype=np.float32), 16000, subtype="FLOAT")
    assert np.array_equal(load_audio(path).samples, np.array([0.0, 1.5, -2.0], dtype=np.float32))
