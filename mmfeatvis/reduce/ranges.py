"""Value ranges: which values the ends of the colour scale stand for.

The whole policy lives here. The orchestrator measures a map's range (over the
image content, clipped to a percentile) when the tracker asks for it
(:meth:`ValueRangeTracker.needs_measurement`), hands it to
:meth:`ValueRangeTracker.update` and draws with what comes back; it replays
a recorded reduction only for keys whose update is device work alone
(:meth:`ValueRangeTracker.replayable`), and puts host copies back only
where the tracker asks for them (:meth:`ValueRangeTracker.to_settle`).
Modes:

* ``'adaptive'`` keeps each (probe, layer) range across firings, so
  neighbouring steps compare colour for colour, and re-anchors it to the
  current map when the kept range no longer fits: more than
  :data:`REANCHOR_SHARE` of the map beyond one end, or the map spanning
  less than :data:`REANCHOR_WIDTH` of the kept width. Training from
  scratch grows activations by orders of magnitude, and a frozen range
  then saturates every later picture; a re-anchored range is flagged
  (:meth:`ValueRangeTracker.was_reanchored`) so the picture can say so.
  The kept range is a (2,) tensor on the maps' device, computed with
  ``torch.where`` (no host sync); on a GPU it is updated in place, so that
  a recorded reduction (a CUDA graph) that reads and writes it can be
  replayed.
* ``'first'`` freezes the range of the first firing: growth shows as
  saturation, decay as fading.
* ``'running'`` follows an exponential moving average of the ranges.
* ``'per_image'`` draws each map on its own range.
* a ``(lo, hi)`` pair draws every map on that fixed range.

:class:`SeriesRanges` is the checkpoint-series policy of the command line:
one range per (image, layer) for every checkpoint.

A range is a ``(lo, hi)`` tuple of Python floats, or a (2,) tensor that
may still be on the device where it was measured: the tracker does its
arithmetic on the device then, without a host sync, and the orchestrator puts
the host copy back with :meth:`ValueRangeTracker.settle`.

Threads: the training thread calls :meth:`~ValueRangeTracker.update` and
saves checkpoints (:meth:`~ValueRangeTracker.state_dict`) while the writer
thread settles host copies; every method that reads or changes the kept
ranges holds the tracker's lock, so no caller sees a half-updated dict.
"""
import threading
from typing import Dict, Hashable, Iterable, Optional, Sequence, Tuple, Union

import torch

