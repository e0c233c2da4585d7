"""Stage "reduce": NaN and Inf in captured maps, with and without syncs.

On the CPU a data-dependent branch costs nothing, so :func:`replace_nonfinite`
looks first and warns at once. On an accelerator every such look is a host
synchronisation, so :func:`sanitize_nonfinite` always replaces and leaves
the counts on the device, for whoever copies results to the host anyway to
warn with :func:`nonfinite_message`.
"""
import math
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch


def nonfinite_message(shape: Sequence[int],
                      num_nan: int,
                      num_inf: int,
                      layer: Optional[str] = None) -> str:
    """The warning given for a map with NaN or Inf values.

    Args:
        shape (Sequence[int]): Shape of the map that had them.
        num_nan (int): NaN values in it.
        num_inf (int): +/-Inf values in it.
        layer (str, optional): Layer that produced the map, named first
            when known. Defaults to None.

    Returns:
        str: The message.
    """
    prefix = '' if layer is None else f'layer {layer!r}: '
    return (f'{prefix}featmap of shape {tuple(shape)} has {num_nan} NaN and '
            f'{num_inf} Inf values out of {math.prod(shape)}; NaN is drawn '
            'as 0 and +/-Inf as the largest/smallest finite value')


@dataclass
class NonfiniteCounts:
    """NaN and Inf counts of a map, still on the map's device.

    Attributes:
        counts (torch.Tensor): int64 (2,): NaN count, Inf count.
        shape (tuple[int, ...]): Shape of the map they were counted in.
    """

    counts: torch.Tensor
    shape: Tuple[int, ...]

    def warn(self,
             host_counts: Optional[torch.Tensor] = None,
             layer: Optional[str] = None) -> None:
        """Warn if there were any, as :func:`replace_nonfinite` does.

        Args:
            host_counts (torch.Tensor, optional): :attr:`counts` already
                copied to the host; None copies them here (a sync).
            layer (str, optional): Layer named in the warning.
        """
        counts = self.counts if host_counts is None else host_counts
        num_nan, num_inf = (int(v) for v in counts.tolist())
        if num_nan or num_inf:
            warnings.warn(
                nonfinite_message(self.shape, num_nan, num_inf, layer),
                stacklevel=2)


def replace_nonfinite(x: torch.Tensor) -> torch.Tensor:
    """NaN -> 0 and +/-Inf -> the finite max/min, warning with the counts.

    Returns ``x`` itself when it is all finite. Meant for the CPU: the
    checks and counts are host syncs on an accelerator (see
    :func:`sanitize_nonfinite`).
    """
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return x
    num_nan = int(torch.isnan(x).sum())
    num_inf = x.numel() - int(finite.sum()) - num_nan
    if bool(finite.any()):
        hi = x[finite].max()
        lo = x[finite].min()
    else:
        hi = lo = x.new_zeros(())
    warnings.warn(nonfinite_message(x.shape, num_nan, num_inf))
    x = torch.where(torch.isnan(x), torch.zeros_like(x), x)
    return torch.where(torch.isinf(x), torch.where(x > 0, hi, lo), x)


def sanitize_nonfinite(
        x: torch.Tensor) -> Tuple[torch.Tensor, NonfiniteCounts]:
    """:func:`replace_nonfinite` without a host sync and without a warning.

    Always makes a new tensor (a few elementwise passes, cheap on a GPU),
    equal to ``x`` where ``x`` is finite, and equal to what
    :func:`replace_nonfinite` returns elsewhere.

    Args:
        x (torch.Tensor): Floating-point tensor, on any device.

    Returns:
        tuple[torch.Tensor, NonfiniteCounts]: The finite tensor, and the
        NaN and Inf counts of ``x``, on its device.
    """
    # Few ops: on an accelerator each costs a launch, whatever its size.
    counts = torch.stack([torch.isnan(x).sum(), torch.isinf(x).sum()])
    # The finite max/min without x[finite] (boolean indexing needs the
    # count on the host). With no finite value they are -/+inf, which
    # become 0 as in replace_nonfinite.
    inf = math.inf
    hi = x.nan_to_num(-inf, -inf, -inf).amax().nan_to_num(neginf=0.)
    lo = x.nan_to_num(inf, inf, inf).amin().nan_to_num(posinf=0.)
    # Finite values lie in [lo, hi] and stay; +/-Inf clamp to hi/lo. NaN
    # passes clamp unchanged and then becomes 0.
    clean = x.clamp(lo, hi).nan_to_num_(0.)
    return clean, NonfiniteCounts(counts, tuple(x.shape))
