"""Torch intra-op threading for the small tensor work of the reduce stage."""
import functools
import threading
from typing import Callable, TypeVar

import torch

_Fn = TypeVar('_Fn', bound=Callable)


def one_intraop_thread(fn: _Fn) -> _Fn:
    """Run fn with one torch intra-op thread, then restore the setting.

    The maps here are small (a 128x80x80 mean takes ~0.1 ms on one core).
    With more threads every op ends in an OpenMP barrier, and when the
    cores are busy (dataloader workers during training) each barrier waits
    for a scheduler slice: one squeeze_mean draw measured 24 ms instead of
    1.2 ms on 2 busy cores. Toggling it costs under a microsecond.

    Only the main thread toggles it: ``torch.set_num_threads`` is
    process-wide (it resizes torch's thread pool and clears oneDNN's
    cache), so another thread, such as the hook's writer, must leave it
    alone while the training thread runs.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        if threads == 1 or (threading.current_thread()
                            is not threading.main_thread()):
            return fn(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper  # type: ignore[return-value]
