"""Public drawing entry points: reduce on device, then render on host."""
import threading
import warnings
from typing import Any, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from .reduce import (ReducedFeatmap, check_percentile, map_ranges, reduce_chw,
                     to_chw)
from .render import (blend, colorize, draw_label, get_lut, grid_canvas,
                     grid_cell, input_geometry, prepare_image, resize_map,
                     valid_region)

_SCRATCH = threading.local()
# (image hw, featmap hw) pairs already warned about, so a hook drawing the
# same layer every few iterations warns once instead of every time.
_WARNED_SIZE_PAIRS: Set[Tuple[Tuple[int, ...], Tuple[int, ...]]] = set()


def _scratch(name: str,
             shape: Tuple[int, ...],
             dtype: type = np.uint8) -> np.ndarray:
    """A per-thread buffer reused across calls.

    A fresh multi-megabyte array is page-faulted in on first write, which
    after other work (a training step, mmengine's resize) costs more than
    the drawing itself; reused buffers stay mapped.
    """
    buffers = _SCRATCH.__dict__.setdefault('buffers', {})
    buf = buffers.get(name)
    if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
        buf = buffers[name] = np.empty(shape, dtype)
    return buf


def _check_hw(name: str, value: Any) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        h = w = 0
    if h < 1 or w < 1:
        raise ValueError(f'{name} must be (height, width) with positive '
                         f'ints, got {value!r}')
    return h, w


