"""Grids of tiles and panels with titles, drawn with OpenCV only."""
import math
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_label(image: np.ndarray,
               text: str,
               font_scale: Optional[float] = None) -> np.ndarray:
    """Write ``text`` at the top-left corner of an RGB image, in place.

    Black text with a white outline stays readable on any colormap.

    Args:
        image (np.ndarray): uint8 (H, W, 3), modified in place.
        text (str): Label.
        font_scale (float, optional): OpenCV font scale. Defaults to one
            that suits the image size, shrunk so the text fits its width.

    Returns:
        np.ndarray: ``image``.
    """
    h, w = image.shape[:2]
    if font_scale is None:
        font_scale = min(1.0, max(0.3, min(h, w) / 800))
    (tw, _), _ = cv2.getTextSize(text, _FONT, font_scale, 1)
    if tw > w - 4:
        font_scale = max(0.25, font_scale * (w - 4) / tw)
    (_, th), _ = cv2.getTextSize(text, _FONT, font_scale, 1)
    org = (2, min(h - 1, th + 4))
    cv2.putText(image, text, org, _FONT, font_scale, (255, 255, 255), 3,
                cv2.LINE_AA)
    cv2.putText(image, text, org, _FONT, font_scale, (0, 0, 0), 1,
                cv2.LINE_AA)
    return image


def positive_pair(name: str, value: Any,
                  parts: str = '(height, width)') -> Tuple[int, int]:
    """``value`` as two positive ints, e.g. a size or a grid.

    Raises:
        ValueError: Naming ``name`` and ``parts``, if it is not that.
    """
    try:
        first, second = (int(v) for v in value)
    except (TypeError, ValueError):
        first = second = 0
    if first < 1 or second < 1:
        raise ValueError(f'{name} must be {parts} of positive integers, '
                         f'got {value!r}.')
    return first, second


def check_arrangement(arrangement: Any) -> Tuple[int, int]:
    """``(rows, cols)`` of a top-k grid as two positive ints.

    Raises:
        ValueError: If ``arrangement`` is not two positive integers.
    """
    return positive_pair('arrangement', arrangement, '(rows, cols)')


def fitted_arrangement(arrangement: Sequence[int],
                       num_tiles: int) -> Tuple[int, int]:
    """``arrangement`` (rows, cols) shrunk in both directions to hold
    ``num_tiles`` with no empty row: ``(100, 100)`` for 256 channels
    becomes ``(16, 16)``, and an arrangement that fits stays.
    """
    rows, cols = int(arrangement[0]), int(arrangement[1])
    num_tiles = max(1, int(num_tiles))
    if rows * cols <= num_tiles:
        return rows, cols
    shrink = math.sqrt(num_tiles / (rows * cols))
    rows = max(1, min(rows, round(rows * shrink)))
    cols = min(cols, math.ceil(num_tiles / rows))
    return math.ceil(num_tiles / cols), cols


def grid_canvas(rows: int,
                cols: int,
                tile_hw: Tuple[int, int],
                num_tiles: int,
                background: int = 255) -> np.ndarray:
    """Allocate a rows x cols grid; only cells past num_tiles are filled.

    Cells that tiles will cover are left uninitialised, saving a pass over
    what is often tens of megabytes.

    Args:
        rows (int): Grid rows.
        cols (int): Grid columns.
        tile_hw (tuple[int, int]): (H, W) of one cell.
        num_tiles (int): Cells that will be written, filled row by row.
        background (int): Grey level of the other cells. Defaults to 255
            (white, as mmengine's figure).

    Returns:
        np.ndarray: uint8 (H * rows, W * cols, 3).
    """
    if num_tiles > rows * cols:
        raise ValueError(f'{num_tiles} tiles do not fit a {rows}x{cols} '
                         'grid')
    h, w = tile_hw
    canvas = np.empty((h * rows, w * cols, 3), np.uint8)
    for i in range(num_tiles, rows * cols):
        grid_cell(canvas, i, cols, tile_hw)[...] = background
    return canvas


def grid_cell(canvas: np.ndarray, index: int, cols: int,
              tile_hw: Tuple[int, int]) -> np.ndarray:
    """View of cell ``index`` (row-major) of a grid canvas."""
    h, w = tile_hw
    r, c = divmod(index, cols)
    return canvas[r * h:(r + 1) * h, c * w:(c + 1) * w]


