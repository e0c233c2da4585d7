"""Numbers that say whether a heat-map picture is readable.

A picture drawn with ``alpha=1`` (the colormap alone, no photo under it)
and stored losslessly gives each pixel's level on the colour scale back
exactly: the level is the index of its colour in the colormap's table.
From the levels: the share of pixels at either end of the scale
(saturated), and how much of the scale the picture uses (a flat picture
uses almost none of it).
"""
from dataclasses import dataclass

import numpy as np

from ..render import get_lut


def colour_levels(image: np.ndarray, colormap: str = 'jet') -> np.ndarray:
    """Each pixel's level (0-255) on ``colormap``'s scale: the index of
    the nearest colour of its table.

    Args:
        image (np.ndarray): RGB uint8 (H, W, 3) picture of a heat map.
        colormap (str): The colormap it was drawn with.

    Returns:
        np.ndarray: uint8 (H, W) levels.
    """
    lut = get_lut(colormap)[:, 0].astype(np.int32)  # (256, 3)
    flat = image.reshape(-1, 3).astype(np.int32)
    codes, inverse = np.unique(
        flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2], return_inverse=True)
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], 1)
    distance = ((colours[:, None, :] - lut[None]) ** 2).sum(-1)
    nearest = distance.argmin(1).astype(np.uint8)
    return nearest[inverse.reshape(-1)].reshape(image.shape[:2])


@dataclass
class Readability:
    """What share of a picture sits at the ends of its colour scale, and
    how much of the scale it uses.

    Attributes:
        low (float): Share of pixels at level 0.
        high (float): Share of pixels at level 255.
        spread (int): Levels between the 5th and 95th percentile pixel.
    """
    low: float
    high: float
    spread: int

    @property
    def saturated(self) -> float:
        """Share of pixels at either end."""
        return self.low + self.high

    def flat(self, min_spread: int = 26) -> bool:
        """Whether the middle 90% of the pixels span less than
        ``min_spread`` levels (by default a tenth of the scale)."""
        return self.spread < min_spread


def readability(image: np.ndarray, colormap: str = 'jet') -> Readability:
    """:class:`Readability` of a picture drawn with ``alpha=1``."""
    levels = colour_levels(image, colormap)
    p5, p95 = np.percentile(levels, (5, 95))
    return Readability(
        low=float((levels == 0).mean()),
        high=float((levels == 255).mean()),
        spread=int(p95 - p5))
