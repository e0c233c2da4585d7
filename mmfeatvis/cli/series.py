"""Maps of several checkpoints: one value range, a strip and a GIF.

To compare checkpoints, a layer's maps must share one colour scale. The
pipeline asks its range tracker for the range of every map it reduces;
:class:`SeriesRanges` records what each checkpoint's maps span and, once
all checkpoints are reduced, gives every checkpoint the same range per
(image, layer):

* ``'union'`` (default): the smallest range covering every checkpoint, so
  no map saturates and a colour means the same value in every frame;
* ``'last'``: the range of the last checkpoint, the trained model's scale
  (earlier, often larger, activations are clipped).
"""
import math
from typing import Dict, Hashable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..maps import ProbeMaps
from ..ranges import (RangeLike, ValueRange, ValueRangeTracker, range_floats,
                      union_range)
from ..render import compose_panels

SHARED_MODES = ('union', 'last')
#: The strip is kept below about this width; wider panels are scaled down.
MAX_STRIP_WIDTH = 4096
#: GIF frames are scaled down to at most this side (a GIF of full-size
#: overviews of many checkpoints would be tens of megabytes).
MAX_GIF_SIDE = 1024


class SeriesRanges(ValueRangeTracker):
    """Records each map's range while reducing, then shares them.

    The pipeline calls :meth:`update` for every map it reduces. While
    recording, the observed ranges are merged per (image, layer) and no
    range is handed out; :meth:`apply` then writes the shared range into
    every reduced layer before rendering.

    Args:
        mode (str | tuple[float, float]): ``'union'``, ``'last'``, or a
            fixed ``(lo, hi)`` used for every map.
    """

    def __init__(self, mode: Union[str, ValueRange]) -> None:
        super().__init__('first')
        if isinstance(mode, str) and mode not in SHARED_MODES:
            raise ValueError(f'Unknown shared range mode {mode!r}; choose '
                             f'one of {SHARED_MODES} or (lo, hi).')
        self.shared_mode = mode
        self.fixed: Optional[ValueRange] = (
            None if isinstance(mode, str) else
            (float(mode[0]), float(mode[1])))

    def start_recording(self) -> None:
        """Forget the ranges of earlier images."""
        self.ranges = {}

    def update(self, key: Hashable,
               observed: Optional[RangeLike]) -> Optional[ValueRange]:
        """Record ``observed``; only a fixed range is handed out here.

        A range observed as a device tensor is merged on the device; the
        pipeline settles the kept range to floats after its host copy.
        """
        if self.fixed is not None:
            return self.fixed
        if observed is not None:
            previous = self.ranges.get(key)
            # Checkpoints come in order, so 'last' keeps the last one seen.
            if previous is not None and self.shared_mode == 'union':
                observed = union_range(previous, observed)
            self.ranges[key] = observed
        return None

    def apply(self, maps: Sequence[ProbeMaps]) -> None:
        """Give every reduced layer of ``maps`` its shared range."""
        if self.fixed is not None:
            return
        for probe_maps in maps:
            for item in probe_maps.layers:
                shared = self.ranges.get((probe_maps.probe.name, item.layer))
                if shared is not None:
                    shared = range_floats(shared)
                if shared is not None and not shared[1] > shared[0]:
                    # A constant map: widen so the renderer accepts it.
                    shared = (shared[0], shared[0] + 1e-6)
                item.norm_range = shared


def titled(title: str, image: np.ndarray) -> np.ndarray:
    """``image`` under a title line (the checkpoint name of a frame)."""
    return compose_panels([(title, image)], cols=1)


def series_strip(labels: Sequence[str],
                 layer_images: Sequence[Dict[str, np.ndarray]]
                 ) -> np.ndarray:
    """Checkpoints as columns, layers as rows, each panel titled.

    Args:
        labels (Sequence[str]): Checkpoint names.
        layer_images (Sequence[dict[str, np.ndarray]]): For each
            checkpoint, its image per layer.

    Returns:
        np.ndarray: RGB uint8 image.
    """
    layers: List[str] = []
    for images in layer_images:
        layers.extend(name for name in images if name not in layers)
    panels: List[Tuple[str, np.ndarray]] = []
    blank = None
    for layer in layers:
        for label, images in zip(labels, layer_images):
            image = images.get(layer)
            if image is None:  # not drawn for this checkpoint
                if blank is None:
                    first = next(i for i in layer_images if layer in i)
                    blank = np.full_like(first[layer], 255)
                image = blank
            panels.append((f'{label}: {layer}', image))
    tile_h = max(p[1].shape[0] for p in panels)
    tile_w = max(p[1].shape[1] for p in panels)
    scale = min(1.0, MAX_STRIP_WIDTH / (tile_w * len(labels)))
    tile_hw = (max(1, round(tile_h * scale)), max(1, round(tile_w * scale)))
    return compose_panels(panels, cols=len(labels), tile_hw=tile_hw)


def write_gif(path: str, frames: Sequence[np.ndarray],
              duration_ms: int) -> None:
    """Write RGB frames as a looping animated GIF with Pillow.

    Args:
        path (str): Output file.
        frames (Sequence[np.ndarray]): RGB uint8 frames of equal size.
        duration_ms (int): Display time of each frame.
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
    images[0].save(path, save_all=True, append_images=images[1:],
                   duration=duration_ms, loop=0)