def tile_grid(tiles: Sequence[np.ndarray],
              rows: int,
              cols: int,
              labels: Optional[Sequence[str]] = None,
              background: int = 255) -> np.ndarray:
    """Place equal-size tiles row by row on a rows x cols grid.

    Args:
        tiles (Sequence[np.ndarray]): At most rows*cols uint8 (H, W, 3).
        rows (int): Grid rows.
        cols (int): Grid columns.
        labels (Sequence[str], optional): One label per tile.
        background (int): Grey level of empty cells. Defaults to 255.

    Returns:
        np.ndarray: uint8 (H * rows, W * cols, 3).
    """
    if not tiles:
        raise ValueError('tile_grid needs at least one tile')
    tile_hw = tiles[0].shape[:2]
    canvas = grid_canvas(rows, cols, tile_hw, len(tiles), background)
    for i, tile in enumerate(tiles):
        cell = grid_cell(canvas, i, cols, tile_hw)
        cell[...] = tile
        if labels is not None:
            draw_label(cell, labels[i])
    return canvas


def _fit(image: np.ndarray, tile_hw: Tuple[int, int],
         background: int) -> np.ndarray:
    """Resize keeping aspect to fit tile_hw, centred on background."""
    th, tw = tile_hw
    h, w = image.shape[:2]
    scale = min(th / h, tw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        # Large enlargements (a tiny probe) keep their pixels sharp.
        interp = (cv2.INTER_AREA if scale < 1 else
                  cv2.INTER_NEAREST if scale >= 4 else cv2.INTER_LINEAR)
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.full((th, tw, 3), background, np.uint8)
    y, x = (th - nh) // 2, (tw - nw) // 2
    out[y:y + nh, x:x + nw] = image
    return out


def _check_panel(index: int, panel: Tuple[str, np.ndarray]) -> np.ndarray:
    try:
        _, image = panel
    except (TypeError, ValueError):
        raise ValueError(f'panel {index} must be a (title, image) pair, got '
                         f'{type(panel).__name__}') from None
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f'panel {index} image must be a uint8 np.ndarray')
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'panel {index} image must be (H, W) or (H, W, 3), '
                         f'got {image.shape}')
    return image


