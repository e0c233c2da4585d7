"""Channel reductions: one captured feature map into a few 2-D maps.

Everything here is torch and runs on the tensor's own device. Off the CPU
the path the orchestrator takes (:func:`reduce_for_image`,
:func:`~.measure.measure_range_tensor`,
:func:`~.stats.activation_stats_tensor`) makes no host synchronisation
except in 'pca' (an eigensolver) and the first use of a resize size.
"""
import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from ..probe.geometry import (content_region, content_slices, input_geometry,
                              meta_or_none)
from .classes import CLASS_REDUCTIONS, reduce_classes
from .nonfinite import NonfiniteCounts, replace_nonfinite, sanitize_nonfinite
from .threads import one_intraop_thread
from .tokens import Featmap, to_chw

CHANNEL_REDUCTIONS = ('squeeze_mean', 'select_max', 'pca', 'norm',
                      'std') + CLASS_REDUCTIONS
# Subspace iterations for PCA; plenty for the top 3 of real feature maps.
_PCA_ITERS = 16


def check_channel_reduction(channel_reduction: Optional[str]) -> None:
    """Raise ValueError unless ``channel_reduction`` is one of
    :data:`CHANNEL_REDUCTIONS` or None (the top-k channels)."""
    if channel_reduction is not None and (channel_reduction
                                          not in CHANNEL_REDUCTIONS):
        raise ValueError(
            f'Unknown channel_reduction {channel_reduction!r}; choose one '
            f'of {CHANNEL_REDUCTIONS} or None (top-k).')


@dataclass
class ReducedFeatmap:
    """Maps produced by :func:`reduce_featmap`, still on the input's device.

    Attributes:
        maps (torch.Tensor): Float32 maps of shape (K, h, w).
        channels (torch.Tensor, optional): Int64 channel index of each map
            for 'select_max' and top-k selection (the class index for
            'class_topk'), else None.
        mode (str): The reduction that made it: one of
            :data:`CHANNEL_REDUCTIONS`, 'topk' or 'image'.
        nonfinite (NonfiniteCounts, optional): NaN/Inf counts of the input
            whose warning is still due, on the maps' device: set by
            :func:`reduce_chw` when it ran without host syncs. The orchestrator
            warns after its host copy and clears it;
            :func:`~mmfeatvis.render.render_reduced` warns if it is set.
        basis (torch.Tensor, optional): For 'pca', the (C, 3) channel
            loadings of the components, signs fixed; pass it as
            ``pca_reference`` when reducing the same layer again so that
            its colours keep their meaning.
    """

    maps: torch.Tensor
    channels: Optional[torch.Tensor]
    mode: str
    nonfinite: Optional[NonfiniteCounts] = None
    basis: Optional[torch.Tensor] = None

    @property
    def hw(self) -> Tuple[int, int]:
        """(h, w) of the maps."""
        return int(self.maps.shape[-2]), int(self.maps.shape[-1])

    @property
    def kind(self) -> str:
        """'rgb' when the 3 maps are the R, G, B planes of one picture
        ('pca', a 3-channel map shown as an image), else 'heat' (each map
        is coloured with a colormap)."""
        rgb = self.mode == 'pca' or (self.mode == 'image'
                                     and self.maps.shape[0] == 3)
        return 'rgb' if rgb else 'heat'

    @property
    def joint(self) -> bool:
        """Whether one value range is shared by all maps when normalizing
        (a map shown as an image) instead of one range per map."""
        return self.mode == 'image'

    @property
    def is_grid(self) -> bool:
        """Whether the maps are drawn as a grid of labelled tiles."""
        return self.mode in ('topk', 'class_topk')


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


@functools.lru_cache(maxsize=None)
def _resize_weights_on(n_in: int, n_out: int,
                       device: torch.device) -> torch.Tensor:
    # Kept per device: the host-to-device copy blocks until the device has
    # caught up, so only a size's first firing pays it. Never evicted, as
    # _region_weights: a recorded CUDA graph reads the tensor where it is.
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


