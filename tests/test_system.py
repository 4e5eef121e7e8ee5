"""Machine facts and the one way of limiting threads."""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_info

from emolingua.system import limited_threads, usable_cores


def _blas() -> list[int]:
    return [i["num_threads"] for i in threadpool_info()]


def test_limited_threads_caps_torch_and_blas_and_restores_both():
    before_torch, before_blas = torch.get_num_threads(), _blas()
    with limited_threads(1):
        assert torch.get_num_threads() == 1 and all(n == 1 for n in _blas())
    assert torch.get_num_threads() == before_torch and _blas() == before_blas
    with limited_threads(None):  # no cap: nothing is touched
        assert torch.get_num_threads() == before_torch


def test_usable_cores_is_positive():
    assert usable_cores() >= 1