def compose_panels(panels: Sequence[Tuple[str, np.ndarray]],
                   cols: Optional[int] = None,
                   *,
                   tile_hw: Optional[Tuple[int, int]] = None,
                   gap: int = 4,
                   background: int = 255) -> np.ndarray:
    """Arrange titled panels (layers, probes) into one image.

    Rows are rounded up, so no panel is dropped when the count does not
    divide by ``cols``. Panels of different sizes are scaled, keeping their
    aspect, to fit a common tile and centred in it.

    Args:
        panels (Sequence[tuple[str, np.ndarray]]): (title, RGB uint8
            image) pairs; a grey (H, W) image is accepted too.
        cols (int, optional): Panels per row. Defaults to
            ceil(sqrt(len(panels))).
        tile_hw (tuple[int, int], optional): (H, W) of every tile.
            Defaults to the largest panel height and width.
        gap (int): Pixels between tiles. Defaults to 4.
        background (int): Grey level of the background. Defaults to 255.

    Returns:
        np.ndarray: RGB uint8 image.
    """
    images: List[np.ndarray] = [
        _check_panel(i, p) for i, p in enumerate(panels)
    ]
    if not images:
        raise ValueError('compose_panels needs at least one panel')
    num = len(images)
    if cols is None:
        cols = math.ceil(math.sqrt(num))
    if int(cols) < 1:
        raise ValueError(f'cols must be >= 1, got {cols}')
    cols = min(int(cols), num)
    rows = math.ceil(num / cols)
    if tile_hw is None:
        tile_hw = (max(i.shape[0] for i in images),
                   max(i.shape[1] for i in images))
    th, tw = int(tile_hw[0]), int(tile_hw[1])
    scale = min(1.0, max(0.4, tw / 500))
    (_, text_h), base = cv2.getTextSize('Ag', _FONT, scale, 1)
    title_h = text_h + base + 6
    cell_h, cell_w = th + title_h + gap, tw + gap
    canvas = np.full((rows * cell_h + gap, cols * cell_w + gap, 3),
                     background, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        y, x = gap + r * cell_h, gap + c * cell_w
        title = str(panels[i][0] or '')
        (text_w, _), _ = cv2.getTextSize(title, _FONT, scale, 1)
        room = max(1, tw - 8)  # a margin, so neighbouring titles stay apart
        fit = scale if text_w <= room else max(0.25, scale * room / text_w)
        cv2.putText(canvas, title, (x, y + text_h + 2), _FONT, fit,
                    (0, 0, 0), 1, cv2.LINE_AA)
        canvas[y + title_h:y + title_h + th, x:x + tw] = _fit(
            image, (th, tw), background)
    return canvas


def format_range(lo: float, hi: float) -> str:
    """``lo`` and ``hi`` with one precision that tells them apart.

    Two decimals for the usual activations (``0.00 to 5.29``), three
    significant digits in exponent notation for tiny or huge ones
    (``1.20e-04 to 3.40e-04``), where two decimals would read ``0.00 to
    0.00``; more digits where a narrow range needs them (``0.009 to
    0.011``, not ``0.01 to 0.01``).
    """
    largest = max(abs(lo), abs(hi))
    kind = 'f' if largest == 0 or 0.01 <= largest < 1000 else 'e'
    for digits in range(2, 8):
        low, high = f'{lo:.{digits}{kind}}', f'{hi:.{digits}{kind}}'
        if low != high or lo == hi:  # a constant (dead) map: as it is
            break
    return f'{low} to {high}'


def range_title(layer: str,
                value_range: Optional[Sequence[float]],
                reanchored: bool = False) -> str:
    """A tile's title: ``'neck[1] 0.00 to 5.29'``; ``' (new range)'`` is
    added where a kept range was re-anchored to this map."""
    if value_range is None:
        return layer
    title = f'{layer} {format_range(*value_range)}'
    return title + ' (new range)' if reanchored else title


def _bar_font_scale(width: int) -> float:
    return min(0.6, max(0.35, width / 1500))


#: Height of the colour bar itself, above its labels.
_BAR_HEIGHT = 12
_BAR_LABELS = ("low end of each tile's range", 'high end')


def colour_bar_height(width: int, gap: int = 4) -> int:
    """Rows that :func:`with_colour_bar` adds below a ``width``-wide
    canvas: the bar, its labels and the margins."""
    (_, text_h), base = cv2.getTextSize('Ag', _FONT, _bar_font_scale(width),
                                        1)
    return _BAR_HEIGHT + text_h + base + 4 + 2 * gap


def with_colour_bar(canvas: np.ndarray,
                    colormap: str,
                    gap: int = 4,
                    background: int = 255,
                    labels: Tuple[str, str] = _BAR_LABELS) -> np.ndarray:
    """``canvas`` above a bar of ``colormap`` from its low to its high end.

    The ends are labelled with what they stand for, below the bar: the low
    and high value of each tile's range, as its title states.

    Args:
        canvas (np.ndarray): RGB uint8 image, e.g. from
            :func:`compose_panels`.
        colormap (str): Colormap name.
        gap (int): Margin around the bar. Defaults to 4.
        background (int): Grey level of the margin. Defaults to 255.
        labels (tuple[str, str]): What the low and high ends stand for.
            Defaults to each tile's range, as its title states.

    Returns:
        np.ndarray: A new RGB uint8 image, taller than ``canvas``.
    """
    from .colormap import get_lut
    height, width = canvas.shape[:2]
    scale = _bar_font_scale(width)
    bar_w = max(1, width - 2 * gap)
    out = np.full((height + colour_bar_height(width, gap), width, 3),
                  background, np.uint8)
    out[:height] = canvas
    ramp = np.linspace(0, 255, bar_w).round().astype(np.uint8)
    top = height + gap
    out[top:top + _BAR_HEIGHT, gap:gap + bar_w] = get_lut(colormap)[ramp, 0]
    (_, text_h), _ = cv2.getTextSize('Ag', _FONT, scale, 1)
    baseline = top + _BAR_HEIGHT + 2 + text_h
    (right_w, _), _ = cv2.getTextSize(labels[1], _FONT, scale, 1)
    for text, x in ((labels[0], gap), (labels[1], gap + bar_w - right_w)):
        cv2.putText(out, text, (x, baseline), _FONT, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out
