"""Stage "reduce": quantiles and activation statistics as device tensors.

Nothing here copies to or from the host, so on an accelerator the results
can travel with the reduced maps in one copy (see
:mod:`mmfeatvis.cuda.transfer`).
"""
import math
from typing import Dict, Sequence

import numpy as np
import torch

from .threads import one_intraop_thread
from .tokens import Featmap

#: Order of the values in :func:`activation_stats_tensor`.
STATS_KEYS = ('mean', 'std', 'max', 'min', 'nonpos_ratio', 'nonfinite_ratio')


def quantiles(values: torch.Tensor, q: Sequence[float]) -> torch.Tensor:
    """``torch.quantile(values, q)`` for host q, without a host copy.

    The ranks are known on the host (``q * (n - 1)``, in the values'
    precision, as torch.quantile computes them), so only the order
    statistics next to them are found: with ``topk`` from the nearer end
    when they lie near the ends, as percentile clipping's (1, 99) do, which
    on the CPU costs a fraction of torch.quantile's full sort; otherwise
    with a sort. They are interpolated with ``torch.lerp`` as
    torch.quantile does, so the numbers are the same bit for bit; a NaN
    anywhere makes every quantile NaN, as there. Host values reach the
    device as kernel arguments (fills), never as a copy from pageable
    memory, which would block until the device caught up.

    Args:
        values (torch.Tensor): float32 or float64 values, reduced over all
            elements (torch.quantile's limit of 2**24 of them holds).
        q (Sequence[float]): Quantiles in [0, 1], 'linear' interpolation.

    Returns:
        torch.Tensor: (len(q),) on values' device, of values' dtype.
    """
    if not all(0 <= v <= 1 for v in q):
        raise ValueError(f'quantiles must be in [0, 1], got {tuple(q)}')
    flat = values.reshape(-1)
    count = flat.numel()
    precision = np.float64 if flat.dtype == torch.float64 else np.float32
    ranks = np.asarray(q, dtype=precision) * precision(count - 1)
    below = np.floor(ranks).astype(np.int64)
    above = np.ceil(ranks).astype(np.int64)
    weights = ranks - below.astype(precision)
    needed = np.concatenate([below, above])
    order = _order_statistics(flat, needed)
    result = torch.lerp(
        order[:len(q)], order[len(q):],
        torch.stack([flat.new_full((), float(w)) for w in weights]))
    return torch.where(flat.isnan().any(), math.nan, result)


def _order_statistics(flat: torch.Tensor,
                      ranks: np.ndarray) -> torch.Tensor:
    """The values at ``ranks`` of ascending ``flat``, as one tensor."""
    count = flat.numel()
    low = [int(r) for r in ranks if r < count - r]
    high = [int(r) for r in ranks if r >= count - r]
    from_low = max(low) + 1 if low else 0
    from_high = count - min(high) if high else 0
    if from_low + from_high > count // 8:
        ascending = torch.sort(flat).values
        return torch.stack([ascending[int(rank)] for rank in ranks])
    picked = []
    smallest = (
        torch.topk(flat, from_low, largest=False).values if low else None)
    largest = torch.topk(flat, from_high).values if high else None
    for rank in ranks:
        rank = int(rank)
        picked.append(smallest[rank] if rank < count -
                      rank else largest[count - 1 - rank])
    return torch.stack(picked)


@one_intraop_thread
def activation_stats_tensor(featmap: torch.Tensor) -> torch.Tensor:
    """Summary statistics of a feature map, left on its device.

    Non-finite values are left out of every statistic. On the CPU a map
    whose values are all finite (nearly always) takes a three-pass path;
    elsewhere one path without host synchronisation serves every map.

    Args:
        featmap (torch.Tensor): Any shape, at least 1 value.

    Returns:
        torch.Tensor: float32 (6,) in the order of :data:`STATS_KEYS`:
        'mean', 'std' (population), 'max', 'min', 'nonpos_ratio' (share of
        values <= 0, e.g. dead ReLU outputs) and 'nonfinite_ratio'.
        Statistics of a map with no finite value are NaN.
    """
    if isinstance(featmap, np.ndarray):
        featmap = torch.from_numpy(featmap)
    if not isinstance(featmap, torch.Tensor):
        raise TypeError('featmap must be a torch.Tensor or np.ndarray, got '
                        f'{type(featmap).__name__}')
    if featmap.numel() == 0:
        raise ValueError('activation_stats needs a non-empty featmap, got '
                         f'shape {tuple(featmap.shape)}')
    x = _flat(featmap.detach()).float()
    if x.device.type == 'cpu':
        stats = _finite_stats(x)
        if bool(torch.isfinite(stats).all()):
            return stats
    # Few ops: on an accelerator each costs a launch, whatever its size.
    finite = torch.isfinite(x)
    count = finite.sum()
    mean = torch.where(finite, x, 0.).sum() / count
    var = torch.where(finite, (x - mean)**2, 0.).sum() / count
    inf = math.inf
    big = x.nan_to_num(-inf, -inf, -inf).amax()
    small = x.nan_to_num(inf, inf, inf).amin()
    nonpos = (finite & (x <= 0)).sum() / count
    # Counted, not 1 - share: float32 cancellation would lose digits.
    nonfinite = (x.numel() - count) / x.numel()
    stats = torch.stack([mean, var.sqrt(), big, small, nonpos, nonfinite])
    stats = torch.where(count > 0, stats, math.nan)
    stats[5] = nonfinite
    return stats


def _flat(featmap: torch.Tensor) -> torch.Tensor:
    """All values of ``featmap`` in one dimension, in memory order: a view,
    not a copy, of a channels-last map too (the statistics do not depend
    on the order)."""
    if featmap.dim() == 4 and not featmap.is_contiguous() and (
            featmap.is_contiguous(memory_format=torch.channels_last)):
        return featmap.permute(0, 2, 3, 1).reshape(-1)
    return featmap.reshape(-1)


def _finite_stats(x: torch.Tensor) -> torch.Tensor:
    """The statistics of a flat map in three passes, right when every value
    is finite, which the result itself shows: NaN makes the mean NaN and
    +/-Inf the max or min infinite (float32 overflow of the variance
    shows too, and the caller then takes the careful path)."""
    # Two passes with a dot product: torch.var_mean's Welford loop is
    # about ten times slower on the CPU, and this runs on the training
    # thread at every firing.
    mean = x.mean()
    centred = x - mean
    var = torch.dot(centred, centred) / x.numel()
    small, big = torch.aminmax(x)
    nonpos = (x <= 0).sum() / x.numel()
    return torch.stack(
        [mean, var.sqrt(), big, small, nonpos,
         torch.zeros_like(mean)])


def activation_stats(featmap: Featmap) -> Dict[str, float]:
    """Summary statistics of a feature map, computed on its device.

    Non-finite values are left out of every statistic.

    Args:
        featmap (torch.Tensor | np.ndarray): Any shape, at least 1 value.

    Returns:
        dict[str, float]: 'mean', 'std' (population), 'max', 'min',
        'nonpos_ratio' (share of values <= 0, e.g. dead ReLU outputs) and
        'nonfinite_ratio', as Python floats from one host copy of
        :func:`activation_stats_tensor`. Statistics of a
        map with no finite value are NaN.
    """
    return dict(zip(STATS_KEYS, activation_stats_tensor(featmap).tolist()))
