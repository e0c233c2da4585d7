"""Torch intra-op threading for the small tensor work of the reduce stage."""
import ctypes
import functools
import os
import re
import threading
from typing import Callable, Iterator, List, Optional, TypeVar

import torch

_Fn = TypeVar('_Fn', bound=Callable)

#: File names of the OpenMP runtimes torch builds link: GNU's (possibly
#: renamed with a hash by the wheel's repair step), LLVM's and Intel's.
_OPENMP_NAME = re.compile(r'^lib(gomp|omp|iomp5)(-[0-9a-f]+)?\.so')


def one_intraop_thread(fn: _Fn) -> _Fn:
    """Run fn with one torch intra-op thread, then restore the setting.

    The maps here are small (a 128x80x80 mean takes ~0.1 ms on one core).
    With more threads every op ends in an OpenMP barrier, and when the
    cores are busy (dataloader workers during training) each barrier waits
    for a scheduler slice: one squeeze_mean draw measured 24 ms instead of
    1.2 ms on 2 busy cores.

    Where torch's OpenMP runtime can be found (Linux), only the calling
    thread's OpenMP thread count changes. ``torch.set_num_threads`` would
    also clear oneDNN's cache of forward convolutions, which the next
    training step then builds again. Elsewhere ``torch.set_num_threads``
    is used, and since it is process-wide, only the main thread toggles
    it: another thread, such as the hook's writer, leaves it alone while
    the training thread runs.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        if threads == 1 or (threading.current_thread()
                            is not threading.main_thread()):
            return fn(*args, **kwargs)
        set_threads = _thread_count_setter()
        set_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            set_threads(threads)

    return wrapper  # type: ignore[return-value]


def _thread_count_setter() -> Callable[[int], None]:
    """This thread's OpenMP ``omp_set_num_threads`` where torch is seen to
    follow it, else ``torch.set_num_threads``."""
    runtime = _openmp_runtime()
    return torch.set_num_threads if runtime is None else (
        runtime.omp_set_num_threads)


@functools.lru_cache(maxsize=None)
def _openmp_runtime() -> Optional[ctypes.CDLL]:
    """The loaded OpenMP runtime whose thread count torch reads, checked by
    setting it and reading ``torch.get_num_threads()`` back; None where
    there is none (another parallel backend, not Linux) or the check fails.

    Called with more than one intra-op thread (else nothing could be told).
    """
    threads = torch.get_num_threads()
    for path in _loaded_openmp_libraries():
        try:
            runtime = ctypes.CDLL(path)  # the loaded one: dlopen reuses it
            set_threads = runtime.omp_set_num_threads
        except (OSError, AttributeError):
            continue
        set_threads.argtypes = [ctypes.c_int]
        set_threads(1)
        followed = torch.get_num_threads() == 1
        set_threads(threads)
        if followed and torch.get_num_threads() == threads:
            return runtime
    return None


def _loaded_openmp_libraries() -> List[str]:
    """Paths of the OpenMP runtimes mapped into this process."""
    return sorted({
        path
        for path in _mapped_files()
        if _OPENMP_NAME.match(os.path.basename(path))
    })


def _mapped_files() -> Iterator[str]:
    try:
        with open('/proc/self/maps') as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith('/'):
                    yield fields[5].strip()
    except OSError:  # not Linux
        return
