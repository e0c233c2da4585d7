"""Torch intra-op threading for the small tensor work of the reduce stage."""
import functools
from typing import Callable, TypeVar

import torch

_Fn = TypeVar('_Fn', bound=Callable)


def one_intraop_thread(fn: _Fn) -> _Fn:
    """Run fn with one torch intra-op thread, then restore the setting.

    The maps here are small (a 128x80x80 mean takes ~0.1 ms on one core).
    With more threads every op ends in an OpenMP barrier, and when the
    cores are busy (dataloader workers during training) each barrier waits
    for a scheduler slice: one squeeze_mean draw measured 24 ms instead of
    1.2 ms on 2 busy cores. The setting is per calling thread in OpenMP
    builds and toggling it costs under a microsecond.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        if threads == 1:
            return fn(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper  # type: ignore[return-value]
