"""Pictures of several checkpoints: the strip and the GIF.

The checkpoints share one value range per (image, layer)
(:class:`~mmfeatvis.ranges.SeriesRanges`), so the strip and the GIF
compare them colour for colour; each tile's title states that range.
"""
import io
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..maps import ProbeResult
from ..render import compose_panels, with_colour_bar

#: The strip is kept below about this width; wider panels are scaled down.
MAX_STRIP_WIDTH = 4096
#: GIF frames are scaled down to at most this side (a GIF of full-size
#: overviews of many checkpoints would be tens of megabytes).
MAX_GIF_SIDE = 1024


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
                    first = next(r for r in results
                                 if layer in r.layer_images)
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


def series_ranges(labels: Sequence[str],
                  results: Sequence[ProbeResult]) -> Dict[str, dict]:
    """What every layer was drawn with, for ``series_ranges.json``: the
    shared range and each checkpoint's own.

    Returns:
        dict: ``{layer: {'shared': [lo, hi], 'checkpoints': {label:
        [lo, hi]}}}``.
    """
    summary: Dict[str, dict] = {}
    for label, result in zip(labels, results):
        for layer, value_range in result.ranges.items():
            entry = summary.setdefault(layer, {
                'shared': list(value_range),
                'checkpoints': {}
            })
            own = result.own_ranges.get(layer, value_range)
            entry['checkpoints'][label] = list(own)
    return summary


def gif_bytes(frames: Sequence[np.ndarray], duration_ms: int) -> bytes:
    """RGB frames as a looping animated GIF (Pillow), scaled down to at
    most :data:`MAX_GIF_SIDE`.

    Args:
        frames (Sequence[np.ndarray]): RGB uint8 frames of equal size.
        duration_ms (int): Display time of each frame.

    Returns:
        bytes: The GIF file.
    """
    from PIL import Image
    height, width = frames[0].shape[:2]
    scale = min(1.0, MAX_GIF_SIDE / max(height, width))
    size = (max(1, math.floor(width * scale)),
            max(1, math.floor(height * scale)))
    images = []
    for frame in frames:
        image = Image.fromarray(np.ascontiguousarray(frame))
        if image.size != size:
            image = image.resize(size, Image.LANCZOS)
        images.append(image)
    with io.BytesIO() as buffer:
        images[0].save(buffer, format='GIF', save_all=True,
                       append_images=images[1:], duration=duration_ms,
                       loop=0)
        return buffer.getvalue()
