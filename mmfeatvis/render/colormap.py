"""Colormaps by name, as RGB lookup tables built from OpenCV's maps."""
from functools import lru_cache
from typing import Optional, Tuple

import cv2
import numpy as np

_PREFIX = 'COLORMAP_'


@lru_cache(maxsize=None)
def colormap_names() -> Tuple[str, ...]:
    """Names of the OpenCV colormaps this OpenCV build provides.

    Returns:
        tuple[str, ...]: Lower-case names such as 'jet', 'viridis'.
    """
    return tuple(
        sorted(
            name[len(_PREFIX):].lower() for name in dir(cv2)
            if name.startswith(_PREFIX)))


@lru_cache(maxsize=None)
def _lut(name: str) -> np.ndarray:
    cv_id = getattr(cv2, _PREFIX + name.upper())
    ramp = np.arange(256, dtype=np.uint8)[:, None]
    bgr = cv2.applyColorMap(ramp, cv_id)
    lut = np.ascontiguousarray(bgr[:, :, ::-1])
    lut.flags.writeable = False
    return lut


def get_lut(name: str = 'jet') -> np.ndarray:
    """RGB lookup table of an OpenCV colormap.

    Args:
        name (str): Colormap name, case-insensitive, e.g. 'jet', 'Viridis'.
            Defaults to 'jet' (the colormap mmengine uses).

    Returns:
        np.ndarray: Read-only (256, 1, 3) uint8 table in RGB order.
    """
    if not isinstance(name, str) or name.lower() not in colormap_names():
        raise ValueError(f'unknown colormap {name!r}; valid names are '
                         f'{", ".join(colormap_names())}')
    return _lut(name.lower())


def apply_colormap(values: np.ndarray,
                   name: str = 'jet',
                   out: Optional[np.ndarray] = None) -> np.ndarray:
    """Colour a uint8 (H, W) map.

    Args:
        values (np.ndarray): uint8 (H, W) map.
        name (str): Colormap name. Defaults to 'jet'.
        out (np.ndarray, optional): uint8 (H, W, 3) buffer for the result.

    Returns:
        np.ndarray: uint8 (H, W, 3) RGB image.
    """
    if values.dtype != np.uint8 or values.ndim != 2:
        raise ValueError('apply_colormap needs a uint8 (H, W) map, got '
                         f'{values.dtype} {values.shape}')
    # Given a user table, OpenCV applies it as is, so an RGB table yields
    # RGB output without a BGR->RGB pass.
    return cv2.applyColorMap(values, get_lut(name), out)
