"""Value maps to colour images: resize, normalize, colour, blend."""
from typing import Any, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from .align import warp_to_image
from .colormap import apply_colormap

# Rounding x - 0.5 + _EPS equals truncating x except within _EPS below an
# integer, which float32 noise makes no more exact than this anyway.
_EPS = 1e-4


def prepare_image(image: np.ndarray,
                  out_hw: Optional[Sequence[int]] = None) -> np.ndarray:
    """Check an image to draw on and bring it to RGB uint8 at out_hw.

    Args:
        image (np.ndarray): uint8 (H, W) grey, (H, W, 3) RGB or (H, W, 4)
            RGBA image.
        out_hw (Sequence[int], optional): Resize to this (H, W) bilinearly.

    Returns:
        np.ndarray: Contiguous uint8 (H, W, 3) RGB image.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError('overlaid_image must be an np.ndarray, got '
                        f'{type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError('overlaid_image must be uint8 RGB, got dtype '
                         f'{image.dtype}; convert it e.g. with '
                         '(img * 255).astype(np.uint8)')
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = np.ascontiguousarray(image[:, :, :3])
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError('overlaid_image must be (H, W), (H, W, 3) or '
                         f'(H, W, 4), got shape {image.shape}')
    if out_hw is not None and tuple(image.shape[:2]) != tuple(out_hw):
        image = cv2.resize(image, (int(out_hw[1]), int(out_hw[0])))
    return np.ascontiguousarray(image)


def resize_map(values: np.ndarray,
               out_hw: Sequence[int],
               meta: Any = None,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Bring a feature-resolution map to the output size in one pass.

    Args:
        values (np.ndarray): float32 (h, w) or (h, w, 3) map.
        out_hw (Sequence[int]): Output (H, W).
        meta (dict | data sample, optional): Sample metainfo; if given,
            padding is cut away and content mapped onto the original image
            (see :func:`~mmfeatvis.render.align.warp_to_image`).
        out (np.ndarray, optional): Buffer of the output's shape and dtype
            to write into.

    Returns:
        np.ndarray: The map at (H, W); ``values`` itself when no resizing
        is needed.
    """
    if meta is not None:
        return warp_to_image(values, meta, out_hw, out=out)
    if tuple(values.shape[:2]) == tuple(out_hw):
        return values
    # cv2's INTER_LINEAR equals torch's bilinear align_corners=False.
    return cv2.resize(
        values, (int(out_hw[1]), int(out_hw[0])),
        dst=out,
        interpolation=cv2.INTER_LINEAR)


def to_uint8(values: np.ndarray,
             value_range: Optional[Tuple[float, float]] = None,
             out: Optional[np.ndarray] = None) -> np.ndarray:
    """Scale a float map to uint8 0..255, truncating like mmengine.

    mmengine stretches to 0..255 in float and truncates; the same result
    (up to float rounding) comes from one OpenCV pass that rounds a range
    shifted down by half a level.

    Args:
        values (np.ndarray): float32 map of any shape (up to 4 channels).
        value_range (tuple[float, float], optional): (lo, hi) mapped to
            0 and 255, values outside clipped. Defaults to None: the map's
            own min and max (a constant map becomes 0).
        out (np.ndarray, optional): uint8 buffer of the same shape.

    Returns:
        np.ndarray: uint8 map of the same shape.
    """
    if value_range is None:
        return cv2.normalize(
            values,
            out,
            -0.5 + _EPS,
            254.5 + _EPS,
            cv2.NORM_MINMAX,
            dtype=cv2.CV_8U)
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        if out is None:
            return np.zeros(values.shape, np.uint8)
        out[...] = 0
        return out
    scale = 255.0 / (hi - lo)
    # addWeighted saturates, which clips to [lo, hi] in the same pass.
    return cv2.addWeighted(
        values,
        scale,
        values,
        0.0,
        -lo * scale - 0.5 + _EPS,
        dst=out,
        dtype=cv2.CV_8U)


def colorize(values: np.ndarray,
             kind: str = 'heat',
             colormap: str = 'jet',
             value_range: Optional[Sequence] = None,
             joint: bool = False,
             out: Optional[np.ndarray] = None,
             scratch: Optional[np.ndarray] = None) -> np.ndarray:
    """Turn a float value map into an RGB uint8 picture.

    Args:
        values (np.ndarray): float32 (H, W) for 'heat', (H, W, 3) for 'rgb'.
        kind (str): 'heat' (apply ``colormap``) or 'rgb' (channels are
            R, G, B). Defaults to 'heat'.
        colormap (str): Colormap name for 'heat'. Defaults to 'jet'.
        value_range (Sequence, optional): One (lo, hi) pair, or for 'rgb'
            three pairs (one per channel). Defaults to None: min-max.
        joint (bool): For 'rgb' without value_range, stretch all channels
            together (an image) instead of each on its own (PCA).
        out (np.ndarray, optional): uint8 (H, W, 3) buffer for the result.
        scratch (np.ndarray, optional): uint8 (H, W) buffer for the
            intermediate levels of a 'heat' map.

    Returns:
        np.ndarray: uint8 (H, W, 3) RGB.
    """
    ranges = None
    if value_range is not None:
        ranges = np.asarray(value_range, dtype=np.float64).reshape(-1, 2)
    if kind == 'heat':
        rng = None if ranges is None else ranges[0]
        return apply_colormap(to_uint8(values, rng, scratch), colormap, out)
    if kind != 'rgb':
        raise ValueError(f'kind must be "heat" or "rgb", got {kind!r}')
    if joint or (ranges is not None and len(ranges) == 1):
        rng = None if ranges is None else ranges[0]
        return to_uint8(np.ascontiguousarray(values), rng, out)
    planes = [
        to_uint8(
            np.ascontiguousarray(values[:, :, i]),
            None if ranges is None else ranges[i]) for i in range(3)
    ]
    return cv2.merge(planes, out)


def blend(image: Optional[np.ndarray],
          colour: np.ndarray,
          alpha: float,
          out: Optional[np.ndarray] = None) -> np.ndarray:
    """``(1 - alpha) * image + alpha * colour``, rounded, as uint8.

    Args:
        image (np.ndarray, optional): RGB uint8 (H, W, 3); None gives
            ``colour`` unchanged.
        colour (np.ndarray): RGB uint8 (H, W, 3).
        alpha (float): Weight of ``colour``.
        out (np.ndarray, optional): Where to write the result; may be a
            view such as a grid cell. Defaults to a new array.

    Returns:
        np.ndarray: RGB uint8 (H, W, 3), ``out`` if given.
    """
    if image is None:
        if out is None:
            return colour
        out[...] = colour
        return out
    return cv2.addWeighted(image, 1 - alpha, colour, alpha, 0, dst=out)


def image_at(image: np.ndarray, hw: Tuple[int, int],
             kept: Dict[Tuple[int, int], np.ndarray]) -> np.ndarray:
    """``image`` at ``hw``: area-resampled once, then taken from ``kept``
    (a probe's images are drawn at the same sizes at every firing).

    Args:
        image (np.ndarray): The original image.
        hw (tuple[int, int]): The size wanted.
        kept (dict): Resampled images by size, filled here.
    """
    hw = (int(hw[0]), int(hw[1]))
    if hw == image.shape[:2]:
        return image
    if hw not in kept:
        kept[hw] = cv2.resize(
            image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    return kept[hw]
