"""Load test of ``emolingua serve``: many 3-second clips at a fixed concurrency, on loopback.

Starts ``emolingua serve`` (the shipped default model unless ``--model``) as a subprocess on
127.0.0.1, waits for ``/v1/health``, cuts ``--clips`` different 3-second clips from the example
recording (WAV, in memory), and sends ``--requests`` POSTs of them round-robin from
``--concurrency`` connections (httpx.AsyncClient) while another connection polls the server's
queue depth. Prints errors (a non-200 answer, or an answer that differs from the first one for
the same clip), lost responses (no answer at all), latency p50 / p95 / max, requests per second
and the largest queue depth the server saw; exits 1 unless errors and lost responses are 0.

    .venv/bin/python benchmarks/service_load.py --requests 200 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "austen-sense-and-sensibility.flac"


def clips(*, count: int, seconds: float, seed: int = 0) -> list[bytes]:
    """``count`` WAV clips of ``seconds`` from random places in the example recording."""
    samples, rate = sf.read(EXAMPLE, dtype="float32")
    starts = np.random.default_rng(seed).integers(0, len(samples) - int(seconds * rate), size=count)
    out = []
    for start in starts:
        buffer = io.BytesIO()
        sf.write(buffer, samples[start : start + int(seconds * rate)], rate, format="WAV", subtype="PCM_16")
        out.append(buffer.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_healthy(url: str, server: subprocess.Popen, timeout: float) -> dict:
    async with httpx.AsyncClient(timeout=2.0) as http:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with status {server.returncode} before it was healthy")
            try:
                return (await http.get(f"{url}/v1/health")).json()
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    raise SystemExit(f"the server was not healthy after {timeout:.0f} s")


async def load(url: str, bodies: list[bytes], *, requests: int, concurrency: int) -> dict:
    """Send the requests; per request its status, latency and answer, plus the queue depths polled."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lost: list[str] = []
    answers: dict[int, dict] = {}
    inconsistent = 0
    depths = [0]
    todo: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        todo.put_nowait(i)

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal inconsistent
        while not todo.empty():
            i = todo.get_nowait()
            clip = i % len(bodies)
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/predict", content=bodies[clip],
                                           headers={"Content-Type": "audio/wav"})  # fmt: skip
            except httpx.HTTPError as exc:
                lost.append(f"request {i}: {type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - started)
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            if response.status_code == 200:
                answer = response.json()
                if answers.setdefault(clip, answer) != answer:  # the same clip must get the same answer
                    inconsistent += 1

    async def poll(stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=5.0) as http:
            while not stop.is_set():
                depths.append((await http.get(f"{url}/v1/health")).json()["queue"])
                await asyncio.sleep(0.05)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as http:
        stop = asyncio.Event()
        poller = asyncio.create_task(poll(stop))
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
        stop.set()
        await poller
        health = (await http.get(f"{url}/v1/health")).json()
    errors = sum(n for status, n in statuses.items() if status != "200") + inconsistent
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"requests": requests, "concurrency": concurrency, "answered": len(latencies), "statuses": statuses,
            "errors": errors, "inconsistent": inconsistent, "lost": len(lost), "lost_examples": lost[:3],
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
                           "max": round(float(ms.max()), 1)},
            "wall_seconds": round(wall, 2), "requests_per_second": round(requests / wall, 2),
            "queue_depth_max": max(max(depths), health["queue_peak"])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="default, a pipeline folder or hf:<repo id>")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each clip")
    parser.add_argument("--clips", type=int, default=20, help="different clips, sent round-robin")
    parser.add_argument("--max-queue", type=int, default=16, help="the server's --max-queue")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bodies = clips(count=args.clips, seconds=args.seconds)
    command = [sys.executable, "-m", "emolingua", "serve", "--model", args.model, "--host", "127.0.0.1",
               "--port", str(port), "--max-queue", str(args.max_queue)]  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "server.log"
        with open(log_path, "w") as log:
            started = time.perf_counter()
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
            try:
                health = asyncio.run(wait_healthy(url, server, timeout=180.0))
                ready = time.perf_counter() - started
                results = asyncio.run(load(url, bodies, requests=args.requests, concurrency=args.concurrency))
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        results = {"model": health["model"], "clip_seconds": args.seconds, "server_ready_seconds": round(ready, 1),
                   "cores": os.cpu_count(), **results}  # fmt: skip
        if results["errors"] or results["lost"]:
            print(log_path.read_text()[-3000:], file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        lat = results["latency_ms"]
        print(f"model {results['model']}, {args.requests} requests of {args.seconds:g} s clips at concurrency "
              f"{args.concurrency} ({results['cores']} cores; server ready in {results['server_ready_seconds']} s)")
        print(f"errors {results['errors']}, lost responses {results['lost']}, statuses {results['statuses']}")
        print(f"latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, max {lat['max']} ms")
        print(f"{results['requests_per_second']} requests/s ({results['wall_seconds']} s), "
              f"server queue depth max {results['queue_depth_max']}")
    sys.exit(1 if results["errors"] or results["lost"] else 0)


if __name__ == "__main__":
    main()
