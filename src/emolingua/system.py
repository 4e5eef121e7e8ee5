"""Facts about the machine that every layer sizes its work by.

>>> usable_cores()        # doctest: +SKIP
2
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

__all__ = ["limited_threads", "usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS tells, else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """At most ``threads`` BLAS/OpenMP and torch threads inside; both are restored on exit.

    ``None`` leaves everything as it is. Parallel jobs use it so that workers x threads never
    exceeds the cores, and models use it so that fitting never leaves the caller's thread
    count changed.

    >>> with limited_threads(1):      # doctest: +SKIP
    ...     model.fit(train)
    """
    if not threads:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")  # only when torch is in use: limiting it must not import it
    before = torch.get_num_threads() if torch is not None else None
    try:
        with threadpool_limits(limits=threads):
            if torch is not None:
                torch.set_num_threads(threads)
            yield
    finally:
        if before is not None:
            torch.set_num_threads(before)
