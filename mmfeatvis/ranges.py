"""Value ranges that keep maps comparable across training steps.

Per-image min-max (mmengine's behaviour) stretches every map to full
contrast, so a map of near-zero activations looks as hot as a saturated one
and two steps cannot be compared. :class:`ValueRangeTracker` instead fixes
one range per (probe, layer) and reuses it at later firings.
"""
from typing import Dict, Hashable, Optional, Tuple

RANGE_MODES = ('first', 'running', 'per_image')
ValueRange = Tuple[float, float]


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
        self.ranges: Dict[Hashable, ValueRange] = {}

    def update(self, key: Hashable,
               observed: Optional[ValueRange]) -> Optional[ValueRange]:
        """Record the range observed now and return the one to draw with.

        Args:
            key (Hashable): Identifies the map, e.g. ``(probe, layer)``.
            observed (tuple[float, float] | None): This firing's range.

        Returns:
            tuple[float, float] | None: The range to normalise with, or None
            for per-image normalisation.
        """
        if self.mode == 'per_image' or observed is None:
            return None
        previous = self.ranges.get(key)
        if previous is None:
            current = observed
        elif self.mode == 'first':
            current = previous
        else:
            weight = self.momentum
            current = (previous[0] * (1 - weight) + observed[0] * weight,
                       previous[1] * (1 - weight) + observed[1] * weight)
        if current[1] <= current[0]:
            # A constant map at the first firing: widen so later maps show.
            current = (current[0], current[0] + 1e-6)
        self.ranges[key] = current
        return current

    def state_dict(self) -> Dict[str, list]:
        """Ranges in a form that checkpoints can store."""
        return {
            '\x1f'.join(map(str, key)) if isinstance(key, tuple) else str(key):
            list(value)
            for key, value in self.ranges.items()
        }

    def load_state_dict(self, state: Dict[str, list]) -> None:
        """Restore ranges saved by :meth:`state_dict`."""
        for key, value in state.items():
            parts = tuple(key.split('\x1f'))
            self.ranges[parts if len(parts) > 1 else key] = (float(value[0]),
                                                             float(value[1]))