RANGE_MODES = ('adaptive', 'first', 'running', 'per_image')
#: 'adaptive' re-anchors when more than this share of the map's content
#: lies at or beyond one end of the kept range (saturated pixels).
REANCHOR_SHARE = 0.05
#: ... or when the map's own range is narrower than this share of the kept
#: width (the picture would use a sliver of the colour scale).
REANCHOR_WIDTH = 0.25
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
        mode (str | tuple[float, float]): ``'adaptive'``, ``'first'``,
            ``'running'``, ``'per_image'`` (see the module docstring), or a
            fixed ``(lo, hi)``.
        momentum (float): Weight of the newest range in ``'running'`` mode.
    """

    def __init__(self,
                 mode: Union[str, Sequence[float]] = 'adaptive',
                 momentum: float = 0.1) -> None:
        self.fixed: Optional[ValueRange] = None
        if not isinstance(mode, str):
            self.fixed = check_fixed_range(mode)
            mode = 'fixed'
        elif mode not in RANGE_MODES:
            raise ValueError(f'Unknown value range mode {mode!r}; choose one '
                             f'of {RANGE_MODES} or a fixed (lo, hi).')
        if not 0 < momentum <= 1:
            raise ValueError(f'momentum must be in (0, 1], got {momentum}.')
        self.mode = mode
        self.momentum = momentum
        self.ranges: Dict[Hashable, RangeLike] = {}
        self._reanchored: Dict[Hashable, torch.Tensor] = {}
        self._lock = threading.RLock()

    # -- policy: what the orchestrator asks before it measures --
    def needs_measurement(self, key: Hashable) -> bool:
        """Whether :meth:`update` for ``key`` needs this firing's range
        (False: call it with ``observed=None`` and save the device work)."""
        if self.mode == 'fixed':
            return False
        if self.mode == 'first':
            with self._lock:
                return key not in self.ranges
        return True

    def needs_values(self, key: Hashable) -> bool:
        """Whether :meth:`update` for ``key`` looks at the map's values
        (to count the pixels beyond the kept range)."""
        return self.mode == 'adaptive'

    def replayable(self, key: Hashable) -> bool:
        """Whether :meth:`update` for ``key`` is device work alone, so that
        a recorded reduction (which replays device work only) may stand in
        for it: a fixed or a frozen ``'first'`` range (settled to floats),
        ``'per_image'`` (keeps nothing) and ``'adaptive'`` once its kept
        range is a CUDA tensor (updated in place)."""
        if self.mode in ('fixed', 'per_image'):
            return True
        with self._lock:
            kept = self.ranges.get(key)
        if self.mode == 'first':
            return isinstance(kept, tuple)
        return self.mode == 'adaptive' and isinstance(
            kept, torch.Tensor) and kept.device.type == 'cuda'

    def to_settle(self, key: Hashable) -> Optional[torch.Tensor]:
        """The device tensor kept for ``key`` whose host copy should
        replace it (:meth:`settle`), or None. ``'adaptive'`` keeps its
        device tensor, which recorded reductions update in place."""
        if self.mode == 'adaptive':
            return None
        kept = self.kept(key)
        return kept if isinstance(kept, torch.Tensor) else None

    def update(self,
               key: Hashable,
               observed: Optional[RangeLike],
               values: Optional[torch.Tensor] = None) -> Optional[RangeLike]:
        """Record the range observed now and return the one to draw with.

        Args:
            key (Hashable): Identifies the map, e.g. ``(probe, layer)``.
            observed (tuple[float, float] | torch.Tensor | None): This
                firing's range: floats, or a (2,) tensor on any device;
                None where :meth:`needs_measurement` said so.
            values (torch.Tensor, optional): The map's values over the
                image content, for ``'adaptive'``.

        Returns:
            tuple[float, float] | torch.Tensor | None: The range to
            normalise with (None only when nothing was observed or kept).
            It is a (2,) tensor on the observed range's device (float64
            where the device has it) when the observed or the kept range
            is one, and computing it made no host sync.
        """
        if self.mode == 'fixed':
            return self.fixed
        if isinstance(observed, torch.Tensor):
            observed = _wide(observed)
        with self._lock:
            previous = self.ranges.get(key)
            if self.mode == 'per_image':
                return None if observed is None else _widened(observed)
            if observed is None:
                return previous  # not measured: the kept range stands
            if previous is None:
                current = observed
            elif self.mode == 'first':
                return previous  # widened when it was kept
            elif self.mode == 'running':
                # Bound by bound, so that floats and tensors mix (a range
                # restored from a checkpoint, one observed on the device).
                weight = self.momentum
                current = _pair(
                    previous[0] * (1 - weight) + observed[0] * weight,
                    previous[1] * (1 - weight) + observed[1] * weight)
            else:
                current = self._reanchor(key, previous, observed, values)
            current = _widened(current)
            if (self.mode == 'adaptive' and isinstance(previous, torch.Tensor)
                    and previous.device.type == 'cuda'
                    and previous.device == current.device
                    and previous.dtype == current.dtype):
                # In place, so that a recorded graph reads and writes it.
                # Only on a GPU: there the host copy of a firing is a packed
                # snapshot, whereas on the CPU the maps' host copy would be
                # this very tensor.
                previous.copy_(current)
                return previous
            self.ranges[key] = current
            return current

    def _reanchor(self, key: Hashable, previous: RangeLike,
                  observed: RangeLike,
                  values: Optional[torch.Tensor]) -> RangeLike:
        """'adaptive': the kept range, or ``observed`` where it misfits."""
        if values is None:
            raise ValueError("value_range='adaptive' needs the map's values "
                             'to count saturated pixels.')
        values = values.detach()
        if not isinstance(observed, torch.Tensor):
            observed = values.new_tensor(observed, dtype=torch.float64)
        # new_full writes a host float with a kernel, not a blocking copy.
        kept = (previous if isinstance(previous, torch.Tensor) else
                torch.stack([observed.new_full((), b) for b in previous]))
        lo, hi = kept[0], kept[1]
        below = (values <= lo).float().mean()
        above = (values >= hi).float().mean()
        narrow = (observed[1] - observed[0]) < REANCHOR_WIDTH * (hi - lo)
        misfit = (below > REANCHOR_SHARE) | (above > REANCHOR_SHARE) | narrow
        self._reanchored[key] = misfit
        # torch.where, not an if: deciding on the host would sync.
        return torch.where(misfit, observed, kept.to(observed.dtype))

    def was_reanchored(self, key: Hashable) -> Optional[torch.Tensor]:
        """For ``'adaptive'``: a 0-d bool tensor, True when the last
        :meth:`update` of ``key`` replaced its kept range; else None."""
        with self._lock:
            return self._reanchored.pop(key, None)

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
        with self._lock:
            if self.ranges.get(key) is device_value:
                self.ranges[key] = (float(host_value[0]),
                                    float(host_value[1]))

    def kept(self, key: Hashable) -> Optional[RangeLike]:
        """The range kept for ``key`` (None when there is none)."""
        with self._lock:
            return self.ranges.get(key)

    def state_dict(self) -> Dict[str, list]:
        """Ranges in a form that checkpoints can store (copies any range
        still on a device to the host)."""
        with self._lock:
            items = list(self.ranges.items())
        return {
            '\x1f'.join(map(str, key)) if isinstance(key, tuple) else str(key):
            list(range_floats(value))
            for key, value in items
        }

    def load_state_dict(self, state: Dict[str, list]) -> None:
        """Restore ranges saved by :meth:`state_dict`."""
        with self._lock:
            for key, value in state.items():
                parts = tuple(key.split('\x1f'))
                self.ranges[parts if len(parts) > 1 else key] = (
                    float(value[0]), float(value[1]))


def check_fixed_range(value: Sequence[float]) -> ValueRange:
    """``value`` as a fixed ``(lo, hi)`` with lo < hi, or ValueError."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        lo = hi = float('nan')
    if not lo < hi:
        raise ValueError(f'a fixed value range must be (lo, hi) with lo < '
                         f'hi, got {value!r}; or choose one of '
                         f'{RANGE_MODES}.')
    return lo, hi


