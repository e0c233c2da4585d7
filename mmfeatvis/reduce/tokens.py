"""Feature maps of any layout brought to (C, H, W): CNN maps as they are,
transformer tokens (ViT, Swin, DETR) laid out on their grid."""
import math
import warnings
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .nonfinite import replace_nonfinite
from .threads import one_intraop_thread

LAYOUTS = ('auto', 'chw', 'tokens')

# ViT-style models put up to a handful of extra tokens (class, distillation,
# registers) before the patch tokens.
MAX_PREFIX_TOKENS = 16

# Grid search score: |log aspect error| + this per dropped token, so that a
# near-exact grid after dropping 1 token beats a slightly closer grid after
# dropping 7 (N=601 at 480x640 -> 20x30, not 22x27).
_DROP_PENALTY = 0.05

Featmap = Union[torch.Tensor, np.ndarray]


def _closest_factor_pair(n: int, aspect: float) -> Tuple[int, int, float]:
    """Return (h, w, |log((h/w)/aspect)|) with h*w == n closest to aspect."""
    best = (1, n, math.inf)
    log_aspect = math.log(aspect)
    for d in range(1, math.isqrt(n) + 1):
        if n % d:
            continue
        for h, w in ((d, n // d), (n // d, d)):
            err = abs(math.log(h / w) - log_aspect)
            if err < best[2]:
                best = (h, w, err)
    return best


def infer_token_grid(
        num_tokens: int,
        image_hw: Optional[Sequence[int]] = None) -> Tuple[int, int, int]:
    """Guess how a sequence of transformer tokens forms a patch grid.

    Leading tokens (class, distillation, register tokens) are dropped until
    the rest factors as ``h * w`` with ``h / w`` close to the image aspect;
    dropping few tokens is preferred.

    Args:
        num_tokens (int): Number of tokens N.
        image_hw (Sequence[int], optional): (H, W) of the network input.
            Defaults to None, meaning a square input.

    Returns:
        tuple[int, int, int]: (num_dropped_prefix_tokens, h, w).
    """
    if num_tokens < 1:
        raise ValueError(f'cannot form a grid from {num_tokens} tokens')
    aspect = 1.0
    if image_hw is not None:
        if image_hw[0] <= 0 or image_hw[1] <= 0:
            raise ValueError(f'image_hw must be positive, got {image_hw}')
        aspect = image_hw[0] / image_hw[1]
    best = None
    for drop in range(min(MAX_PREFIX_TOKENS, num_tokens - 1) + 1):
        h, w, err = _closest_factor_pair(num_tokens - drop, aspect)
        score = err + _DROP_PENALTY * drop
        if best is None or score < best[0]:
            best = (score, drop, h, w)
    _, drop, h, w = best
    if abs(math.log(h / w / aspect)) > math.log(2):
        warnings.warn(
            f'{num_tokens} tokens do not form a grid close to the image '
            f'aspect {aspect:.3f}; using {h}x{w} after dropping {drop} '
            'leading tokens. Pass grid_hw to set the grid explicitly.')
    return drop, h, w


def _tokens_to_chw(tokens: torch.Tensor, image_hw: Optional[Sequence[int]],
                   grid_hw: Optional[Sequence[int]]) -> torch.Tensor:
    num, channels = tokens.shape
    if grid_hw is not None:
        h, w = int(grid_hw[0]), int(grid_hw[1])
        if h < 1 or w < 1 or h * w > num:
            raise ValueError(
                f'grid_hw={tuple(grid_hw)} needs {h * w} patch tokens but '
                f'the featmap has {num} tokens')
        drop = num - h * w
    else:
        drop, h, w = infer_token_grid(num, image_hw)
    # Tokens are in raster order, so (n, C) -> (C, n) -> (C, h, w); made
    # contiguous so reductions sum in the same order as for a CNN map.
    grid = tokens[drop:].transpose(0, 1).reshape(channels, h, w)
    return grid.contiguous()


def _shape_error(shape: Sequence[int], why: str) -> ValueError:
    return ValueError(
        f'featmap must be (C, H, W), (1, C, H, W), tokens (N, C) or '
        f'(1, N, C) with layout="tokens"; got shape {tuple(shape)}: {why}')


@one_intraop_thread
def to_chw(featmap: Featmap,
           image_hw: Optional[Sequence[int]] = None,
           *,
           layout: str = 'auto',
           grid_hw: Optional[Sequence[int]] = None,
           sanitize: bool = True) -> torch.Tensor:
    """Bring a feature map into a finite float32 (C, H, W) tensor.

    Args:
        featmap (torch.Tensor | np.ndarray): (C, H, W), (1, C, H, W), or
            transformer tokens (N, C) / (1, N, C). A 3-D tensor with a
            leading 1 is ambiguous, so it is a 1-channel map unless
            ``layout='tokens'``.
        image_hw (Sequence[int], optional): (H, W) of the network input,
            used to pick the token grid's aspect. Defaults to None.
        layout (str): 'auto', 'chw' (2-D input is one (H, W) map) or
            'tokens'. Defaults to 'auto'.
        grid_hw (Sequence[int], optional): Token grid (h, w); leading
            tokens beyond h*w are dropped. Defaults to None (inferred).
        sanitize (bool): Replace NaN/Inf. False leaves that to
            :func:`reduce_chw`, which checks only its small result.
            Defaults to True.

    Returns:
        torch.Tensor: float32 (C, H, W) on the input's device. NaN becomes
        0 and +/-Inf the finite max/min, with a warning giving the counts.
    """
    if isinstance(featmap, np.ndarray):
        featmap = torch.from_numpy(np.ascontiguousarray(featmap))
    if not isinstance(featmap, torch.Tensor):
        raise TypeError('featmap must be a torch.Tensor or np.ndarray, got '
                        f'{type(featmap).__name__}')
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    x = featmap.detach()
    shape = tuple(x.shape)
    if x.numel() == 0:
        raise _shape_error(shape, 'it is empty')
    if x.ndim == 4:
        if shape[0] != 1:
            raise _shape_error(
                shape, f'a batch of {shape[0]}; pass one sample, '
                'e.g. featmap[i]')
        x = x[0]
    elif x.ndim == 3 and layout == 'tokens':
        if shape[0] != 1:
            raise _shape_error(shape, 'tokens need a batch of 1')
        x = _tokens_to_chw(x[0], image_hw, grid_hw)
    elif x.ndim == 2:
        if layout == 'chw':
            x = x[None]
        else:
            if shape[0] < 2 and grid_hw is None:
                raise _shape_error(shape, 'a single token has no spatial '
                                   'extent')
            x = _tokens_to_chw(x, image_hw, grid_hw)
    elif x.ndim != 3:
        raise _shape_error(shape, f'{x.ndim}-D input has no layout to '
                           'draw')
    if x.dtype != torch.float32:
        x = x.float()
    return replace_nonfinite(x) if sanitize else x
