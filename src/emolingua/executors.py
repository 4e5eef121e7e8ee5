"""Where batch work runs: this machine's processes (``local``, the default) or a Ray cluster (``ray``).

>>> with ray_session(address="10.0.0.5:6379"):                     # doctest: +SKIP
...     tasks = RayTasks(compute, num_cpus=1)
...     tasks.submit("batch-1", paths)
...     for tag, result, error in tasks.wait():
...         ...

Ray (``pip install 'emolingua[ray]'``) is only imported here and only when asked for. The
callers (:func:`emolingua.features.extract.extract_to_store`, the benchmark's fold jobs) plan
the work in the driver, send each unit as one Ray task and store its result themselves, so a
result reaches the store exactly once however often Ray ran the task.

Failures: Ray reruns a task whose worker process or node died, and a task that raised, up to
:data:`RAY_RETRIES` more times; after that :meth:`RayTasks.wait` hands the caller the error
instead of a result, and the caller records it (an extraction batch as failed files, a fold job
as not scored), so one bad unit never stops the run. A configuration error
(:class:`~emolingua.errors.EmolinguaError`) is not retried: it is the same on every attempt, so
it stops the run at once, as it does locally.

Every node must run the same emolingua, extractors and model files as the driver and see the
audio at the same paths; the extraction tasks check the extractor's fingerprint against the
driver's, so a node with other weights cannot put its features in the store.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import time
import warnings
from typing import Any, Callable, Generic, Iterator, TypeVar

from emolingua.errors import ConfigError, EmolinguaError, NotAvailableError
from emolingua.system import usable_cores

__all__ = ["EXECUTORS", "RAY_RETRIES", "RayTasks", "check_executor", "check_reachable", "describe_error",
           "executor_session", "ray_session"]

EXECUTORS = ("local", "ray")
#: Runs of a Ray task after its first, whether its worker died or it raised.
RAY_RETRIES = 3

T = TypeVar("T")


def check_executor(*, executor: str, ray_address: str | None = None) -> None:
    """Raise :class:`ConfigError` for an unknown executor, an address without Ray, or Ray not installed.

    >>> check_executor(executor="ray", ray_address="10.0.0.5:6379")   # doctest: +SKIP
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r}: unknown; use one of {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        raise ConfigError(f"ray_address {ray_address!r}: only used with executor ray (got executor {executor})")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("executor ray: Ray is not installed; install it with pip install 'emolingua[ray]'")


def check_reachable(address: str, *, timeout: float = 5.0) -> None:
    """Raise :class:`NotAvailableError` when nothing listens at a ``HOST:PORT`` address (Ray itself
    would keep retrying for minutes); ``auto``, ``local`` and ``ray://`` addresses are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise NotAvailableError(f"ray_address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                                "start one with `ray start --head`, or leave the address out to run Ray on "
                                "this machine") from None


#: Open :func:`executor_session` blocks: a Ray instance started inside one stays up until it ends.
_HELD: list[None] = []


@contextlib.contextmanager
def ray_session(*, address: str | None = None) -> Iterator[None]:
    """Connected to Ray inside the block; a session opened here is closed on leaving it (or, inside
    :func:`executor_session`, when that ends).

    ``address``: a running cluster (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``); without
    it, ``$RAY_ADDRESS``; without that, a new Ray instance on this machine with its usable
    cores. A session the caller opened already is used as it is.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
        ray.init(address=address, logging_level="WARNING")
    else:
        # "local", not None: None would join whatever cluster was started last on this machine
        ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        if not _HELD:
            ray.shutdown()


@contextlib.contextmanager
def executor_session(*, executor: str, address: str | None = None) -> Iterator[None]:
    """For a run of several steps: the first step that needs Ray connects (or starts a local
    instance), the later ones reuse that session, and it is closed when the block ends. Nothing
    is started when no step needs Ray (everything cached), nor for ``local``.

    >>> with executor_session(executor=cfg.executor, address=cfg.ray_address):   # doctest: +SKIP
    ...     extract(); run_jobs()
    """
    if executor != "ray":
        yield
        return
    import ray

    opened_before = ray.is_initialized()
    _HELD.append(None)
    try:
        yield
    finally:
        _HELD.pop()
        if not _HELD and not opened_before and ray.is_initialized():
            ray.shutdown()


class _Fatal:
    """A configuration error raised in a task, sent back as a value so that Ray does not retry it."""

    def __init__(self, error: EmolinguaError) -> None:
        self.error = error


def _guarded(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except EmolinguaError as exc:
        return _Fatal(exc)


def describe_error(exc: BaseException) -> str:
    """One line for a task that failed for good: the task's own exception where Ray kept it
    (a worker that died has none: then Ray's error, e.g. ``WorkerCrashedError``)."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


class RayTasks(Generic[T]):
    """One function run as Ray tasks, each under a caller's tag, collected as they finish.

    >>> tasks = RayTasks(compute, num_cpus=1, per_slot=2)           # doctest: +SKIP
    >>> tasks.submit(tag, *args)                                    # while tasks.has_room
    >>> done = tasks.wait()      # [(tag, result, None) or (tag, None, error)], at least one

    Arguments may be ``ray.put`` references (what many tasks share is then sent once).
    ``per_slot`` bounds the tasks submitted and not yet collected to that many per task the
    cluster can run at once (counted again every :data:`RECOUNT_SECONDS`, as nodes join or
    leave); ``None``: unbounded.
    """

    #: Seconds between counts of the cluster's CPUs.
    RECOUNT_SECONDS = 10.0

    def __init__(self, fn: Callable[..., Any], *, num_cpus: int = 1, retries: int = RAY_RETRIES,
                 per_slot: int | None = None) -> None:  # fmt: skip
        import ray

        self._ray = ray
        self._fn = fn
        self._remote = ray.remote(_guarded).options(num_cpus=num_cpus, max_retries=retries, retry_exceptions=True,
                                                    name=getattr(fn, "__qualname__", "task"))  # fmt: skip
        self.num_cpus = num_cpus
        self.retries = retries
        self.per_slot = per_slot
        self._slots, self._counted = 1, -float("inf")
        self._running: dict[Any, T] = {}  # object ref -> tag
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if 0 < largest < num_cpus:
            warnings.warn(f"Ray tasks of {num_cpus} CPUs: the largest node has {largest:g}, so they wait for a larger "
                          "node to join; give fewer threads", stacklevel=2)  # fmt: skip

    def _room(self) -> int:
        if self.per_slot is None:
            return 1 << 30
        if time.monotonic() - self._counted > self.RECOUNT_SECONDS:
            cpus = self._ray.cluster_resources().get("CPU", 0)
            self._slots, self._counted = max(1, int(cpus // self.num_cpus)), time.monotonic()
        return self.per_slot * self._slots

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def has_room(self) -> bool:
        return len(self._running) < self._room()

    def submit(self, tag: T, *args: Any) -> None:
        self._running[self._remote.remote(self._fn, *args)] = tag

    def wait(self, *, timeout: float | None = None) -> list[tuple[T, Any, BaseException | None]]:
        """The tasks finished by now, waiting for at least one (up to ``timeout`` seconds).

        A task that failed after its retries comes back with its error; a configuration error
        raised in a task is raised here.
        """
        if not self._running:
            return []
        ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=timeout)
        if ready:  # and everything else already finished, without waiting for it
            ready, _ = self._ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
        out: list[tuple[T, Any, BaseException | None]] = []
        for ref in ready:
            tag = self._running.pop(ref)
            try:
                result = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:
                out.append((tag, None, exc))
                continue
            if isinstance(result, _Fatal):
                self.cancel()
                raise result.error
            out.append((tag, result, None))
        return out

    def cancel(self) -> None:
        """Stop every task still running (their results are not wanted any more)."""
        for ref in list(self._running):
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        self._running.clear()
