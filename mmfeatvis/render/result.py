"""What rendering makes of one probe at one firing: its images, titled."""
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Set, Tuple

import numpy as np

from .layout import compose_panels, range_title, with_colour_bar

OVERVIEW_TILE_SIDE = 400

#: Tiles of the overview are at least this long on their longer side.
MIN_TILE_SIDE = 200


def input_cell_scale(image_hw: Tuple[int, int],
                     meta: Mapping[str, Any]) -> float:
    """The largest scale of the original image at which an overview cell
    (a tile, or one cell of a top-k grid) still shows no more than the
    model saw: the model input's longer side (``meta['img_shape']``,
    after the test pipeline's resize), never under :data:`MIN_TILE_SIDE`.

    A map holds no detail beyond the input it was computed from; a cell
    drawn larger only costs pixels to colour, blend, encode and store. 1.0
    where the meta has no input shape.
    """
    input_shape = meta.get('img_shape')
    if not input_shape or len(input_shape) < 2:
        return 1.0
    side = max(int(input_shape[0]), int(input_shape[1]), MIN_TILE_SIDE)
    return side / max(image_hw[0], image_hw[1])


@dataclass
class ProbeResult:
    """Everything drawn for one probe at one firing.

    Attributes:
        probe (str): The probe's name.
        layer_images (dict[str, np.ndarray]): RGB image per captured map,
            at the original image's size.
        overview_tiles (dict[str, np.ndarray]): The same maps drawn small
            for :meth:`overview`, when rendering was asked for them.
        skipped (dict[str, str]): Maps that could not be drawn, and why.
        ranges (dict[str, tuple[float, float]]): The values each map's
            colour scale spans, from its low end to its high end.
        reanchored (set[str]): Maps whose kept range was re-anchored now.
        rgb_layers (set[str]): Maps drawn as RGB ('pca'), not through the
            colormap.
        own_ranges (dict[str, tuple[float, float]]): Where a map was drawn
            on a range shared with others (a checkpoint series), the range
            of its own values.
        colormap (str): The colormap of the heat maps.
    """
    probe: str
    layer_images: Dict[str, np.ndarray] = field(default_factory=dict)
    overview_tiles: Dict[str, np.ndarray] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)
    ranges: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    reanchored: Set[str] = field(default_factory=set)
    rgb_layers: Set[str] = field(default_factory=set)
    own_ranges: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    colormap: str = 'jet'

    def title(self, layer: str) -> str:
        """A tile's title: the layer and the range its colours span."""
        return range_title(layer, self.ranges.get(layer), layer
                           in self.reanchored)

    def overview(self,
                 max_tile_side: Optional[int] = OVERVIEW_TILE_SIDE,
                 cols: Optional[int] = None) -> np.ndarray:
        """All layers of the probe in one image, each tile titled with its
        layer and value range, above a colour bar.

        Built from :attr:`overview_tiles` when there are any (drawn at the
        overview's scale), else from :attr:`layer_images`.

        Args:
            max_tile_side (int, optional): Tiles are scaled down so that
                their longer side is at most this; the overview of many
                layers stays readable on one TensorBoard card and cheap to
                encode. None keeps the full size.
            cols (int, optional): Tiles per row. Defaults to about the
                square root of their number.
        """
        panels = list((self.overview_tiles or self.layer_images).items())
        height = max(image.shape[0] for _, image in panels)
        width = max(image.shape[1] for _, image in panels)
        scale = 1.0 if max_tile_side is None else min(
            1.0, max_tile_side / max(height, width))
        # A tiny probe's tiles are enlarged, so that titles fit above them.
        scale = max(scale, MIN_TILE_SIDE / max(height, width))
        tile_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
        grid = compose_panels([(self.title(layer), image)
                               for layer, image in panels],
                              cols=cols,
                              tile_hw=tile_hw)
        if all(layer in self.rgb_layers for layer, _ in panels):
            return grid  # PCA colours are components, not a scale
        return with_colour_bar(grid, self.colormap)

    @property
    def has_images(self) -> bool:
        """Whether anything was drawn."""
        return bool(self.layer_images or self.overview_tiles)
