"""What flows between the stages for one probe at one firing.

:class:`DeviceLayer` (reduced, maybe still on the model's device) becomes a
:class:`ReducedLayer` on the host inside :class:`ProbeMaps`, the hand-over
from the training thread to the writer thread; rendering turns that into a
:class:`ProbeResult` of images.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Optional, Set, Tuple

import numpy as np
import torch

from .probe import Probe
from .ranges import RangeLike
from .reduce import ReducedFeatmap
from .render import compose_panels, range_title, with_colour_bar

OVERVIEW_TILE_SIDE = 400
#: Tiles of the overview are at least this long on their longer side.
MIN_TILE_SIDE = 200


@dataclass
class ProbeResult:
    """Everything drawn for one probe at one firing.

    Attributes:
        probe (str): The probe's name.
        layer_images (dict[str, np.ndarray]): RGB image per captured map,
            at the original image's size.
        overview_tiles (dict[str, np.ndarray]): The same maps drawn small
            for :meth:`overview`, when rendering was asked for them.
        stats (dict[str, dict[str, float]]): Activation statistics per map.
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
    stats: Dict[str, Dict[str, float]] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)
    ranges: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    reanchored: Set[str] = field(default_factory=set)
    rgb_layers: Set[str] = field(default_factory=set)
    own_ranges: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    colormap: str = 'jet'

    def title(self, layer: str) -> str:
        """A tile's title: the layer and the range its colours span."""
        return range_title(layer, self.ranges.get(layer),
                           layer in self.reanchored)

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


@dataclass
class ReducedLayer:
    """One captured map after reduction, ready to render on the host.

    Attributes:
        layer (str): The captured output's name.
        reduced (ReducedFeatmap): The maps, on the host.
        norm_range (tuple[float, float], optional): The values that the
            ends of the colour scale stand for.
        stats (dict[str, float], optional): Activation statistics.
        reanchored (bool): The kept range was replaced by this map's own
            at this firing (``value_range='adaptive'``).
        own_range (tuple[float, float], optional): The map's own range
            where ``norm_range`` is shared with others (a checkpoint
            series).
    """
    layer: str
    reduced: ReducedFeatmap
    norm_range: Optional[Tuple[float, float]]
    stats: Optional[Dict[str, float]]
    reanchored: bool = False
    own_range: Optional[Tuple[float, float]] = None


@dataclass
class DeviceLayer:
    """A reduced layer before the host copy: everything may still be on
    the model's device."""
    layer: str
    reduced: ReducedFeatmap
    key: Hashable
    norm_range: Optional[RangeLike]
    # What the tracker keeps for key, when it is a device tensor.
    kept: Optional[torch.Tensor]
    stats: Optional[torch.Tensor]
    # 0-d bool: the tracker re-anchored the range of key at this firing.
    reanchored: Optional[torch.Tensor] = None


@dataclass
class ProbeMaps:
    """What one probe pass produced: the hand-over between the training
    thread (capture, reduce) and the drawing thread (render).

    After ``FeatmapPipeline.reduce(..., defer=True)`` the copy of the
    layers to the host may still be in flight: :meth:`wait` (called by
    :attr:`layers` and :attr:`stats`) finishes it.
    """
    probe: Probe
    skipped: Dict[str, str] = field(default_factory=dict)
    prediction: Any = None
    _layers: List[ReducedLayer] = field(default_factory=list, repr=False)
    _completion: Optional[Callable[[], List[ReducedLayer]]] = field(
        default=None, repr=False)

    def wait(self) -> 'ProbeMaps':
        """Wait for the host copy and fill in the layers (once)."""
        if self._completion is not None:
            completion, self._completion = self._completion, None
            self._layers = completion()
        return self

    @property
    def layers(self) -> List[ReducedLayer]:
        """The reduced maps, on the host."""
        return self.wait()._layers

    @property
    def stats(self) -> Dict[str, Dict[str, float]]:
        """Activation statistics per map."""
        return {
            item.layer: item.stats
            for item in self.layers if item.stats is not None
        }


def device_results(
        pending: List[DeviceLayer]) -> Dict[Hashable, torch.Tensor]:
    """Everything of the reduced layers that must reach the host, by
    ``(layer index, part)``, for one packed copy."""
    tensors: Dict[Hashable, torch.Tensor] = {}
    for i, item in enumerate(pending):
        reduced = item.reduced
        tensors[i, 'maps'] = reduced.maps
        if reduced.channels is not None:
            tensors[i, 'channels'] = reduced.channels
        if isinstance(item.norm_range, torch.Tensor):
            tensors[i, 'range'] = item.norm_range
        if item.kept is not None and item.kept is not item.norm_range:
            tensors[i, 'kept'] = item.kept
        if item.stats is not None:
            tensors[i, 'stats'] = item.stats
        if reduced.nonfinite is not None:
            tensors[i, 'nonfinite'] = reduced.nonfinite.counts
        if item.reanchored is not None:
            tensors[i, 'reanchored'] = item.reanchored
    return tensors
