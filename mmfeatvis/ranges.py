"""Value ranges that keep maps comparable across training steps.

Per-image min-max (mmengine's behaviour) stretches every map to full
contrast, so a map of near-zero activations looks as hot as a saturated one
and two steps cannot be compared. :class:`ValueRangeTracker` instead fixes
one range per (probe, layer) and reuses it at later firings.

A range is a ``(lo, hi)`` tuple of Python floats, or a (2,) tensor that
may still be on the device where it was measured: the tracker does its
arithmetic on the device then, without a host sync, and the pipeline puts
the host copy back with :meth:`ValueRangeTracker.settle`.
"""
from typing import Dict, Hashable, Optional, Tuple, Union

import torch

RANGE_MODES = ('first', 'running', 'per_image')
ValueRange = Tuple[float, float]
RangeLike = Union[ValueRange, torch.Tensor]
# A constant map at the first firing is widened by this, so later maps
# show.
_MIN_WIDTH = 1e-6
# Devices without float64, where ranges stay in the measured dtype.
_NO_FLOAT64 = ('mps', )


def range_floats(value: RangeLike) -> ValueRange:
    """``value`` as a tuple of Python floats (a host copy for a device
    tensor)."""
    if isinstance(value, torch.Tensor):
        lo, hi = value.tolist()
        return float(lo), float(hi)
    return float(value[0]), float(value[1])


def _wide(value: torch.Tensor) -> torch.Tensor:
    """A (2,) range in float64 where the device has it.

    The host does this arithmetic in float64, so float64 on the device
    gives the same numbers (an EMA step or ``lo + 1e-6`` in float32 would
    not).
    """
    if value.device.type in _NO_FLOAT64:
        return value.detach().reshape(2)
    return value.detach().reshape(2).to(torch.float64)


def _pair(lo: Union[float, torch.Tensor],
          hi: Union[float, torch.Tensor]) -> RangeLike:
    """(lo, hi) from bounds of which any may be a 0-d device tensor."""
    if not isinstance(lo, torch.Tensor) and not isinstance(hi, torch.Tensor):
        return float(lo), float(hi)
    # new_full writes a host float with a kernel, not a blocking copy.
    if not isinstance(lo, torch.Tensor):
        lo = hi.new_full((), lo)
    if not isinstance(hi, torch.Tensor):
        hi = lo.new_full((), hi)
    return torch.stack([lo, hi])


def _widened(value: RangeLike) -> RangeLike:
    """``value`` with hi > lo: a constant map's range would hide later
    maps."""
    if isinstance(value, torch.Tensor):
        lo, hi = value[0], value[1]
        # torch.where, not an if: comparing on the host would sync.
        return torch.stack([lo, torch.where(hi <= lo, lo + _MIN_WIDTH, hi)])
    if value[1] <= value[0]:
        return value[0], value[0] + _MIN_WIDTH
    return value


def _extreme(a: Union[float, torch.Tensor], b: Union[float, torch.Tensor],
             upper: bool) -> Union[float, torch.Tensor]:
    """max (``upper``) or min of two bounds, numbers or device tensors,
    without a host sync."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.maximum(a, b) if upper else torch.minimum(a, b)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        tensor, number = (a, b) if isinstance(a, torch.Tensor) else (b, a)
        return tensor.clamp(min=number) if upper else tensor.clamp(max=number)
    return max(a, b) if upper else min(a, b)


def union_range(a: RangeLike, b: RangeLike) -> RangeLike:
    """The smallest range covering ``a`` and ``b``; a (2,) tensor, made
    without a host sync, if either is one."""
    return _pair(_extreme(a[0], b[0], upper=False),
                 _extreme(a[1], b[1], upper=True))


class ValueRangeTracker:
    """Keeps one value range per key across firings.

    Args:
        mode (str): ``'first'`` freezes the (robust) range of the first
            firing; ``'running'`` follows an exponential moving average of
            the per-firing ranges, which adapts slowly as activations grow;
            ``'per_image'`` keeps nothing (each map is min-max normalised on
            its own, as mmengine does).
        momentum (float): Weight of the newest range in ``'running'`` mode.
    """

    def __init__(self, mode: str = 'first', momentum: float = 0.1) -> None:
        if mode not in RANGE_MODES:
            raise ValueError(f'Unknown value range mode {mode!r}; choose one '
                             f'of {RANGE_MODES}.')
        if not 0 < momentum <= 1:
            raise ValueError(f'momentum must be in (0, 1], got {momentum}.')
        self.mode = mode
        self.momentum = momentum
        self.ranges: Dict[Hashable, RangeLike] = {}

    def update(self, key: Hashable,
               observed: Optional[RangeLike]) -> Optional[RangeLike]:
        """Record the range observed now and return the one to draw with.

        Args:
            key (Hashable): Identifies the map, e.g. ``(probe, layer)``.
            observed (tuple[float, float] | torch.Tensor | None): This
                firing's range: floats, or a (2,) tensor on any device.

        Returns:
            tuple[float, float] | torch.Tensor | None: The range to
            normalise with, or None for per-image normalisation. It is a
            (2,) tensor on the observed range's device (float64 where the
            device has it) when the observed or the kept range is one, and
            computing it made no host sync.
        """
        if self.mode == 'per_image' or observed is None:
            return None
        if isinstance(observed, torch.Tensor):
            observed = _wide(observed)
        previous = self.ranges.get(key)
        if previous is None:
            current = observed
        elif self.mode == 'first':
            if isinstance(previous, torch.Tensor):
                return previous  # widened when it was kept
            current = previous
        else:
            # Bound by bound, so that floats and tensors mix (a range
            # restored from a checkpoint, one observed on the device).
            weight = self.momentum
            current = _pair(
                previous[0] * (1 - weight) + observed[0] * weight,
                previous[1] * (1 - weight) + observed[1] * weight)
        current = _widened(current)
        self.ranges[key] = current
        return current

    def settle(self, key: Hashable, device_value: torch.Tensor,
               host_value: ValueRange) -> None:
        """Keep the host copy of a range that :meth:`update` left on the
        device, so that later firings and checkpoints need no copy.

        Args:
            key (Hashable): The key given to :meth:`update`.
            device_value (torch.Tensor): The range kept for ``key`` when
                the copy was made; nothing changes if another has been
                kept since.
            host_value (tuple[float, float]): Its value, as floats.
        """
        if self.ranges.get(key) is device_value:
            self.ranges[key] = (float(host_value[0]), float(host_value[1]))

    def state_dict(self) -> Dict[str, list]:
        """Ranges in a form that checkpoints can store (copies any range
        still on a device to the host)."""
        return {
            '\x1f'.join(map(str, key)) if isinstance(key, tuple) else str(key):
            list(range_floats(value))
            for key, value in self.ranges.items()
        }

    def load_state_dict(self, state: Dict[str, list]) -> None:
        """Restore ranges saved by :meth:`state_dict`."""
        for key, value in state.items():
            parts = tuple(key.split('\x1f'))
            self.ranges[parts if len(parts) > 1 else key] = (float(value[0]),
                                                             float(value[1]))