def check_draw_options(alpha: float,
                       norm_range: Optional[Sequence[float]],
                       percentile: Optional[Sequence[float]],
                       colormap: str) -> None:
    """Raise ValueError for drawing options that :func:`render_reduced`
    would reject, naming the option (and for colormaps the valid names)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    if norm_range is not None and percentile is not None:
        raise ValueError('give norm_range or percentile, not both')
    # lo == hi is allowed: a range frozen from a constant (dead) map must
    # not break a hook; such a range draws everything at the low end.
    if norm_range is not None and (len(norm_range) != 2
                                   or not norm_range[0] <= norm_range[1]):
        raise ValueError(f'norm_range must be (lo, hi) with lo <= hi, got '
                         f'{norm_range!r}')
    check_percentile(percentile)
    get_lut(colormap)  # raises on an unknown name, listing valid ones


def _meta_or_none(image_meta: Any) -> Any:
    # An empty dict (e.g. a plain model's probe) means: nothing to align.
    if isinstance(image_meta, Mapping) and not image_meta:
        return None
    return image_meta


def _output_hw(reduced: ReducedFeatmap, image: Optional[np.ndarray],
               image_meta: Any,
               resize_shape: Optional[Sequence[int]]) -> Tuple[int, int]:
    if resize_shape is not None:
        return _check_hw('resize_shape', resize_shape)
    if image is not None:
        return int(image.shape[0]), int(image.shape[1])
    if image_meta is not None:
        ori_h, ori_w = input_geometry(image_meta).ori_hw
        return int(round(ori_h)), int(round(ori_w))
    return reduced.hw


def _warn_size_once(image_hw: Tuple[int, ...],
                    feat_hw: Tuple[int, ...]) -> None:
    key = (tuple(image_hw), tuple(feat_hw))
    # Bounded, so multi-scale inputs cannot grow it (or the log) forever.
    if key in _WARNED_SIZE_PAIRS or len(_WARNED_SIZE_PAIRS) >= 64:
        return
    _WARNED_SIZE_PAIRS.add(key)
    warnings.warn(
        f'overlaid_image {key[0]} and featmap {key[1]} differ in size; the '
        'map is stretched over the whole image. If the network input was '
        'padded, pass image_meta so padding is cut away first.')


def render_reduced(reduced: ReducedFeatmap,
                   overlaid_image: Optional[np.ndarray] = None,
                   *,
                   norm_range: Optional[Sequence[float]] = None,
                   percentile: Optional[Sequence[float]] = None,
                   alpha: float = 0.5,
                   colormap: str = 'jet',
                   arrangement: Sequence[int] = (4, 5),
                   image_meta: Any = None,
                   resize_shape: Optional[Sequence[int]] = None
                   ) -> np.ndarray:
    """Draw maps from :func:`~mmfeatvis.reduce.reduce_featmap`.

    Value ranges (percentiles) are computed on device; the small float
    maps then go to the host in one copy, are resized once, normalized,
    coloured and blended. Resizing the values before colouring is what
    keeps the picture equal to mmengine's: colouring first, or quantizing
    to uint8 first, shifts colours by several levels on average.

    Args:
        reduced (ReducedFeatmap): Reduced maps.
        overlaid_image (np.ndarray, optional): RGB (or grey) uint8 image to
            blend onto. With ``image_meta`` it should show the original
            image (``ori_shape``), at any resolution. Defaults to None.
        norm_range (Sequence[float], optional): Fixed (lo, hi) mapped to
            the ends of the colormap, e.g. frozen with
            :func:`~mmfeatvis.reduce.value_range`. Defaults to None.
        percentile (Sequence[float], optional): Clip each map to these
            (lo, hi) percentiles, e.g. (1, 99). Defaults to None: each map's
            min and max after resizing, as mmengine does.
        alpha (float): Weight of the heatmap in the blend. Defaults to 0.5.
        colormap (str): OpenCV colormap name. Defaults to 'jet'.
        arrangement (Sequence[int]): (rows, cols) of the top-k grid.
            Defaults to (4, 5).
        image_meta (dict | data sample, optional): Sample metainfo; padding
            is then cut off the map before it is placed on the image.
        resize_shape (Sequence[int], optional): Output (H, W). Defaults to
            the image size, else the original size from ``image_meta``,
            else the map size.

    Returns:
        np.ndarray: RGB uint8 image; for a top-k grid of size
        (H * rows, W * cols).
    """
    check_draw_options(alpha, norm_range, percentile, colormap)
    image_meta = _meta_or_none(image_meta)
    rows, cols = _check_hw('arrangement', arrangement)
    num = reduced.maps.shape[0]
    if reduced.is_grid and rows * cols < num:
        raise ValueError(
            f'arrangement {rows}x{cols} holds {rows * cols} tiles but {num} '
            'channels were selected; enlarge arrangement or lower topk')
    out_hw = _output_hw(reduced, overlaid_image, image_meta, resize_shape)
    image = None
    if overlaid_image is not None:
        image = prepare_image(overlaid_image, out_hw)
        src_hw = tuple(overlaid_image.shape[:2])
        if image_meta is None and src_hw != reduced.hw:
            _warn_size_once(src_hw, reduced.hw)
    if reduced.nonfinite is not None:
        # reduce_chw ran without host syncs and left this warning to us.
        reduced.nonfinite.warn()
    ranges: Optional[np.ndarray] = None
    if norm_range is not None:
        ranges = np.tile(np.asarray(norm_range, np.float64), (num, 1))
    elif percentile is not None:
        ranges = map_ranges(reduced, percentile).cpu().numpy()
    maps = reduced.maps.detach().to('cpu', torch.float32).numpy()
    h, w = out_hw
    # Intermediates go to per-thread buffers; only the result is new.
    tmp_colour = None if image is None else _scratch('colour', (h, w, 3))
    if reduced.kind == 'rgb':
        values = resize_map(
            np.ascontiguousarray(maps.transpose(1, 2, 0)), out_hw,
            image_meta, _scratch('rgb', (h, w, 3), np.float32))
        colour = colorize(values, 'rgb', value_range=ranges,
                          joint=reduced.joint, out=tmp_colour)
        return blend(image, colour, alpha)
    levels = _scratch('levels', (h, w))

    def heat(k: int, out: Optional[np.ndarray]) -> np.ndarray:
        values = resize_map(maps[k], out_hw, image_meta,
                            _scratch('values', (h, w), np.float32))
        return colorize(values, 'heat', colormap,
                        None if ranges is None else ranges[k], out=out,
                        scratch=levels)

    if not reduced.is_grid:
        return blend(image, heat(0, tmp_colour), alpha)
    # Tiles are blended straight into their grid cells.
    canvas = grid_canvas(rows, cols, out_hw, num)
    tile_colour = _scratch('colour', (h, w, 3))
    for k, channel in enumerate(reduced.channels.tolist()):
        cell = grid_cell(canvas, k, cols, out_hw)
        blend(image, heat(k, tile_colour), alpha, out=cell)
        draw_label(cell, f'channel: {channel}')
    return canvas


def reduce_for_image(featmap: torch.Tensor,
                     channel_reduction: Optional[str] = 'squeeze_mean',
                     topk: int = 20,
                     *,
                     image_meta: Any = None,
                     image_hw: Optional[Sequence[int]] = None,
                     resize_shape: Optional[Sequence[int]] = None,
                     layout: str = 'auto',
                     grid_hw: Optional[Sequence[int]] = None,
                     pca_reference: Optional[torch.Tensor] = None
                     ) -> ReducedFeatmap:
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

    Returns:
        ReducedFeatmap: Reduced maps, on the featmap's device.
    """
    image_meta = _meta_or_none(image_meta)
    input_hw = (input_geometry(image_meta).input_hw
                if image_meta is not None else image_hw)
    x = to_chw(featmap, input_hw, layout=layout, grid_hw=grid_hw,
               sanitize=False)
    rank_hw = region = None
    if image_meta is not None:
        region = valid_region(image_meta, x.shape[1:])
    elif resize_shape is not None:
        rank_hw = resize_shape
    elif image_hw is not None:
        rank_hw = image_hw
    return reduce_chw(x, channel_reduction, topk, rank_hw=rank_hw,
                      valid_region=region, pca_reference=pca_reference)


