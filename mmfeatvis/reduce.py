"""Stage "reduce": turn one captured feature map into a few 2-D maps.

Everything here is torch and runs on the tensor's own device. Off the CPU
the path that :class:`~mmfeatvis.pipeline.FeatmapPipeline` takes
(:func:`reduce_chw`, :func:`value_range_tensor`,
:func:`~mmfeatvis.stats.activation_stats_tensor`) makes no host
synchronisation except in 'pca' (an eigensolver) and the first use of a
resize size; the float-returning wrappers copy their scalars to the host.
"""
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .nonfinite import NonfiniteCounts, replace_nonfinite, sanitize_nonfinite
from .stats import STATS_KEYS, activation_stats_tensor, quantiles
from .threads import one_intraop_thread

CHANNEL_REDUCTIONS = ('squeeze_mean', 'select_max', 'pca', 'norm', 'std')
LAYOUTS = ('auto', 'chw', 'tokens')
# ViT-style models put up to a handful of extra tokens (class, distillation,
# registers) before the patch tokens.
MAX_PREFIX_TOKENS = 16
# Grid search score: |log aspect error| + this per dropped token, so that a
# near-exact grid after dropping 1 token beats a slightly closer grid after
# dropping 7 (N=601 at 480x640 -> 20x30, not 22x27).
_DROP_PENALTY = 0.05
# torch.quantile refuses larger inputs.
_QUANTILE_MAX = 1 << 24
# Subspace iterations for PCA; plenty for the top 3 of real feature maps.
_PCA_ITERS = 16

Featmap = Union[torch.Tensor, np.ndarray]


@dataclass
class ReducedFeatmap:
    """Maps produced by :func:`reduce_featmap`, still on the input's device.

    Attributes:
        maps (torch.Tensor): Float32 maps of shape (K, h, w).
        channels (torch.Tensor, optional): Int64 channel index of each map
            for 'select_max' and top-k selection, else None.
        kind (str): 'heat' (each map is coloured with a colormap) or 'rgb'
            (the 3 maps are the R, G, B planes of one picture).
        mode (str): The reduction that made it: one of
            :data:`CHANNEL_REDUCTIONS`, 'topk' or 'image'.
        joint (bool): Whether one value range is shared by all maps when
            normalizing (a 3-channel image) instead of one range per map.
        nonfinite (NonfiniteCounts, optional): NaN/Inf counts of the input
            whose warning is still due, on the maps' device: set by
            :func:`reduce_chw` when it ran without host syncs. The pipeline
            warns after its host copy and clears it;
            :func:`~mmfeatvis.draw.render_reduced` warns if it is set.
        basis (torch.Tensor, optional): For 'pca', the (C, 3) channel
            loadings of the components, signs fixed; pass it as
            ``pca_reference`` when reducing the same layer again so that
            its colours keep their meaning.
    """

    maps: torch.Tensor
    channels: Optional[torch.Tensor]
    kind: str
    mode: str
    joint: bool = False
    nonfinite: Optional[NonfiniteCounts] = None
    basis: Optional[torch.Tensor] = None

    @property
    def hw(self) -> Tuple[int, int]:
        """(h, w) of the maps."""
        return int(self.maps.shape[-2]), int(self.maps.shape[-1])

    @property
    def is_grid(self) -> bool:
        """Whether the maps are drawn as a grid of labelled tiles."""
        return self.mode == 'topk'


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


def infer_token_grid(num_tokens: int,
                     image_hw: Optional[Sequence[int]] = None
                     ) -> Tuple[int, int, int]:
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


def _resize_weights(n_in: int, n_out: int,
                    device: torch.device) -> torch.Tensor:
    """Total weight each input index gets in a bilinear resize.

    The weights equal those of ``F.interpolate(mode='bilinear',
    align_corners=False)``, so a weighted spatial sum ranks channels exactly
    as a sum over the resized map does, without resizing all channels.
    """
    if device.type == 'cpu':
        return _resize_weights_cpu(n_in, n_out)
    return _resize_weights_on(n_in, n_out, device)


@functools.lru_cache(maxsize=64)
def _resize_weights_on(n_in: int, n_out: int,
                       device: torch.device) -> torch.Tensor:
    # Kept per device: the host-to-device copy blocks until the device has
    # caught up, so only a size's first firing pays it.
    return _resize_weights_cpu(n_in, n_out).to(device)


