"""The HTTP service (emolingua.service) through FastAPI's test client, on the tiny pipeline."""

from __future__ import annotations

import asyncio
import io
import os
import re
import tempfile
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike, talk
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emolingua.errors import ConfigError
from emolingua.pipelines import Pipeline
from emolingua.segments import open_source
from emolingua.service import ENV, app_from_env, create_app
from emolingua.system import usable_cores

#: Six seconds: silence, speech, silence, speech.
SPEECH = talk([("silence", 1.0), ("speech", 2.0), ("silence", 1.0), ("speech", 2.0)])


def encode(samples: np.ndarray, *, format: str = "WAV", subtype: str | None = None) -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, 16000, format=format, subtype=subtype)
    return out.getvalue()


WAV = encode(SPEECH)
LONG_WAV = encode(speechlike(10.0))  # 320 kB: over the strict app's max_bytes
NAN_WAV = encode(np.where(np.arange(len(SPEECH)) == 5000, np.nan, SPEECH), subtype="FLOAT")
FLAC = encode(SPEECH, format="FLAC")
EMPTY_WAV = encode(np.zeros(0, dtype=np.float32))


@pytest.fixture(scope="module")
def ser(tiny_pipeline):
    return Pipeline(tiny_pipeline)


@pytest.fixture(scope="module")
def client(ser):
    return TestClient(create_app(model=ser, max_seconds=30.0))


@pytest.fixture(scope="module")
def strict(ser):
    """Limits small enough to hit: 200 kB bodies (WAV fits, LONG_WAV does not), 5 s of audio (WAV is 6)."""
    return TestClient(create_app(model=ser, max_bytes=200_000, max_seconds=5.0))


def error_of(response: httpx.Response, status: int) -> str:
    """The one-line error of a refused request, after checking its status and shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and body["error"] and "\n" not in body["error"]
    return body["error"]


def spans(answer: dict) -> list[tuple[float, float]]:
    return [(s["start"], s["end"]) for s in answer["segments"]]


# ----------------------------------------------------------------------------------- endpoints
def test_health_and_models_describe_the_loaded_model_without_its_path(client, ser):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["loaded"] is True and health["model"] == ser.folder.name
    assert health["queue"] == 0 and health["limits"]["max_seconds"] == 30.0
    response = client.get("/v1/models")
    model = response.json()
    assert model["name"] == ser.folder.name and model["labels"] == ["angry", "happy", "neutral", "sad"]
    assert set(model["heads"]) == {"emotion", "arousal", "valence"} and model["languages"] == ["xx"]
    assert model["heads"]["emotion"]["valid_metric"] == "UA" and model["segments"]["how"] == "vad"
    assert str(ser.folder.parent) not in response.text


def test_the_page_is_served_whole_with_no_outside_asset(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    for element_id in ("file-input", "record-button", "analyse", "timeline", "result-table", "summary"):
        assert f'id="{element_id}"' in page
    assert "getUserMedia" in page and "RIFF" in page  # records the microphone and writes the WAV itself
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//""", page)


def test_a_multipart_upload_gives_the_pipelines_answer_for_each_speech_segment(client, ser):
    response = client.post("/v1/predict", files={"file": ("talk.wav", WAV, "audio/wav")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["file"], answer["duration"], answer["model"]) == ("talk.wav", 6.0, ser.folder.name)
    assert answer["labels"] == ser.labels and answer["options"]["segments"] == "vad"
    expected = ser.analyse(open_source(WAV, name="talk.wav"))
    assert answer["segments"] == expected.segments and answer["summary"] == expected.summary
    assert answer["segments"], "the VAD found no speech"
    for start, end in spans(answer):  # every segment is speech (1-3 s, 4-6 s), give or take the padding
        assert 0.8 <= start < end and not (end <= 4.0 and start >= 3.0)
    assert answer["summary"]["label"] in ser.labels and answer["summary"]["segments"] == len(answer["segments"])


def test_a_raw_body_takes_its_options_from_the_query(client):
    response = client.post("/v1/predict", content=WAV, headers={"Content-Type": "audio/wav"},
                           params={"segments": "window", "window": "1.5"})  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["file"] == "<body>" and spans(answer) == [(0.0, 1.5), (1.5, 3.0), (3.0, 4.5), (4.5, 6.0)]
    assert answer["options"] == {"segments": "window", "window": 1.5, "hop": 1.5, "max_segment": 10.0, "language": ""}
    overlapping = client.post("/v1/predict?segments=window&window=2&hop=1", content=FLAC,
                              headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert spans(overlapping.json()) == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0), (4.0, 6.0)]