def draw_featmap(featmap: torch.Tensor,
                 overlaid_image: Optional[np.ndarray] = None,
                 channel_reduction: Optional[str] = 'squeeze_mean',
                 topk: int = 20,
                 arrangement: Tuple[int, int] = (4, 5),
                 resize_shape: Optional[tuple] = None,
                 alpha: float = 0.5,
                 *,
                 norm_range: Optional[Sequence[float]] = None,
                 percentile: Optional[Sequence[float]] = None,
                 colormap: str = 'jet',
                 image_meta: Any = None,
                 layout: str = 'auto',
                 grid_hw: Optional[Sequence[int]] = None) -> np.ndarray:
    """Draw a feature map; a fast drop-in for mmengine's ``draw_featmap``.

    The positional arguments mean what they mean in
    ``mmengine.visualization.Visualizer.draw_featmap``, and 'squeeze_mean',
    'select_max' and top-k selection give mmengine's picture and channels.
    Differences: a 3-channel map with ``channel_reduction=None, topk<=0``
    is shown as an RGB image (mmengine colours its grey level); ``topk`` is
    clamped to the channel count before ``arrangement`` is checked; the
    size-mismatch warning is given once per pair of sizes.

    Args:
        featmap (torch.Tensor): (C, H, W), (1, C, H, W), or tokens (N, C) /
            (1, N, C) with ``layout='tokens'``; any device and float dtype.
        overlaid_image (np.ndarray, optional): RGB uint8 image to blend
            onto. Defaults to None.
        channel_reduction (str, optional): 'squeeze_mean', 'select_max',
            'pca', 'norm', 'std', or None to show channels (see ``topk``).
            Defaults to 'squeeze_mean'.
        topk (int): With ``channel_reduction=None``: if > 0, show the topk
            channels with the largest spatial sum in a grid; else show a
            1- or 3-channel map as an image. Defaults to 20.
        arrangement (Tuple[int, int]): (rows, cols) of the top-k grid.
            Defaults to (4, 5).
        resize_shape (tuple, optional): Output (H, W); the image is
            resized to it too. Defaults to None.
        alpha (float): Weight of the heatmap in the blend. Defaults to 0.5.
        norm_range (Sequence[float], optional): Fixed (lo, hi) for the
            colormap, to share one scale across steps. Defaults to None.
        percentile (Sequence[float], optional): Robust (lo, hi) percentile
            clipping, e.g. (1, 99). Defaults to None (min-max).
        colormap (str): OpenCV colormap name. Defaults to 'jet'.
        image_meta (dict | data sample, optional): Sample metainfo
            (mmdet/mmyolo/mmseg); padding is cut off the map and the rest
            placed on the original image. Defaults to None.
        layout (str): 'auto', 'chw' or 'tokens'; see
            :func:`~mmfeatvis.reduce.to_chw`. Defaults to 'auto'.
        grid_hw (Sequence[int], optional): Token grid (h, w). Defaults to
            None (inferred from the token count and image aspect).

    Returns:
        np.ndarray: RGB uint8 image.
    """
    reduced = reduce_for_image(
        featmap,
        channel_reduction,
        topk,
        image_meta=image_meta,
        image_hw=None if overlaid_image is None else overlaid_image.shape[:2],
        resize_shape=resize_shape,
        layout=layout,
        grid_hw=grid_hw)
    return render_reduced(
        reduced,
        overlaid_image,
        norm_range=norm_range,
        percentile=percentile,
        alpha=alpha,
        colormap=colormap,
        arrangement=arrangement,
        image_meta=image_meta,
        resize_shape=resize_shape)