@functools.lru_cache(maxsize=None)
def _region_weights(n: int, lo: float, hi: float,
                    device: torch.device) -> torch.Tensor:
    """1 for the pixels whose centre lies in [lo, hi], else 0.

    Kept per size, region and device, never evicted (a few floats each): a
    recorded CUDA graph reads the tensor where it is, and a firing makes
    none of its kernels again.
    """
    centres = torch.arange(n, device=device, dtype=torch.float32) + 0.5
    return ((centres >= lo) & (centres <= hi)).float()


def channel_scores(
        x: torch.Tensor,
        rank_hw: Optional[Sequence[int]] = None,
        content_region: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Spatial sum of each channel, used to rank channels.

    Args:
        x (torch.Tensor): (C, H, W) map.
        rank_hw (Sequence[int], optional): Size the map will be resized to;
            pixels are then weighted as a bilinear resize weights them, which
            reproduces mmengine's ranking (it sums the resized map).
        content_region (Sequence[float], optional): (y0, y1, x0, x1) in
            feature pixels; only pixels whose centre lies inside count, so
            padding does not pick the channel.

    Returns:
        torch.Tensor: (C,) scores on x's device.
    """
    _, h, w = x.shape
    if content_region is not None:
        y0, y1, x0, x1 = content_region
        wy = _region_weights(h, y0, y1, x.device)
        wx = _region_weights(w, x0, x1, x.device)
    elif rank_hw is not None and tuple(rank_hw) != (h, w):
        wy = _resize_weights(h, int(rank_hw[0]), x.device)
        wx = _resize_weights(w, int(rank_hw[1]), x.device)
    else:
        return x.sum(dim=(1, 2))
    weights = torch.outer(wy, wx)
    if x.device.type == 'cpu':
        # A mat-vec is ~15x faster on CPU than einsum('chw,h,w->c').
        return x.reshape(x.shape[0], -1) @ weights.reshape(-1)
    # Elsewhere no matrix library: cuBLAS keeps a workspace of tens of MB
    # for every stream it runs on, and recorded reductions run on several.
    return (x * weights).sum(dim=(1, 2))


def top_eigh(gram: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
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
        basis = torch.randn(
            n, k + 6, generator=gen, device=gram.device, dtype=gram.dtype)
        for _ in range(_PCA_ITERS):
            basis, _ = torch.linalg.qr(gram @ basis)
        vals, small = torch.linalg.eigh(basis.T @ gram @ basis)
        vecs = basis @ small
    return vals[-k:].flip(-1), vecs[:, -k:].flip(-1)


def _pca_rgb(
    x: torch.Tensor,
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
        _, vecs = top_eigh(feats.T @ feats, k)
        scores = feats @ vecs
    else:
        vals, vecs = top_eigh(feats @ feats.T, k)
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
def reduce_featmap(
        featmap: Featmap,
        channel_reduction: Optional[str] = 'squeeze_mean',
        topk: int = 20,
        image_hw: Optional[Sequence[int]] = None,
        *,
        layout: str = 'auto',
        grid_hw: Optional[Sequence[int]] = None,
        rank_hw: Optional[Sequence[int]] = None,
        content_region: Optional[Sequence[float]] = None,
        pca_reference: Optional[torch.Tensor] = None,
        num_classes: Optional[int] = None) -> ReducedFeatmap:
    """Reduce a feature map to the maps that get drawn, on its device.

    Args:
        featmap (torch.Tensor | np.ndarray): Any layout :func:`to_chw`
            accepts.
        channel_reduction (str, optional): 'squeeze_mean' (channel mean),
            'select_max' (the channel with the largest spatial sum), 'pca'
            (first 3 principal components as RGB), 'norm' (L2 over channels)
            'std' (population std over channels), 'class_max' or
            'class_topk' (a class branch's probabilities, see
            :mod:`~mmfeatvis.reduce.classes`). None keeps channels:
            the top-k by spatial sum if topk > 0, else the 1- or 3-channel
            map itself. Defaults to 'squeeze_mean'.
        topk (int): Channels to keep when channel_reduction is None; more
            than the map has is clamped. Defaults to 20.
        image_hw (Sequence[int], optional): Network input (H, W), used for
            token grids. Defaults to None.
        layout (str): See :func:`to_chw`. Defaults to 'auto'.
        grid_hw (Sequence[int], optional): See :func:`to_chw`.
        rank_hw (Sequence[int], optional): See :func:`channel_scores`.
        content_region (Sequence[float], optional): See
            :func:`channel_scores`.
        pca_reference (torch.Tensor, optional): See :func:`reduce_chw`.
        num_classes (int, optional): The model's classes, for the class
            reductions of an anchor-based head.

    Returns:
        ReducedFeatmap: The maps, still on the featmap's device.
    """
    x = to_chw(
        featmap, image_hw, layout=layout, grid_hw=grid_hw, sanitize=False)
    return reduce_chw(
        x,
        channel_reduction,
        topk,
        rank_hw=rank_hw,
        content_region=content_region,
        pca_reference=pca_reference,
        num_classes=num_classes)


@one_intraop_thread
def reduce_chw(x: torch.Tensor,
               channel_reduction: Optional[str] = 'squeeze_mean',
               topk: int = 20,
               *,
               rank_hw: Optional[Sequence[int]] = None,
               content_region: Optional[Sequence[float]] = None,
               sync_free: Optional[bool] = None,
               pca_reference: Optional[torch.Tensor] = None,
               num_classes: Optional[int] = None) -> ReducedFeatmap:
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
        content_region (Sequence[float], optional): See
            :func:`channel_scores`.
        sync_free (bool, optional): Take the path without host syncs
            (True) or the CPU one (False). Defaults to None: sync-free
            unless x is on the CPU. 'pca' syncs on CUDA either way (see
            :func:`_pca_rgb`).
        pca_reference (torch.Tensor, optional): For 'pca', the ``basis``
            of an earlier reduction of the same layer, whose component
            signs are kept.
        num_classes (int, optional): See :func:`reduce_featmap`.

    Returns:
        ReducedFeatmap: The maps, on x's device.
    """
    check_channel_reduction(channel_reduction)
    if (channel_reduction is None and topk <= 0 and x.shape[0] not in (1, 3)):
        raise ValueError(
            f'with channel_reduction=None and topk={topk} the featmap is '
            f'drawn as an image and needs 1 or 3 channels, got '
            f'{x.shape[0]}; set channel_reduction (one of '
            f'{CHANNEL_REDUCTIONS}) or topk > 0')
    args = (channel_reduction, topk, rank_hw, content_region, pca_reference,
            num_classes)
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


def _reduce(
    x: torch.Tensor,
    channel_reduction: Optional[str],
    topk: int,
    rank_hw: Optional[Sequence[int]],
    content_region: Optional[Sequence[float]],
    pca_reference: Optional[torch.Tensor] = None,
    num_classes: Optional[int] = None
) -> Tuple[ReducedFeatmap, torch.Tensor]:
    """The reduction, and a small tensor that is non-finite if x is."""
    mode = channel_reduction
    if channel_reduction in CLASS_REDUCTIONS:
        maps, classes = reduce_classes(x, mode, topk, num_classes,
                                       content_region)
        return ReducedFeatmap(maps, classes, mode), maps
    if channel_reduction == 'squeeze_mean':
        maps = x.mean(dim=0, keepdim=True)
        return ReducedFeatmap(maps, None, mode), maps
    # norm and std are spelled out: torch's vector_norm/std over the
    # channel dim are 10x slower on CPU than these plain passes.
    if channel_reduction == 'norm':
        maps = x.square().sum(dim=0, keepdim=True).sqrt_()
        return ReducedFeatmap(maps, None, mode), maps
    if channel_reduction == 'std':
        dev = x - x.mean(dim=0, keepdim=True)
        maps = dev.mul_(dev).mean(dim=0, keepdim=True).sqrt_()
        return ReducedFeatmap(maps, None, mode), maps
    if channel_reduction == 'pca':
        maps, basis = _pca_rgb(x, pca_reference)
        return ReducedFeatmap(maps, None, mode, basis=basis), maps
    if channel_reduction is None and topk <= 0:
        return ReducedFeatmap(x, None, 'image'), x
    scores = channel_scores(x, rank_hw, content_region)
    if channel_reduction == 'select_max':
        # One reduction, where topk launches several kernels; a tie goes
        # to the first of the channels.
        index = scores.argmax().reshape(1)
    else:
        index = torch.topk(scores, min(int(topk), len(x))).indices
    return ReducedFeatmap(x[index], index, mode or 'topk'), scores


def reduce_for_image(
        featmap: torch.Tensor,
        channel_reduction: Optional[str] = 'squeeze_mean',
        topk: int = 20,
        *,
        image_meta: Any = None,
        image_hw: Optional[Sequence[int]] = None,
        resize_shape: Optional[Sequence[int]] = None,
        layout: str = 'auto',
        grid_hw: Optional[Sequence[int]] = None,
        pca_reference: Optional[torch.Tensor] = None,
        num_classes: Optional[int] = None) -> ReducedFeatmap:
    """Reduce a map for drawing on an image, ranking only image content.

    With ``image_meta`` the token grid follows the network input and
    'select_max'/top-k rank channels by their sum over the region that
    covers real image content, not the letterbox or bottom/right padding;
    otherwise they rank at the size the map will be drawn at, as mmengine
    does.

    Args:
        featmap (torch.Tensor): Any layout :func:`~mmfeatvis.reduce.to_chw`
            accepts.
        channel_reduction (str, optional): See :func:`draw_featmap`.
        topk (int): See :func:`draw_featmap`.
        image_meta (dict | data sample, optional): Sample metainfo.
        image_hw (Sequence[int], optional): (H, W) of the image the map is
            drawn on, when there is no meta.
        resize_shape (Sequence[int], optional): Output (H, W).
        layout (str): 'auto', 'chw' or 'tokens'.
        grid_hw (Sequence[int], optional): Token grid (h, w).
        pca_reference (torch.Tensor, optional): See
            :func:`~mmfeatvis.reduce.reduce_chw`.
        num_classes (int, optional): See :func:`reduce_featmap`.

    Returns:
        ReducedFeatmap: Reduced maps, on the featmap's device.
    """
    image_meta = meta_or_none(image_meta)
    input_hw = (
        input_geometry(image_meta).input_hw
        if image_meta is not None else image_hw)
    x = to_chw(
        featmap, input_hw, layout=layout, grid_hw=grid_hw, sanitize=False)
    rank_hw = region = None
    if image_meta is not None:
        region = content_region(image_meta, x.shape[1:])
    elif resize_shape is not None:
        rank_hw = resize_shape
    elif image_hw is not None:
        rank_hw = image_hw
    return reduce_chw(
        x,
        channel_reduction,
        topk,
        rank_hw=rank_hw,
        content_region=region,
        pca_reference=pca_reference,
        num_classes=num_classes)


def content_only(reduced: ReducedFeatmap, meta: Dict[str,
                                                     Any]) -> ReducedFeatmap:
    """The part of the maps over image content, for measuring a range that
    the padding's values would otherwise stretch."""
    if not meta or 'batch_input_shape' not in meta:
        return reduced
    rows, cols = content_slices(meta, reduced.hw)
    maps = reduced.maps[:, rows, cols]
    return dataclasses.replace(reduced, maps=maps) if maps.numel() else reduced


def single_sample_layout(featmap: torch.Tensor) -> Tuple[torch.Tensor, str]:
    """Name the layout of a layer output for the probe's batch of one.

    The probe pass has one sample, so a 3-D output with a leading 1 is a
    batch-first token sequence ``(1, N, C)`` (ViT, Swin) and one with a 1 in
    the middle is sequence-first ``(N, 1, C)`` (DETR's transformer); neither
    is a one-channel ``(1, H, W)`` map, as it would be without that
    knowledge.
    """
    if featmap.ndim == 3 and featmap.shape[0] == 1:
        return featmap, 'tokens'
    if featmap.ndim == 3 and featmap.shape[1] == 1:
        return featmap.transpose(0, 1), 'tokens'
    return featmap, 'auto'
