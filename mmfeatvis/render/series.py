"""Pictures of several checkpoints side by side: the strip.

The checkpoints share one value range per (image, layer)
(:class:`~mmfeatvis.reduce.SeriesRanges`), so the strip compares them
colour for colour; each tile's title states that range.
"""
from typing import List, Sequence, Tuple

import numpy as np

from .layout import compose_panels, with_colour_bar
from .result import ProbeResult

#: The strip is kept below about this width; wider panels are scaled down.
MAX_STRIP_WIDTH = 4096


def titled(title: str, image: np.ndarray) -> np.ndarray:
    """``image`` under a title line (the checkpoint name of a frame)."""
    return compose_panels([(title, image)], cols=1)


def series_strip(labels: Sequence[str],
                 results: Sequence[ProbeResult]) -> np.ndarray:
    """Checkpoints as columns, layers as rows, each panel titled with the
    checkpoint, the layer and its range, above a colour bar.

    Args:
        labels (Sequence[str]): Checkpoint names.
        results (Sequence[ProbeResult]): What each checkpoint drew.

    Returns:
        np.ndarray: RGB uint8 image.
    """
    layers: List[str] = []
    for result in results:
        layers.extend(name for name in result.layer_images
                      if name not in layers)
    panels: List[Tuple[str, np.ndarray]] = []
    blank = None
    for layer in layers:
        for label, result in zip(labels, results):
            image = result.layer_images.get(layer)
            if image is None:  # not drawn for this checkpoint
                if blank is None:
                    first = next(r for r in results if layer in r.layer_images)
                    blank = np.full_like(first.layer_images[layer], 255)
                image = blank
            panels.append((f'{label}: {result.title(layer)}', image))
    tile_h = max(p[1].shape[0] for p in panels)
    tile_w = max(p[1].shape[1] for p in panels)
    scale = min(1.0, MAX_STRIP_WIDTH / (tile_w * len(labels)))
    tile_hw = (max(1, round(tile_h * scale)), max(1, round(tile_w * scale)))
    strip = compose_panels(panels, cols=len(labels), tile_hw=tile_hw)
    if all(layer in results[0].rgb_layers for layer in layers):
        return strip
    return with_colour_bar(strip, results[0].colormap)
