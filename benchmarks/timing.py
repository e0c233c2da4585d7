"""Timing helpers shared by the benchmark scripts."""
import time
from typing import Any, Callable, Dict, List


def alternate(fns: Dict[str, Callable[[], Any]],
              repeats: int,
              warmups: int = 1) -> Dict[str, List[float]]:
    """Call the functions in turn ``repeats`` times, after ``warmups``
    untimed calls of each (allocator, lazy imports, first-call caches).

    Taking turns spreads the machine's drift (clock, other load) over all
    of them alike, so their ratios hold within one run.

    Args:
        fns (dict[str, callable]): What to time, by name. A function that
            returns a number times itself (e.g. with CUDA events, after
            synchronising); the others are timed with ``perf_counter``.
        repeats (int): Timed calls of each.
        warmups (int): Untimed calls of each first.

    Returns:
        dict[str, list[float]]: Seconds of each call, by name.
    """
    for fn in fns.values():
        for _ in range(warmups):
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            own = fn()
            elapsed = time.perf_counter() - start
            times[name].append(
                float(own) if isinstance(own, (int, float)) else elapsed)
    return times
