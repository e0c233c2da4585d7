"""Drawing images for one checkpoint or a series, through the orchestrator.

For each chunk of images, every checkpoint is loaded in turn; each image
goes through :meth:`FeatmapOrchestrator.fire`, which keeps only the small
reduced maps. When the checkpoints share value ranges, the ranges are
settled once all checkpoints are reduced, and
:meth:`FeatmapOrchestrator.render` draws.
"""
import logging
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log
from torch import nn

from ..orchestrator import CamOrchestrator, FeatmapOrchestrator
from ..probe import Probe, ProbeBuilder
from ..reduce import ProbeMaps, SeriesRanges
from ..render import ProbeResult
from .errors import RunError
from .inputs import ImageItem
from .model import Fit, load_weights

#: Images prepared at once: each holds its network input until every
#: checkpoint has seen it, and each chunk reloads the checkpoints.
CHUNK = 16


@dataclass
class Drawn:
    """The pictures of one image: one per checkpoint.

    Attributes:
        item (ImageItem): The image.
        results (list[ProbeResult]): What each checkpoint drew, in
            checkpoint order.
        pictures (list[np.ndarray]): With ``--cam``, each checkpoint's
            picture of the image's CAMs instead.
    """

    item: ImageItem
    results: List[ProbeResult] = field(default_factory=list)
    pictures: List[np.ndarray] = field(default_factory=list)


def compose_layers(result: ProbeResult,
                   cols: Optional[int],
                   source: str = '') -> np.ndarray:
    """All layer pictures of one result in one image, each titled with its
    layer and value range, above a colour bar.

    Raises:
        RunError: If no layer could be drawn (the reasons are named).
    """
    if not result.layer_images:
        reasons = '; '.join(f'{k}: {v}' for k, v in result.skipped.items())
        raise RunError(f'no map of {source or result.probe} could be drawn '
                       f'({reasons or "no layer output"}).')
    return result.overview(max_tile_side=None, cols=cols)