SHARED_MODES = ('union', 'last')


class SeriesRanges(ValueRangeTracker):
    """One range per (image, layer) for every checkpoint of a series.

    While the checkpoints' maps are reduced, :meth:`update` records what
    each spans and draws nothing yet; :meth:`apply` then gives every
    reduced layer the shared range before rendering:

    * ``'union'``: the smallest range covering every checkpoint, so no map
      saturates and a colour means the same value in every frame;
    * ``'last'``: the range of the last checkpoint, the trained model's
      scale (earlier, larger, activations are clipped).

    Args:
        mode (str): ``'union'`` or ``'last'``.
    """

    def __init__(self, mode: str) -> None:
        if mode not in SHARED_MODES:
            raise ValueError(f'Unknown shared range mode {mode!r}; choose '
                             f'one of {SHARED_MODES}.')
        super().__init__('per_image')
        self.mode = mode

    def start_recording(self) -> None:
        """Forget the ranges of earlier images."""
        with self._lock:
            self.ranges = {}

    def needs_measurement(self, key: Hashable) -> bool:
        """Every checkpoint's range is measured."""
        return True

    def needs_values(self, key: Hashable) -> bool:
        """Only ranges are merged."""
        return False

    def replayable(self, key: Hashable) -> bool:
        """The shared range changes with every checkpoint, on the host."""
        return False

    def update(self,
               key: Hashable,
               observed: Optional[RangeLike],
               values: Optional[torch.Tensor] = None) -> Optional[RangeLike]:
        """Merge ``observed`` into the shared range of ``key`` and return
        ``observed``, the checkpoint's own range, until :meth:`apply`.

        Checkpoints come in order, so ``'last'`` keeps the last one seen.
        A range observed as a device tensor is merged on the device.
        """
        if observed is None:
            return None
        if isinstance(observed, torch.Tensor):
            observed = _wide(observed)
        with self._lock:
            previous = self.ranges.get(key)
            if previous is not None and self.mode == 'union':
                self.ranges[key] = union_range(previous, observed)
            else:
                self.ranges[key] = observed
        return _widened(observed)

    def shared(self, key: Hashable) -> Optional[ValueRange]:
        """The range every checkpoint is drawn with, as floats."""
        value = self.kept(key)
        return None if value is None else range_floats(_widened(value))

    def apply(self, maps: Iterable) -> None:
        """Give every reduced layer of ``maps`` (:class:`ProbeMaps`) its
        shared range; its own stays in ``own_range``."""
        for probe_maps in maps:
            for item in probe_maps.layers:
                shared = self.shared((probe_maps.probe.name, item.layer))
                if shared is not None:
                    item.own_range = item.norm_range
                    item.norm_range = shared