def test_form_fields_carry_options_and_none_scores_the_whole_recording(client):
    response = client.post("/v1/predict", files={"file": ("talk.flac", FLAC, "audio/flac")},
                           data={"segments": "none", "language": "xx"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert spans(response.json()) == [(0.0, 6.0)] and response.json()["options"]["language"] == "xx"


def test_a_client_file_name_is_shown_and_never_opened(client):
    upload = client.post("/v1/predict", files={"file": ("../../../etc/passwd", WAV, "audio/wav")})
    raw = client.post("/v1/predict", content=WAV, headers={"Content-Type": "audio/wav",
                                                           "Content-Disposition": 'attachment; filename="/etc/hostname"'})
    for response, shown in ((upload, "passwd"), (raw, "hostname")):
        assert response.status_code == 200, response.text
        assert response.json()["file"] == shown and response.json()["duration"] == 6.0  # the bytes sent, not the path


# ------------------------------------------------------------------------------------- errors
def _multipart_without_file() -> dict:
    return {"files": {"segments": (None, "vad")}}  # a form field, no file


REFUSED = [
    # (name, client fixture, request keyword arguments, status, fragment of the error)
    ("too large (Content-Length)", "strict", {"content": LONG_WAV, "headers": {"Content-Type": "audio/wav"}}, 413,
     "max_bytes"),
    ("too large (counted: no Content-Length)", "strict",
     {"content": iter([LONG_WAV[i : i + 65536] for i in range(0, len(LONG_WAV), 65536)]),
      "headers": {"Content-Type": "audio/wav"}}, 413, "max_bytes"),
    ("too long", "strict", {"files": {"file": ("talk.wav", WAV, "audio/wav")}}, 413, "talk.wav: 6.0 s"),
    ("not audio", "client", {"files": {"file": ("notes.txt", b"no audio here " * 50, "text/plain")}}, 415,
     "notes.txt: not readable as audio"),
    ("not an audio content type", "client", {"json": {"audio": "talk.wav"}}, 415, "application/json"),
    ("truncated", "client", {"files": {"file": ("cut.flac", FLAC[: len(FLAC) // 2], "audio/flac")}}, 422,
     "cut.flac: corrupt or truncated"),
    ("NaN samples", "client", {"files": {"file": ("nan.wav", NAN_WAV, "audio/wav")}}, 422, "nan.wav: audio contains NaN"),
    ("no samples", "client", {"files": {"file": ("none.wav", EMPTY_WAV, "audio/wav")}}, 422, "none.wav: no samples"),
    ("missing file", "client", _multipart_without_file(), 400, "no 'file' field"),
    ("multipart cut short", "client",
     {"content": b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + WAV[:500],
      "headers": {"Content-Type": "multipart/form-data; boundary=xx"}}, 400, "closing boundary"),
    ("empty body", "client", {"content": b"", "headers": {"Content-Type": "audio/wav"}}, 400, "<body>: empty"),
    ("empty file", "client", {"files": {"file": ("e.wav", b"", "audio/wav")}}, 400, "e.wav: empty"),
    ("two files", "client", {"files": [("file", ("a.wav", WAV, "audio/wav")), ("file", ("b.wav", WAV, "audio/wav"))]},
     400, "more than one file"),
    ("unknown segmenter", "client", {"content": WAV, "params": {"segments": "loud"}}, 422, "segments='loud'"),
    ("window not a number", "client", {"content": WAV, "params": {"window": "abc"}}, 422, "window='abc'"),
    ("window zero", "client", {"content": WAV, "params": {"segments": "window", "window": "0"}}, 422, "window=0"),
    ("hop nan", "client", {"content": WAV, "params": {"hop": "nan"}}, 422, "hop=nan"),
    ("bad language", "client", {"content": WAV, "params": {"language": "english!"}}, 422, "language="),
    ("unknown option", "client", {"content": WAV, "params": {"segment": "vad"}}, 422, "'segment': unknown"),
    ("option twice", "client", {"files": {"file": ("a.wav", WAV, "audio/wav")}, "data": {"segments": "vad"},
                                "params": {"segments": "none"}}, 422, "given twice"),
]  # fmt: skip


@pytest.mark.parametrize("client_name, kwargs, status, fragment", [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])  # fmt: skip
def test_a_bad_request_gets_its_status_and_a_one_line_json_error(request, client_name, kwargs, status, fragment):
    response = request.getfixturevalue(client_name).post("/v1/predict", **kwargs)
    assert fragment in error_of(response, status)


def test_unknown_routes_and_methods_answer_json_too(client):
    assert error_of(client.get("/v1/nothing"), 404) == "GET /v1/nothing: not found"
    assert "method not allowed" in error_of(client.get("/v1/predict"), 405)


def test_a_crash_is_a_json_500_that_hides_its_message_and_the_next_request_is_served(client, ser, monkeypatch):
    def broken(clips, **options):
        raise RuntimeError("/srv/secret/weights broke")

    score = ser.score
    monkeypatch.setattr(ser, "score", broken)
    crashing = TestClient(client.app, raise_server_exceptions=False)
    error = error_of(crashing.post("/v1/predict", content=WAV, headers={"Content-Type": "audio/wav"}), 500)
    assert error == "POST /v1/predict: internal error (RuntimeError); see the server's log"
    monkeypatch.setattr(ser, "score", score)
    assert crashing.post("/v1/predict", content=WAV, headers={"Content-Type": "audio/wav"}).status_code == 200
    assert crashing.get("/v1/health").json()["queue"] == 0


def test_a_bad_request_leaves_the_next_one_unharmed(client):
    first = client.post("/v1/predict", files={"file": ("a.wav", WAV, "audio/wav")})
    for bad in (NAN_WAV, FLAC[: len(FLAC) // 2], b"junk" * 100):
        assert client.post("/v1/predict", files={"file": ("a.wav", bad, "audio/wav")}).status_code in (415, 422)
    assert client.post("/v1/predict", content=WAV, params={"window": "x"}).status_code == 422
    again = client.post("/v1/predict", files={"file": ("a.wav", WAV, "audio/wav")})
    assert first.status_code == again.status_code == 200 and again.json() == first.json()
    assert client.get("/v1/health").json()["queue"] == 0


# ------------------------------------------------------------------------------- concurrency
def test_a_client_that_leaves_mid_upload_gives_its_place_back(client):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"audio/wav")], "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    arriving = iter([{"type": "http.request", "body": WAV[:1000], "more_body": True}, {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(arriving)

    async def send(message):
        sent.append(message)

    asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 400 and b"the client left after 1000 bytes" in sent[1]["body"]
    assert client.get("/v1/health").json()["queue"] == 0


def test_a_full_queue_answers_429_at_once_and_a_bad_file_does_not_wait(ser, monkeypatch):
    app = create_app(model=ser, max_queue=2)
    entered, release = threading.Event(), threading.Event()
    score = ser.score

    def blocking_score(clips, **options):
        entered.set()
        release.wait(20)
        return score(clips, **options)

    monkeypatch.setattr(ser, "score", blocking_score)
    upload = {"content": WAV, "headers": {"Content-Type": "audio/wav"}}

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            try:
                first = asyncio.create_task(http.post("/v1/predict", **upload))
                deadline = time.monotonic() + 30
                while not entered.is_set():  # the first request holds the model
                    assert not first.done() and time.monotonic() < deadline, "the first request never reached the model"
                    await asyncio.sleep(0.01)
                started = time.monotonic()
                junk = await http.post("/v1/predict", content=b"junk" * 100, headers={"Content-Type": "audio/wav"})
                second = asyncio.create_task(http.post("/v1/predict", **upload))
                while (await http.get("/v1/health")).json()["queue"] < 2:  # admitted, waiting for the model
                    await asyncio.sleep(0.01)
                third = await http.post("/v1/predict", **upload)
                refused_in = time.monotonic() - started
                blocked = not first.done()
            finally:
                release.set()
            return junk, await first, await second, third, refused_in, blocked, (await http.get("/v1/health")).json()

    junk, first, second, third, refused_in, blocked, health = asyncio.run(scenario())
    assert error_of(junk, 415) and blocked and refused_in < 2.0
    assert "queue is full" in error_of(third, 429)
    assert first.status_code == second.status_code == 200 and first.json() == second.json()
    assert health["queue"] == 0 and health["queue_peak"] == 2


def test_no_temporary_file_is_left_behind(client, monkeypatch, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where anything in this process would put one
    big = encode(speechlike(25.0), subtype="FLOAT")  # 1.6 MB: over Starlette's 1 MB in-memory spool
    assert client.post("/v1/predict?segments=window", files={"file": ("big.wav", big, "audio/wav")}).status_code == 200
    assert client.post("/v1/predict", files={"file": ("junk.wav", b"junk" * 400_000, "audio/wav")}).status_code == 415
    assert client.post("/v1/predict", content=big[: len(big) // 2], headers={"Content-Type": "audio/wav"}).status_code == 200
    assert list(scratch.iterdir()) == []


# ---------------------------------------------------------------------------- settings and CLI
def test_limits_are_checked_when_the_app_is_made(ser):
    for limits in ({"max_bytes": 0}, {"max_seconds": 0.0}, {"max_queue": 0}):
        with pytest.raises(ConfigError, match=next(iter(limits))):
            create_app(model=ser, **limits)


def test_a_worker_process_reads_its_settings_from_the_environment(tiny_pipeline, monkeypatch):
    for key, value in {"model": str(tiny_pipeline), "max_bytes": "1234", "max_seconds": "7.5", "max_queue": "3",
                       "threads": "1"}.items():  # fmt: skip
        monkeypatch.setenv(ENV[key], value)
    limits = TestClient(app_from_env()).get("/v1/health").json()["limits"]
    assert limits == {"max_bytes": 1234, "max_seconds": 7.5, "max_queue": 3}


def test_the_serve_command_runs_uvicorn_or_refuses_in_one_line(tiny_pipeline, tmp_path, monkeypatch):
    import uvicorn

    from emolingua.cli import app as cli

    runs = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: runs.append((app, kwargs)))
    for var in ENV.values():
        monkeypatch.delenv(var, raising=False)  # serve sets them; monkeypatch removes them afterwards
    runner = CliRunner()
    res = runner.invoke(cli, ["serve", "--model", str(tiny_pipeline), "--port", "8123", "--max-mb", "2"])
    assert res.exit_code == 0, res.output
    app, kwargs = runs.pop()
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8123
    assert TestClient(app).get("/v1/health").json()["limits"]["max_bytes"] == 2_000_000
    res = runner.invoke(cli, ["serve", "--model", str(tiny_pipeline), "--workers", "2", "--max-queue", "4"])
    assert res.exit_code == 0, res.output
    app, kwargs = runs.pop()
    assert app == "emolingua.service:app_from_env" and kwargs["factory"] is True and kwargs["workers"] == 2
    threads = str(max(1, usable_cores() // 2))  # the cores shared out between the workers
    assert (os.environ[ENV["max_queue"]], os.environ[ENV["threads"]]) == ("4", threads)
    for args, fragment in ((["--model", str(tmp_path)], "not a pipeline folder"), (["--max-queue", "0"], "max_queue"),
                           (["--workers", "0"], "workers")):  # fmt: skip
        res = runner.invoke(cli, ["serve", *args])
        assert res.exit_code == 2 and fragment in res.output and not runs