class SeriesDrawer:
    """Draws images for a list of checkpoints with the shared stages.

    Args:
        model (nn.Module): The built model (weights are loaded here).
        orchestrator (FeatmapOrchestrator, optional): Its layers
            resolved; its range tracker may be a :class:`SeriesRanges`.
            None for a subclass that draws otherwise.
        builder (ProbeBuilder): Prepares the images.
        checkpoints (Sequence[str]): Checkpoint files, in order.
        loaded (str, optional): The checkpoint already in ``model``.
        class_names (Sequence[str], optional): For drawn predictions.
        check_fit (callable, optional): Called with the :class:`Fit` of
            every checkpoint loaded here; raises to refuse it.
    """

    def __init__(self,
                 model: nn.Module,
                 orchestrator: Optional[FeatmapOrchestrator],
                 builder: ProbeBuilder,
                 checkpoints: Sequence[str],
                 loaded: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None,
                 check_fit: Optional[Callable[[Fit], None]] = None) -> None:
        self.model = model
        self.orchestrator = orchestrator
        self.builder = builder
        self.checkpoints = list(checkpoints)
        self.loaded = loaded
        self.class_names = class_names
        self.check_fit = check_fit
        self.failed: List[Tuple[str, str]] = []

    def _load(self, checkpoint: str) -> None:
        if checkpoint != self.loaded:
            fit = load_weights(self.model, checkpoint)
            if self.check_fit is not None:
                self.check_fit(fit)
            self.loaded = checkpoint

    def _probes(self,
                items: Sequence[ImageItem]) -> List[Tuple[ImageItem, Probe]]:
        prepared = []
        for item in items:
            try:
                probe = self.builder.build([item.source], self.model)[0]
            except (OSError, ValueError) as error:
                # One bad file among many should not stop the rest.
                self.failed.append((item.source, str(error)))
                print_log(
                    f'skipped {item.source}: {error}',
                    logger='current',
                    level=logging.WARNING)
                continue
            # Names key the value ranges; they must differ within a chunk.
            probe.name = f'{probe.name}#{len(prepared)}'
            prepared.append((item, probe))
        return prepared

    def _reduce(self, probes: List[Probe]) -> List[List[ProbeMaps]]:
        """Reduced maps of every probe for every checkpoint."""
        reduced: List[List[ProbeMaps]] = []
        # In checkpoint order: the range tracker's 'last' relies on it.
        for checkpoint in self.checkpoints:
            self._load(checkpoint)
            row = []
            # One probe per pass: only one image's full features at a time.
            for probe in probes:
                try:
                    row.extend(self.orchestrator.fire(self.model, [probe]))
                except Exception as error:
                    raise RunError(
                        f'the forward pass on {probe.source} failed with '
                        f'checkpoint {checkpoint!r}: '
                        f'{type(error).__name__}: {error}') from error
            reduced.append(row)
        return reduced

    def run(self,
            items: Sequence[ImageItem],
            emit: Callable[[Drawn], None],
            advance: Callable[[int], None] = lambda n: None) -> None:
        """Draw every image and hand each to ``emit``.

        Args:
            items (Sequence[ImageItem]): The images.
            emit (callable): Called with the :class:`Drawn` of each image.
            advance (callable): Called with the number of images done, for
                a progress bar.
        """
        # One checkpoint needs no look-ahead: draw image by image.
        chunk = CHUNK if len(self.checkpoints) > 1 else 1
        for start in range(0, len(items), chunk):
            batch = items[start:start + chunk]
            prepared = self._probes(batch)
            if prepared:
                for drawn in self._drawn(prepared):
                    emit(drawn)
            advance(len(batch))

    def _drawn(self, prepared: List[Tuple[ImageItem, Probe]]) -> List[Drawn]:
        """The pictures of a chunk's images, for every checkpoint."""
        tracker = self.orchestrator.range_tracker
        if isinstance(tracker, SeriesRanges):
            tracker.start_recording()
        reduced = self._reduce([probe for _, probe in prepared])
        if isinstance(tracker, SeriesRanges):
            tracker.apply([m for row in reduced for m in row])
        return [
            Drawn(item, [
                self.orchestrator.render(row[index], self.class_names)
                for row in reduced
            ]) for index, (item, _) in enumerate(prepared)
        ]


class CamSeriesDrawer(SeriesDrawer):
    """Draws the CAMs of images for a list of checkpoints: each image's
    picture for each checkpoint, by :class:`CamOrchestrator` (which
    resolves its layers and rule on the model).

    Args:
        cam (CamOrchestrator): What to explain and how.
        **kwargs: As :class:`SeriesDrawer`, without its orchestrator.
    """

    def __init__(self, model: nn.Module, cam: CamOrchestrator,
                 **kwargs) -> None:
        super().__init__(model, None, **kwargs)
        self.cam = cam

    def _drawn(self, prepared: List[Tuple[ImageItem, Probe]]) -> List[Drawn]:
        """Each image's CAM picture for every checkpoint."""
        pictures: List[List[np.ndarray]] = [[] for _ in prepared]
        for checkpoint in self.checkpoints:
            self._load(checkpoint)
            for index, (_, probe) in enumerate(prepared):
                try:
                    cams, = self.cam.fire(self.model, [probe],
                                          self.class_names)
                except Exception as error:
                    raise RunError(
                        f'the CAMs of {probe.source} failed with '
                        f'checkpoint {checkpoint!r}: '
                        f'{type(error).__name__}: {error}') from error
                if cams.note:
                    print_log(
                        f'{probe.source} with {checkpoint}: {cams.note}, '
                        'nothing to explain (a lower --score-thr explains '
                        'weaker boxes).',
                        logger='current',
                        level=logging.WARNING)
                pictures[index].append(
                    self.cam.render(cams, self.class_names))
        return [
            Drawn(item, pictures=drawn)
            for (item, _), drawn in zip(prepared, pictures)
        ]
