"""What the reduce stage hands on for one probe at one firing.

:class:`DeviceLayer` (reduced, maybe still on the model's device) becomes a
:class:`ReducedLayer` on the host inside :class:`ProbeMaps`, the hand-over
from the training thread to the writer thread; rendering turns that into a
:class:`~mmfeatvis.render.ProbeResult` of images.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Optional, Tuple

import torch

from ..probe import Probe
from .featmap import ReducedFeatmap
from .ranges import RangeLike


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

    After ``FeatmapOrchestrator.reduce(..., defer=True)`` the copy of the
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


def device_results(pending: List[DeviceLayer]) -> Dict[Hashable, torch.Tensor]:
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
