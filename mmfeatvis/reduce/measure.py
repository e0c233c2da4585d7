"""Value ranges and statistics of reduced maps, measured on their device.

The ``*_tensor`` functions leave their result on the device (no host
synchronisation); the others copy a few floats to the host.
"""
import math
from typing import Optional, Sequence, Tuple

import torch

from .featmap import ReducedFeatmap
from .stats import quantiles
from .threads import one_intraop_thread

# torch.quantile refuses larger inputs.
_QUANTILE_MAX = 1 << 24


def _range_of(values: torch.Tensor,
              percentile: Optional[Sequence[float]]) -> torch.Tensor:
    """(2,) lo/hi of a flat tensor, plain or percentile-clipped."""
    if percentile is None:
        return torch.stack([values.min(), values.max()])
    if values.numel() > _QUANTILE_MAX:
        # Strided subsample: quantiles need no more than this many values.
        values = values[::math.ceil(values.numel() / _QUANTILE_MAX)]
    return quantiles(values, (percentile[0] / 100, percentile[1] / 100))


def check_percentile(percentile: Optional[Sequence[float]]) -> None:
    """Raise ValueError unless percentile is None or 0 <= lo < hi <= 100."""
    if percentile is None:
        return
    if (len(percentile) != 2 or not 0 <= percentile[0] < percentile[1] <= 100):
        raise ValueError('percentile must be (lo, hi) with 0 <= lo < hi <= '
                         f'100, e.g. (1, 99); got {percentile!r}')


@one_intraop_thread
def map_ranges(reduced: ReducedFeatmap,
               percentile: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Per-map value ranges, on device.

    Args:
        reduced (ReducedFeatmap): Reduced maps.
        percentile (Sequence[float], optional): (lo, hi) percentiles to clip
            to, e.g. (1, 99). Defaults to None: plain min and max.

    Returns:
        torch.Tensor: (K, 2) float32 ranges; all rows equal when
        ``reduced.joint``.
    """
    check_percentile(percentile)
    maps = reduced.maps
    if reduced.joint:
        rng = _range_of(maps.reshape(-1), percentile)
        return rng.expand(maps.shape[0], 2)
    if percentile is None:
        flat = maps.reshape(maps.shape[0], -1)
        return torch.stack([flat.amin(dim=1), flat.amax(dim=1)], dim=1)
    return torch.stack([_range_of(m.reshape(-1), percentile) for m in maps])


@one_intraop_thread
def measure_range_tensor(
        reduced: ReducedFeatmap,
        percentile: Optional[Sequence[float]] = None) -> torch.Tensor:
    """One (lo, hi) range over all maps, left on the maps' device.

    Args:
        reduced (ReducedFeatmap): Reduced maps.
        percentile (Sequence[float], optional): (lo, hi) percentiles, e.g.
            (1, 99). Defaults to None: plain min and max.

    Returns:
        torch.Tensor: (2,) lo, hi, of the maps' dtype; no host sync.
    """
    check_percentile(percentile)
    return _range_of(reduced.maps.reshape(-1), percentile)


def measure_range(
        reduced: ReducedFeatmap,
        percentile: Optional[Sequence[float]] = None) -> Tuple[float, float]:
    """One (lo, hi) range over all maps, e.g. to freeze as ``norm_range``.

    Args:
        reduced (ReducedFeatmap): Reduced maps.
        percentile (Sequence[float], optional): (lo, hi) percentiles, e.g.
            (1, 99). Defaults to None: plain min and max.

    Returns:
        tuple[float, float]: (lo, hi) as Python floats (one host copy of
        :func:`measure_range_tensor`).
    """
    lo, hi = measure_range_tensor(reduced, percentile).tolist()
    return float(lo), float(hi)
