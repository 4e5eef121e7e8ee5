"""The HTTP service: the emotion of uploaded recordings, as JSON and on a web page.

    emolingua serve --model default --port 8000
    curl -F file=@talk.wav 'http://127.0.0.1:8000/v1/predict?segments=window&window=2'
    curl -H 'Content-Type: audio/wav' --data-binary @talk.wav http://127.0.0.1:8000/v1/predict

>>> app = create_app(model="default", max_seconds=120)                          # doctest: +SKIP

Endpoints: ``POST /v1/predict`` (a multipart ``file`` field or the raw audio as the body; options
``segments``, ``window``, ``hop``, ``max_segment``, ``language`` as query parameters or form
fields), ``GET /v1/health``, ``GET /v1/models`` and ``GET /`` (the page, ``static/index.html``).

A request's audio is decoded from memory and never touches a path: the body, multipart
included, is parsed as it arrives, without temporary files. Every error is JSON,
``{"error": "<input>: <reason>"}``, with one status per cause:

* 400: no file, an empty file or body, a malformed multipart body, more than one file;
* 413: a body over ``max_bytes`` (its Content-Length up front, then counted as it is read),
  or audio longer than ``max_seconds``;
* 415: a content type other than ``audio/*``, ``application/octet-stream`` or
  ``multipart/form-data``, or bytes in which libsndfile recognises no audio format;
* 422: audio whose header reads but whose samples are broken (truncated, NaN or infinite,
  absurd amplitude, none at all), or an option with a bad value or an unknown name;
* 429: the queue is full (``max_queue`` requests admitted and not yet answered).

A request is admitted, or turned away with 429, before its body is read, so at most
``max_queue`` bodies are held in memory at once. Its header is read in the shared thread pool
(a file that is not audio fails at once, without waiting for the model) and its analysis runs in
the app's one inference thread: the model is never used by two requests at once, and the event
loop stays free to answer health checks and turn requests away.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from emolingua import __version__
from emolingua.audio import AudioError
from emolingua.errors import ConfigError
from emolingua.pipelines import FileResult, Pipeline, resolve_model
from emolingua.segments import RATE, SegmentOptions, Source, open_source
from emolingua.system import usable_cores

__all__ = ["app_from_env", "create_app", "serve"]

MB = 1_000_000
OPTIONS = ("segments", "window", "hop", "max_segment", "language")
#: Shortest window, hop or max_segment a request may ask for: it bounds the segments of a recording.
MIN_SPAN = 0.25
#: The settings ``app_from_env`` reads (``serve --workers N`` sets them for its worker processes).
ENV = {"model": "EMOLINGUA_SERVE_MODEL", "max_bytes": "EMOLINGUA_SERVE_MAX_BYTES",
       "max_seconds": "EMOLINGUA_SERVE_MAX_SECONDS", "max_queue": "EMOLINGUA_SERVE_MAX_QUEUE",
       "threads": "EMOLINGUA_SERVE_THREADS"}  # fmt: skip
PAGE = Path(__file__).parent / "static" / "index.html"
# The page has everything inline; the policy makes the browser refuse anything from elsewhere.
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
               "media-src blob:; connect-src 'self'; base-uri 'none'; form-action 'none'")  # fmt: skip


class RequestError(Exception):
    """A request the service refuses: its HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())


@dataclass
class Upload:
    """What a request sent: a display ``name`` (never used as a path), the audio bytes, its options."""

    name: str
    data: bytes
    options: dict[str, str]


# ------------------------------------------------------------------------------ reading a request
def _display_name(raw: str) -> str:
    """The last part of a client's file name, printable and short: shown, never opened."""
    base = re.split(r"[/\\]", raw)[-1]
    return "".join(c for c in base if c.isprintable())[:120] or "<upload>"


