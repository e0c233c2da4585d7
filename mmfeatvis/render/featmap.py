"""Reduced maps drawn over an image: resized, coloured, blended, tiled."""
import threading
import warnings
from typing import Any, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from ..probe.geometry import input_geometry, meta_or_none
from ..reduce import ReducedFeatmap, check_percentile, map_ranges
from .boxes import class_name
from .colormap import get_lut
from .layout import (check_arrangement, draw_label, grid_canvas, grid_cell,
                     positive_pair)
from .overlay import blend, colorize, prepare_image, resize_map

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


def check_draw_options(alpha: float, norm_range: Optional[Sequence[float]],
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


def _output_hw(reduced: ReducedFeatmap, image: Optional[np.ndarray],
               image_meta: Any,
               resize_shape: Optional[Sequence[int]]) -> Tuple[int, int]:
    if resize_shape is not None:
        return positive_pair('resize_shape', resize_shape)
    if image is not None:
        return int(image.shape[0]), int(image.shape[1])
    if image_meta is not None:
        ori_h, ori_w = input_geometry(image_meta).ori_hw
        return int(round(ori_h)), int(round(ori_w))
    return reduced.hw


def _warn_size_once(image_hw: Tuple[int, ...], feat_hw: Tuple[int,
                                                              ...]) -> None:
    key = (tuple(image_hw), tuple(feat_hw))
    # Bounded, so multi-scale inputs cannot grow it (or the log) forever.
    if key in _WARNED_SIZE_PAIRS or len(_WARNED_SIZE_PAIRS) >= 64:
        return
    _WARNED_SIZE_PAIRS.add(key)
    warnings.warn(
        f'overlaid_image {key[0]} and featmap {key[1]} differ in size; the '
        'map is stretched over the whole image. If the network input was '
        'padded, pass image_meta so padding is cut away first.')


def _tile_label(mode: str, index: int,
                class_names: Optional[Sequence[str]]) -> str:
    if mode != 'class_topk':
        return f'channel: {index}'
    name = class_name(index, class_names)
    return f'class {index}' if name == str(index) else (
        f'class {index}: {name}')


def render_reduced(reduced: ReducedFeatmap,
                   overlaid_image: Optional[np.ndarray] = None,
                   *,
                   norm_range: Optional[Sequence[float]] = None,
                   percentile: Optional[Sequence[float]] = None,
                   alpha: float = 0.5,
                   colormap: str = 'jet',
                   arrangement: Sequence[int] = (4, 5),
                   image_meta: Any = None,
                   resize_shape: Optional[Sequence[int]] = None,
                   class_names: Optional[Sequence[str]] = None) -> np.ndarray:
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
            :func:`~mmfeatvis.reduce.measure_range`. Defaults to None.
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
        class_names (Sequence[str], optional): Names of the classes of a
            'class_topk' grid's tiles.

    Returns:
        np.ndarray: RGB uint8 image; for a top-k grid of size
        (H * rows, W * cols).
    """
    check_draw_options(alpha, norm_range, percentile, colormap)
    image_meta = meta_or_none(image_meta)
    rows, cols = check_arrangement(arrangement)
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
            np.ascontiguousarray(maps.transpose(1, 2, 0)), out_hw, image_meta,
            _scratch('rgb', (h, w, 3), np.float32))
        colour = colorize(
            values,
            'rgb',
            value_range=ranges,
            joint=reduced.joint,
            out=tmp_colour)
        return blend(image, colour, alpha)
    levels = _scratch('levels', (h, w))

    def heat(k: int, out: Optional[np.ndarray]) -> np.ndarray:
        values = resize_map(maps[k], out_hw, image_meta,
                            _scratch('values', (h, w), np.float32))
        return colorize(
            values,
            'heat',
            colormap,
            None if ranges is None else ranges[k],
            out=out,
            scratch=levels)

    if not reduced.is_grid:
        return blend(image, heat(0, tmp_colour), alpha)
    # Tiles are blended straight into their grid cells.
    canvas = grid_canvas(rows, cols, out_hw, num)
    tile_colour = _scratch('colour', (h, w, 3))
    for k, channel in enumerate(reduced.channels.tolist()):
        cell = grid_cell(canvas, k, cols, out_hw)
        blend(image, heat(k, tile_colour), alpha, out=cell)
        draw_label(cell, _tile_label(reduced.mode, channel, class_names))
    return canvas