@functools.lru_cache(maxsize=64)
def _resize_weights_cpu(n_in: int, n_out: int) -> torch.Tensor:
    # Built on the CPU in float64 (not every device has it), then moved.
    pos = torch.arange(n_out, dtype=torch.float64) + 0.5
    src = (pos * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    frac = src - i0
    weights = torch.zeros(n_in, dtype=torch.float64)
    weights.index_add_(0, i0, 1 - frac)
    weights.index_add_(0, i1, frac)
    return weights.float()


def _region_weights(n: int, lo: float, hi: float,
                    device: torch.device) -> torch.Tensor:
    centres = torch.arange(n, device=device, dtype=torch.float32) + 0.5
    return ((centres >= lo) & (centres <= hi)).float()


def channel_scores(x: torch.Tensor,
                   rank_hw: Optional[Sequence[int]] = None,
                   valid_region: Optional[Sequence[float]] = None
                   ) -> torch.Tensor:
    """Spatial sum of each channel, used to rank channels.

    Args:
        x (torch.Tensor): (C, H, W) map.
        rank_hw (Sequence[int], optional): Size the map will be resized to;
            pixels are then weighted as a bilinear resize weights them, which
            reproduces mmengine's ranking (it sums the resized map).
        valid_region (Sequence[float], optional): (y0, y1, x0, x1) in
            feature pixels; only pixels whose centre lies inside count, so
            padding does not pick the channel.

    Returns:
        torch.Tensor: (C,) scores on x's device.
    """
    _, h, w = x.shape
    if valid_region is not None:
        y0, y1, x0, x1 = valid_region
        wy = _region_weights(h, y0, y1, x.device)
        wx = _region_weights(w, x0, x1, x.device)
    elif rank_hw is not None and tuple(rank_hw) != (h, w):
        wy = _resize_weights(h, int(rank_hw[0]), x.device)
        wx = _resize_weights(w, int(rank_hw[1]), x.device)
    else:
        return x.sum(dim=(1, 2))
    # A mat-vec is ~15x faster on CPU than einsum('chw,h,w->c').
    return x.reshape(x.shape[0], -1) @ torch.outer(wy, wx).reshape(-1)


def _top_eigh(gram: torch.Tensor,
              k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs of a symmetric PSD matrix, largest first.

    Small matrices use a full ``eigh``; larger ones a subspace iteration
    from a fixed seed (deterministic, and 10-50x faster than a full eigh of
    a 512x512 matrix on CPU), refined by Rayleigh-Ritz.
    """
    n = gram.shape[0]
    if n <= 64:
        vals, vecs = torch.linalg.eigh(gram)
    else:
        gen = torch.Generator(device=gram.device).manual_seed(0)
        basis = torch.randn(n, k + 6, generator=gen, device=gram.device,
                            dtype=gram.dtype)
        for _ in range(_PCA_ITERS):
            basis, _ = torch.linalg.qr(gram @ basis)
        vals, small = torch.linalg.eigh(basis.T @ gram @ basis)
        vecs = basis @ small
    return vals[-k:].flip(-1), vecs[:, -k:].flip(-1)


def _pca_rgb(x: torch.Tensor,
             reference: Optional[torch.Tensor] = None
             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """First three principal components over channels, as (3, H, W), and
    their (C, 3) channel loadings.

    Eigenvector signs are arbitrary, and a sign flip inverts a component's
    colour. With ``reference`` (the loadings of an earlier reduction of the
    same layer) each component takes the sign that agrees with it, so
    consecutive firings and checkpoints keep their colours while the
    network drifts. Without one, the largest |score| is made positive,
    which also keeps negated features apart.

    On CUDA this synchronises with the host: torch's eigensolver and QR
    (cuSOLVER) check their status on the host. It is the one reduction of
    :func:`reduce_chw` that does.
    """
    channels, h, w = x.shape
    feats = x.reshape(channels, h * w).transpose(0, 1)
    feats = feats - feats.mean(dim=0, keepdim=True)
    num = feats.shape[0]
    k = min(3, channels, num)
    # Decompose the smaller of the two Gram matrices.
    if channels <= num:
        _, vecs = _top_eigh(feats.T @ feats, k)
        scores = feats @ vecs
    else:
        vals, vecs = _top_eigh(feats @ feats.T, k)
        scores = vecs * vals.clamp(min=0).sqrt()
    loadings = feats.T @ scores
    if reference is not None and reference.shape == (channels, 3):
        agreement = (loadings * reference[:, :k].to(loadings)).sum(dim=0)
        sign = torch.sign(agreement)[None]
    else:
        peak = scores.abs().argmax(dim=0, keepdim=True)
        sign = torch.sign(scores.gather(0, peak))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    scores = scores * sign
    basis = loadings.new_zeros(channels, 3)
    basis[:, :k] = loadings * sign
    out = scores.new_zeros(3, num)
    out[:k] = scores.T
    return out.reshape(3, h, w), basis


@one_intraop_thread
def reduce_featmap(featmap: Featmap,
                   channel_reduction: Optional[str] = 'squeeze_mean',
                   topk: int = 20,
                   image_hw: Optional[Sequence[int]] = None,
                   *,
                   layout: str = 'auto',
                   grid_hw: Optional[Sequence[int]] = None,
                   rank_hw: Optional[Sequence[int]] = None,
                   valid_region: Optional[Sequence[float]] = None,
                   pca_reference: Optional[torch.Tensor] = None
                   ) -> ReducedFeatmap:
    """Reduce a feature map to the maps that get drawn, on its device.

    Args:
        featmap (torch.Tensor | np.ndarray): Any layout :func:`to_chw`
            accepts.
        channel_reduction (str, optional): 'squeeze_mean' (channel mean),
            'select_max' (the channel with the largest spatial sum), 'pca'
            (first 3 principal components as RGB), 'norm' (L2 over channels)
            or 'std' (population std over channels). None keeps channels:
            the top-k by spatial sum if topk > 0, else the 1- or 3-channel
            map itself. Defaults to 'squeeze_mean'.
        topk (int): Channels to keep when channel_reduction is None; more
            than the map has is clamped. Defaults to 20.
        image_hw (Sequence[int], optional): Network input (H, W), used for
            token grids. Defaults to None.
        layout (str): See :func:`to_chw`. Defaults to 'auto'.
        grid_hw (Sequence[int], optional): See :func:`to_chw`.
        rank_hw (Sequence[int], optional): See :func:`channel_scores`.
        valid_region (Sequence[float], optional): See
            :func:`channel_scores`.
        pca_reference (torch.Tensor, optional): See :func:`reduce_chw`.

    Returns:
        ReducedFeatmap: The maps, still on the featmap's device.
    """
    x = to_chw(featmap, image_hw, layout=layout, grid_hw=grid_hw,
               sanitize=False)
    return reduce_chw(x, channel_reduction, topk, rank_hw=rank_hw,
                      valid_region=valid_region, pca_reference=pca_reference)


@one_intraop_thread
def reduce_chw(x: torch.Tensor,
               channel_reduction: Optional[str] = 'squeeze_mean',
               topk: int = 20,
               *,
               rank_hw: Optional[Sequence[int]] = None,
               valid_region: Optional[Sequence[float]] = None,
               sync_free: Optional[bool] = None,
               pca_reference: Optional[torch.Tensor] = None
               ) -> ReducedFeatmap:
    """:func:`reduce_featmap` for a tensor that :func:`to_chw` returned.

    NaN/Inf are handled here as in :func:`to_chw`, so ``to_chw(...,
    sanitize=False)`` may come first. On the CPU non-finite input is
    looked for in the small result (it always shows there, or in the
    channel scores), which is cheaper than a pass over the whole map, and
    warned about at once. Off the CPU that look would be a host sync, so
    the input is always sanitized (a few elementwise passes) and the
    warning waits in ``nonfinite`` of the result until the maps are copied
    to the host. The maps are the same either way.

    Args:
        x (torch.Tensor): float32 (C, H, W).
        channel_reduction (str, optional): See :func:`reduce_featmap`.
        topk (int): See :func:`reduce_featmap`.
        rank_hw (Sequence[int], optional): See :func:`channel_scores`.
        valid_region (Sequence[float], optional): See
            :func:`channel_scores`.
        sync_free (bool, optional): Take the path without host syncs
            (True) or the CPU one (False). Defaults to None: sync-free
            unless x is on the CPU. 'pca' syncs on CUDA either way (see
            :func:`_pca_rgb`).
        pca_reference (torch.Tensor, optional): For 'pca', the ``basis``
            of an earlier reduction of the same layer, whose component
            signs are kept.

    Returns:
        ReducedFeatmap: The maps, on x's device.
    """
    if (channel_reduction is not None
            and channel_reduction not in CHANNEL_REDUCTIONS):
        raise ValueError(
            f'channel_reduction must be one of {CHANNEL_REDUCTIONS} or None, '
            f'got {channel_reduction!r}')
    if (channel_reduction is None and topk <= 0
            and x.shape[0] not in (1, 3)):
        raise ValueError(
            f'with channel_reduction=None and topk={topk} the featmap is '
            f'drawn as an image and needs 1 or 3 channels, got '
            f'{x.shape[0]}; set channel_reduction (one of '
            f'{CHANNEL_REDUCTIONS}) or topk > 0')
    args = (channel_reduction, topk, rank_hw, valid_region, pca_reference)
    if sync_free is None:
        sync_free = x.device.type != 'cpu'
    if sync_free:
        clean, counts = sanitize_nonfinite(x)
        reduced, _ = _reduce(clean, *args)
        # Unconditional, as a look would sync; finite maps are unchanged.
        reduced.maps = torch.nan_to_num(reduced.maps)
        reduced.nonfinite = counts
        return reduced
    if channel_reduction == 'pca':
        # The eigensolver fails on NaN, so check before, not after.
        x = replace_nonfinite(x)
    reduced, probe = _reduce(x, *args)
    if bool(torch.isfinite(probe).all()):
        return reduced
    reduced, probe = _reduce(replace_nonfinite(x), *args)
    if not bool(torch.isfinite(probe).all()):
        # Finite input can still overflow float32 (e.g. squares in 'norm').
        reduced.maps = torch.nan_to_num(reduced.maps)
    return reduced


def _reduce(x: torch.Tensor, channel_reduction: Optional[str], topk: int,
            rank_hw: Optional[Sequence[int]],
            valid_region: Optional[Sequence[float]],
            pca_reference: Optional[torch.Tensor] = None
            ) -> Tuple[ReducedFeatmap, torch.Tensor]:
    """The reduction, and a small tensor that is non-finite if x is."""
    mode = channel_reduction
    if channel_reduction == 'squeeze_mean':
        maps = x.mean(dim=0, keepdim=True)
        return ReducedFeatmap(maps, None, 'heat', mode), maps
    # norm and std are spelled out: torch's vector_norm/std over the
    # channel dim are 10x slower on CPU than these plain passes.
    if channel_reduction == 'norm':
        maps = x.square().sum(dim=0, keepdim=True).sqrt_()
        return ReducedFeatmap(maps, None, 'heat', mode), maps
    if channel_reduction == 'std':
        dev = x - x.mean(dim=0, keepdim=True)
        maps = dev.mul_(dev).mean(dim=0, keepdim=True).sqrt_()
        return ReducedFeatmap(maps, None, 'heat', mode), maps
    if channel_reduction == 'pca':
        maps, basis = _pca_rgb(x, pca_reference)
        return ReducedFeatmap(maps, None, 'rgb', mode, basis=basis), maps
    if channel_reduction is None and topk <= 0:
        kind = 'heat' if x.shape[0] == 1 else 'rgb'
        return ReducedFeatmap(x, None, kind, 'image', joint=True), x
    scores = channel_scores(x, rank_hw, valid_region)
    k = 1 if channel_reduction == 'select_max' else min(int(topk), len(x))
    index = torch.topk(scores, k).indices
    return ReducedFeatmap(x[index], index, 'heat', mode or 'topk'), scores


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
    if (len(percentile) != 2
            or not 0 <= percentile[0] < percentile[1] <= 100):
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
def value_range_tensor(reduced: ReducedFeatmap,
                       percentile: Optional[Sequence[float]] = None
                       ) -> torch.Tensor:
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


def value_range(reduced: ReducedFeatmap,
                percentile: Optional[Sequence[float]] = None
                ) -> Tuple[float, float]:
    """One (lo, hi) range over all maps, e.g. to freeze as ``norm_range``.

    Args:
        reduced (ReducedFeatmap): Reduced maps.
        percentile (Sequence[float], optional): (lo, hi) percentiles, e.g.
            (1, 99). Defaults to None: plain min and max.

    Returns:
        tuple[float, float]: (lo, hi) as Python floats (one host copy of
        :func:`value_range_tensor`).
    """
    lo, hi = value_range_tensor(reduced, percentile).tolist()
    return float(lo), float(hi)


def activation_stats(featmap: Featmap) -> Dict[str, float]:
    """Summary statistics of a feature map, computed on its device.

    Non-finite values are left out of every statistic.

    Args:
        featmap (torch.Tensor | np.ndarray): Any shape, at least 1 value.

    Returns:
        dict[str, float]: 'mean', 'std' (population), 'max', 'min',
        'nonpos_ratio' (share of values <= 0, e.g. dead ReLU outputs) and
        'nonfinite_ratio', as Python floats from one host copy of
        :func:`~mmfeatvis.stats.activation_stats_tensor`. Statistics of a
        map with no finite value are NaN.
    """
    return dict(zip(STATS_KEYS, activation_stats_tensor(featmap).tolist()))