async def _body(request: Request, *, max_bytes: int) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; 413 as soon as they add up to more than ``max_bytes``
    (a client may send no Content-Length, or a false one)."""
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise RequestError(413, f"request body: over the limit of {max_bytes} bytes (max_bytes)")
            if chunk:
                yield chunk
    except ClientDisconnect:  # no one reads the answer; this keeps it from being logged as a crash
        raise RequestError(400, f"request body: the client left after {size} bytes") from None


class _Form:
    """A multipart/form-data body parsed in memory as it arrives (python-multipart's streaming
    parser; Starlette's would spool large files to temporary files)."""

    def __init__(self, boundary: bytes) -> None:
        self.parts: list[tuple[dict[str, str], bytearray]] = []
        self._field, self._value = bytearray(), bytearray()
        self.parser = MultipartParser(boundary, callbacks={
            "on_part_begin": lambda: self.parts.append(({}, bytearray())),
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": lambda data, start, end: self.parts[-1][1].extend(data[start:end]),
        })  # fmt: skip

    def _header_end(self) -> None:
        # latin-1 keeps the raw bytes; a UTF-8 file name is decoded from them in upload()
        self.parts[-1][0][self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field.clear()
        self._value.clear()

    def upload(self) -> Upload:
        """The ``file`` part (its name from its filename) and the other parts as options."""
        if self.parser.state != MultipartState.END:
            raise RequestError(400, "request body: the multipart body ends before its closing boundary")
        files, options = [], {}
        for headers, data in self.parts:
            _, params = parse_options_header(headers.get("content-disposition", ""))
            field = params.get(b"name", b"").decode("utf-8", "replace")
            if field == "file":
                files.append(Upload(name=_display_name(params.get(b"filename", b"").decode("utf-8", "replace")),
                                    data=bytes(data), options={}))  # fmt: skip
            elif b"filename" in params:
                raise RequestError(400, f"request body: a file in field {field!r}; send the recording as field 'file'")
            elif field in options:
                raise RequestError(422, f"option {field!r}: given twice")
            else:
                options[field] = data.decode("utf-8", "replace")
        if len(files) > 1:
            raise RequestError(400, "request body: more than one file; send one recording per request")
        if not files:
            raise RequestError(400, "request body: no 'file' field; send the recording as multipart field 'file'")
        return Upload(name=files[0].name, data=files[0].data, options=options)


async def _read_upload(request: Request, *, max_bytes: int) -> Upload:
    """The recording and options of a request: a multipart ``file`` field, or the raw body."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind == b"multipart/form-data":
        if not params.get(b"boundary"):
            raise RequestError(400, "request body: multipart/form-data without a boundary")
        form = _Form(params[b"boundary"])
        try:
            async for chunk in _body(request, max_bytes=max_bytes):
                form.parser.write(chunk)
            form.parser.finalize()
        except FormParserError as exc:
            raise RequestError(400, f"request body: malformed multipart ({exc})") from None
        upload = form.upload()
    elif kind in (b"", b"application/octet-stream") or kind.startswith(b"audio/"):
        _, disposition = parse_options_header(request.headers.get("content-disposition", ""))
        name = _display_name(disposition.get(b"filename", b"").decode("utf-8", "replace") or "<body>")
        upload = Upload(name=name, data=b"".join([c async for c in _body(request, max_bytes=max_bytes)]), options={})
    else:
        raise RequestError(415, f"content type {kind.decode('latin-1')!r}: send the recording as multipart field "
                                "'file', or as the body with Content-Type audio/* or application/octet-stream")  # fmt: skip
    for key, value in request.query_params.multi_items():
        if key in upload.options:
            raise RequestError(422, f"option {key!r}: given twice")
        upload.options[key] = value
    if not upload.data:
        raise RequestError(400, f"{upload.name}: empty; no audio was sent")
    return upload


def _segment_options(ser: Pipeline, given: dict[str, str], *, max_seconds: float) -> tuple[SegmentOptions, str]:
    """A request's segmentation (the pipeline's defaults changed by ``given``) and its language;
    422 for an unknown option or a bad value."""
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise RequestError(422, f"option {unknown[0][:40]!r}: unknown; options: {', '.join(OPTIONS)}")
    for name, text in given.items():
        if len(text) > 40:  # no option needs more, and a message quoting it stays one short line
            raise RequestError(422, f"{name}: a value of {len(text)} characters; too long")
    spans: dict[str, float] = {}
    for name in ("window", "hop", "max_segment"):
        text = given.get(name, "").strip()
        if not text:  # an empty form field (the page sends every input) means "the default"
            continue
        try:
            value = float(text)
        except ValueError:
            raise RequestError(422, f"{name}={text!r}: not a number of seconds") from None
        if not MIN_SPAN <= value <= max_seconds:  # also false for nan
            raise RequestError(422, f"{name}={text}: must be between {MIN_SPAN:g} and {max_seconds:g} seconds")
        spans[name] = value
    language = given.get("language", "").strip()
    if language and not re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*", language):
        raise RequestError(422, f"language={language[:20]!r}: not a language code (e.g. en, de, ur)")
    try:
        # max_seconds: a recording the service accepts is also one segments 'none' takes whole
        options = ser.options(given.get("segments", "").strip() or None, max_seconds=max_seconds, **spans)
    except ConfigError as exc:
        raise RequestError(422, str(exc)) from None
    return options, language.lower()


def _decode(upload: Upload, *, max_seconds: float) -> Source:
    """The upload as a source (its header read, its samples not yet); 415 when libsndfile
    recognises no audio format in it, 422 when it does but the audio is unusable, 413 when too long."""
    try:
        source = open_source(upload.data, name=upload.name)
    except AudioError as exc:
        try:
            sf.info(io.BytesIO(upload.data))
            status = 422
        except Exception:  # noqa: BLE001 - whatever libsndfile says, it is no audio format it knows
            status = 415
        raise RequestError(status, f"{upload.name}: {exc.reason}") from None
    if source.duration > max_seconds:
        raise RequestError(413, f"{upload.name}: {source.duration:.1f} s of audio is over the limit of "
                                f"{max_seconds:g} s (max_seconds)")  # fmt: skip
    return source


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null: JSON has no spelling for them."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------ the service
class _Queue:
    """Requests admitted and not yet answered, at most ``limit``. Only the event loop touches it,
    so it needs no lock."""

    def __init__(self, limit: int) -> None:
        self.limit, self.depth, self.peak = limit, 0, 0

    def enter(self) -> None:
        """Take a place, or refuse the request with 429."""
        if self.depth >= self.limit:
            raise RequestError(429, f"request: the queue is full ({self.limit} requests waiting or running, "
                                    f"max_queue); retry later")  # fmt: skip
        self.depth += 1
        self.peak = max(self.peak, self.depth)

    def leave(self) -> None:
        self.depth -= 1


class Service:
    """One loaded pipeline behind its queue and its inference thread (see the module docstring)."""

    def __init__(self, ser: Pipeline, *, name: str, max_bytes: int, max_seconds: float, max_queue: int) -> None:
        self.ser, self.name = ser, name
        self.max_bytes, self.max_seconds = max_bytes, max_seconds
        self.queue = _Queue(max_queue)
        self.infer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emolingua-infer")
        self.infer.submit(self._warm_up).result()

    def _warm_up(self) -> None:
        """The first analysis loads what the pipeline loads lazily (the encoder's weights, the
        VAD); done here, at start-up, it is not paid by the first request."""
        noise = (0.001 * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)
        source = open_source(noise, rate=RATE, name="<warm-up>")
        for how in ("none", "vad"):
            self.ser.analyse(source, options=self.ser.options(how))

    def _analyse(self, source: Source, options: SegmentOptions, language: str) -> FileResult:
        """In the inference thread: the model is never used by two requests at once."""
        try:
            return self.ser.analyse(source, options=options, language=language or None)
        except AudioError as exc:  # the header was fine (see _decode): the samples are not
            raise RequestError(422, f"{source.name}: {exc.reason}") from None

    async def predict(self, request: Request) -> dict[str, Any]:
        """The answer to ``POST /v1/predict`` (see the module docstring for the errors)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise RequestError(413, f"request body: {int(declared)} bytes is over the limit of {self.max_bytes} "
                                    f"bytes (max_bytes)")  # fmt: skip
        self.queue.enter()
        job: Future[FileResult] | None = None
        try:
            upload = await _read_upload(request, max_bytes=self.max_bytes)
            options, language = _segment_options(self.ser, upload.options, max_seconds=self.max_seconds)
            source = await run_in_threadpool(_decode, upload, max_seconds=self.max_seconds)
            job = self.infer.submit(self._analyse, source, options, language)
            # The slot is given back when the analysis ends, not when the client stops waiting:
            # clients that hang up must not pile work up behind the queue's back.
            job.add_done_callback(_on_loop(asyncio.get_running_loop(), self.queue.leave))
            result = await asyncio.wrap_future(job)
        finally:
            if job is None:
                self.queue.leave()
        return _json_safe({"file": result.file, "duration": round(result.duration, 3), "segments": result.segments,
                           "summary": result.summary, "labels": self.ser.labels, "model": self.name,
                           "options": {"segments": options.how, "window": options.window, "hop": options.hop,
                                       "max_segment": options.max_segment, "language": language}})  # fmt: skip

    def health(self) -> dict[str, Any]:
        """The answer to ``GET /v1/health``: the model, the queue now and at its fullest, the limits."""
        return {"status": "ok", "model": self.name, "loaded": True, "queue": self.queue.depth,
                "queue_peak": self.queue.peak, "version": __version__,
                "limits": {"max_bytes": self.max_bytes, "max_seconds": self.max_seconds,
                           "max_queue": self.queue.limit}}  # fmt: skip

    def model(self) -> dict[str, Any]:
        """The answer to ``GET /v1/models``: what ``pipeline.json`` says, without the server's paths."""
        spec = self.ser.spec
        heads = {head: {k: info.get(k) for k in ("model", "valid_metric", "valid_score", "train_rows")}
                 for head, info in spec.get("heads", {}).items()}  # fmt: skip
        return _json_safe({"name": self.name, "task": spec.get("task", "emotion"), "labels": self.ser.labels,
                           "languages": spec.get("languages", []), "heads": heads,
                           "segments": vars(self.ser.segment_options), "emolingua": spec.get("emolingua")})  # fmt: skip


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> Callable[[Any], None]:
    """A done-callback that runs ``fn`` on ``loop`` (it fires in the worker thread)."""

    def callback(_: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
            loop.call_soon_threadsafe(fn)

    return callback


def _check_limits(*, max_bytes: int, max_seconds: float, max_queue: int) -> None:
    if not max_bytes >= 1:
        raise ConfigError(f"max_bytes={max_bytes!r}: must be at least 1")
    if not max_seconds > 0:
        raise ConfigError(f"max_seconds={max_seconds!r}: must be a positive number of seconds")
    if not max_queue >= 1:
        raise ConfigError(f"max_queue={max_queue!r}: must be at least 1")


def create_app(*, model: str | os.PathLike | Pipeline = "default", max_bytes: int = 50 * MB,
               max_seconds: float = 600.0, max_queue: int = 16, threads: int | None = None) -> FastAPI:  # fmt: skip
    """The service as an ASGI app, its model loaded and warmed up: ``create_app(model="runs/m", max_queue=4)``.

    ``model``: ``"default"``, a pipeline folder, ``hf:<repo id>`` or a loaded :class:`Pipeline`;
    ``threads``: torch/BLAS threads of the inference (None: the process's; a loaded pipeline keeps its own).
    """
    _check_limits(max_bytes=max_bytes, max_seconds=max_seconds, max_queue=max_queue)
    page = PAGE.read_text(encoding="utf-8")
    ser = model if isinstance(model, Pipeline) else Pipeline(resolve_model(model), threads=threads)
    name = str(model) if str(model).startswith("hf:") else ser.folder.name  # never the server's path
    service = Service(ser, name=name, max_bytes=max_bytes, max_seconds=max_seconds, max_queue=max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.infer.shutdown(wait=False, cancel_futures=True)

    # No /docs: FastAPI's pages load their scripts from a CDN, and this body is read by hand.
    app = FastAPI(title="emolingua", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)  # fmt: skip
    app.state.service = service

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{request.method} {request.url.path}: {str(exc.detail).lower()}"},
                            status_code=exc.status_code, headers=exc.headers)  # fmt: skip

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # only the exception's type: its message may hold the server's paths (the log has it all)
        return JSONResponse({"error": f"{request.method} {request.url.path}: internal error "
                                      f"({type(exc).__name__}); see the server's log"}, status_code=500)  # fmt: skip

    @app.post("/v1/predict")
    async def predict(request: Request) -> JSONResponse:
        return JSONResponse(await service.predict(request))

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        return service.health()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return service.model()

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    return app


def app_from_env() -> FastAPI:
    """The app of a ``serve --workers N`` worker process, its settings from ``EMOLINGUA_SERVE_*``
    (see :data:`ENV`): ``uvicorn --factory emolingua.service:app_from_env``."""
    env = {key: os.environ.get(var, "") for key, var in ENV.items()}
    return create_app(model=env["model"] or "default", max_bytes=int(env["max_bytes"] or 50 * MB),
                      max_seconds=float(env["max_seconds"] or 600.0), max_queue=int(env["max_queue"] or 16),
                      threads=int(env["threads"]) if env["threads"] else None)  # fmt: skip


def serve(*, model: str | os.PathLike = "default", host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          threads: int | None = None, max_bytes: int = 50 * MB, max_seconds: float = 600.0, max_queue: int = 16,
          log_level: str = "info") -> None:  # fmt: skip
    """Run the service with uvicorn until interrupted: ``serve(model="default", port=8000)``.

    ``workers`` > 1 runs that many processes, each with its own copy of the model and its own
    queue (``threads`` then defaults to the cores shared out between them).
    """
    import uvicorn

    if workers < 1:
        raise ConfigError(f"workers={workers!r}: must be at least 1")
    _check_limits(max_bytes=max_bytes, max_seconds=max_seconds, max_queue=max_queue)
    if workers == 1:
        app = create_app(model=model, max_bytes=max_bytes, max_seconds=max_seconds, max_queue=max_queue,
                         threads=threads)  # fmt: skip
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    resolve_model(model)  # a wrong name fails here, once, rather than in every worker
    threads = threads or max(1, usable_cores() // workers)
    settings = {"model": os.fspath(model), "max_bytes": max_bytes, "max_seconds": max_seconds,
                "max_queue": max_queue, "threads": threads}  # fmt: skip
    os.environ.update({ENV[key]: str(value) for key, value in settings.items()})  # the workers inherit them
    uvicorn.run("emolingua.service:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level)  # fmt: skip

