"""A firing's pictures: render, encode and write its local files.

:class:`FeatmapDrawer` turns the reduced maps of one probe into a
:class:`~mmfeatvis.render.ProbeResult`; :func:`draw_firing` does that for
every probe of a firing, encodes each image once and writes the local
files. It needs nothing but the :class:`DrawRequest` (the host maps and
the drawing options), so the hook runs it in its drawing process
(:class:`~mmfeatvis.write.DrawingProcess`), away from the training
process's interpreter lock; the backends that live in the training process
(TensorBoard, any other) get the encoded images afterwards, there.
"""
import dataclasses
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Generic, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch

from ..options import DrawOptions
from ..probe import Probe
from ..reduce import ProbeMaps, ReducedLayer
from ..reduce.featmap import ReducedFeatmap
from ..render import (OVERVIEW_TILE_SIDE, ProbeResult, draw_sample,
                      fitted_arrangement, image_at, input_cell_scale,
                      render_reduced)
from ..write import DrawingProcess, encode_image, firing_images, put_atomically
from ..write.images import EncodedImage, append_scalar_lines, local_file_name


class FeatmapDrawer:
    """Draws reduced maps over their probe image (host only, any thread).

    Args:
        options (DrawOptions): The drawing options.

    Attributes:
        notes (list[str]): Warnings for the run's log, such as a probe
            drawn smaller than its size; the caller logs them (the drawing
            process has no log of its own).
    """

    def __init__(self, options: DrawOptions) -> None:
        self.options = options
        self.notes: List[str] = []

    def render(self,
               maps: ProbeMaps,
               class_names: Optional[Sequence[str]] = None,
               *,
               layer_images: bool = True,
               overview_tile_side: Optional[int] = None) -> ProbeResult:
        """Draw one probe's reduced maps.

        Args:
            maps (ProbeMaps): The reduced maps, on the host.
            class_names (Sequence[str], optional): Names of predicted
                labels.
            layer_images (bool): Draw every map at the original image's
                size (``result.layer_images``). Defaults to True.
            overview_tile_side (int, optional): Also draw every map with
                its longer side at most this, and each cell no larger than
                the model input (:func:`~mmfeatvis.render.input_cell_scale`),
                on a copy of the image resampled once
                (``result.overview_tiles``): cheaper and sharper than
                shrinking the full-size images for ``result.overview()``.
                Defaults to None: no tiles.
        """
        probe = maps.probe
        result = ProbeResult(
            probe.name,
            skipped=dict(maps.skipped),
            colormap=self.options.colormap)
        for item in maps.layers:
            if item.norm_range is not None:
                result.ranges[item.layer] = tuple(item.norm_range)
            if item.own_range is not None:
                result.own_ranges[item.layer] = tuple(item.own_range)
            if item.reanchored:
                result.reanchored.add(item.layer)
            if item.reduced.kind == 'rgb':
                result.rgb_layers.add(item.layer)
        backgrounds: Dict[Tuple[int, int], np.ndarray] = {}
        height, width = probe.image.shape[:2]

        def background(scale: float) -> np.ndarray:
            # Predictions are drawn once per size, on the resampled image.
            hw = (max(1, round(height * scale)), max(1, round(width * scale)))
            if hw not in backgrounds:
                image = image_at(probe.image, hw, probe.resized)
                if maps.prediction is not None:
                    image = draw_sample(image, maps.prediction,
                                        self.options.score_thr, class_names,
                                        hw[0] / height)
                backgrounds[hw] = image
            return backgrounds[hw]

        for item in maps.layers:
            scale = 1.0
            if layer_images:
                if self.options.max_image_side:
                    scale = self._tile_scale(probe, item.reduced,
                                             self.options.max_image_side)
                    if scale < 1:
                        self._note_cap(probe)
                result.layer_images[item.layer] = self._render_layer(
                    probe, item, background(scale), class_names)
            if overview_tile_side:
                tile_scale = min(
                    self._tile_scale(probe, item.reduced,
                                     overview_tile_side),
                    input_cell_scale((height, width), probe.meta))
                if layer_images and tile_scale == scale:
                    # A small image's tile is its full picture: draw once.
                    tile = result.layer_images[item.layer]
                else:
                    tile = self._render_layer(probe, item,
                                              background(tile_scale),
                                              class_names)
                result.overview_tiles[item.layer] = tile
        return result

    def _note_cap(self, probe: Probe) -> None:
        height, width = probe.image.shape[:2]
        note = (f'mmfeatvis: the images of probe {probe.name} '
                f'({width}x{height}) are drawn at most '
                f'{self.options.max_image_side} px on their longer side '
                '(max_image_side); the whole probe is still drawn, '
                'resampled.')
        if note not in self.notes:
            self.notes.append(note)

    def _grid(self, reduced: ReducedFeatmap) -> Tuple[int, int]:
        """Rows and columns of a layer's picture: the arrangement, shrunk
        to the channels there are (a grid never has empty rows)."""
        if not reduced.is_grid:
            return 1, 1
        return fitted_arrangement(self.options.arrangement,
                                  int(reduced.maps.shape[0]))

    def _tile_scale(self, probe: Probe, reduced: ReducedFeatmap,
                    side: int) -> float:
        rows, cols = self._grid(reduced)
        height, width = probe.image.shape[:2]
        return min(1.0, side / max(height * rows, width * cols))

    def _render_layer(
            self,
            probe: Probe,
            item: ReducedLayer,
            background: np.ndarray,
            class_names: Optional[Sequence[str]] = None) -> np.ndarray:
        opts = self.options
        return render_reduced(
            item.reduced,
            background,
            norm_range=item.norm_range,
            percentile=None if item.norm_range else opts.percentile,
            alpha=opts.alpha,
            colormap=opts.colormap,
            arrangement=self._grid(item.reduced),
            image_meta=probe.meta,
            class_names=class_names)


@dataclass
class DrawRequest:
    """Everything :func:`draw_firing` needs: picklable, small.

    Attributes:
        options (DrawOptions): The drawing options.
        maps (list[ProbeMaps]): The firing's maps, on the host; see
            :func:`portable_maps`.
        step (int): The training iteration (in the local file names).
        class_names (list[str], optional): Names of predicted labels.
        per_layer (bool): Draw one image per captured map.
        overview (bool): Draw one composed image per probe.
        image_format (str): ``'jpg'`` or ``'png'``.
        local_dirs (list[str]): Folders of the local backends whose files
            are written here (``vis_image`` of a stock ``LocalVisBackend``).
        keep_pixels (bool): Return the RGB pixels too, for backends that
            take arrays (any but the local and TensorBoard ones).
        scalars (dict[str, float]): Activation statistics, appended here
            to the local backends' ``scalar_files``.
        scalar_files (list[str]): ``scalars.json`` of the stock local
            backends.
        hold_images (bool): The drawing process keeps each probe's image
            (see :data:`HELD_PROBES`): a probe sent without one is drawn
            on the image it kept under the probe's token.
    """
    options: DrawOptions
    maps: List[ProbeMaps]
    step: int
    class_names: Optional[List[str]] = None
    per_layer: bool = False
    overview: bool = True
    image_format: str = 'jpg'
    local_dirs: List[str] = field(default_factory=list)
    keep_pixels: bool = False
    scalars: Dict[str, float] = field(default_factory=dict)
    scalar_files: List[str] = field(default_factory=list)
    hold_images: bool = False


@dataclass
class DrawnFiring:
    """What :func:`draw_firing` made.

    Attributes:
        images (list[EncodedImage]): In the order they are written.
        notes (list[str]): Warnings for the run's log.
        failures (list[tuple[str, str, Exception]]): Local files that could
            not be written: ``(backend, file, error)``.
        missing_images (list[str]): Tokens of probes sent without their
            image that the drawing process no longer holds: nothing was
            drawn, and the caller sends the request again with them.
    """
    images: List[EncodedImage] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    failures: List[Tuple[str, str, Exception]] = field(default_factory=list)
    missing_images: List[str] = field(default_factory=list)


Held = TypeVar('Held')


class HeldImages(Generic[Held]):
    """What a drawing process holds, by probe token.

    The drawing process keeps its probes here (their images and the copies
    resampled for the tiles, which it would otherwise make again at every
    firing). The training process keeps the same bookkeeping of the tokens
    it has sent, so that it sends an image once, not at every firing: both
    sides make the same calls for each firing drawn, so they hold the same
    tokens.

    Args:
        capacity (int): Probes held beyond those of the latest firing.
            Defaults to :data:`HELD_PROBES`.
    """

    def __init__(self, capacity: Optional[int] = None) -> None:
        self.capacity = HELD_PROBES if capacity is None else capacity
        self._held: 'OrderedDict[str, Held]' = OrderedDict()

    def __contains__(self, token: str) -> bool:
        return token in self._held

    def __len__(self) -> int:
        return len(self._held)

    def get(self, token: str) -> Optional[Held]:
        """What is held under ``token``, or None."""
        return self._held.get(token)

    def put(self, token: str, held: Held) -> None:
        """Hold ``held`` under ``token`` (until :meth:`keep_recent`)."""
        self._held[token] = held

    def keep_recent(self, tokens: Sequence[str]) -> None:
        """After a firing of ``tokens`` (all held): they become the most
        recent, and the least recent others go beyond ``capacity``. A
        firing's own probes always stay, however many."""
        for token in tokens:
            self._held.move_to_end(token)
        while len(self._held) > max(self.capacity, len(set(tokens))):
            self._held.popitem(last=False)


#: Probes a drawing process holds: a run's fixed probes and the last few
#: validation samples (drawn once each, they push the oldest out; a probe
#: pushed out is sent again at its next firing).
HELD_PROBES = 4
#: The drawing process's probes (in the training process: unused).
_HELD_PROBES: HeldImages[Probe] = HeldImages()


def draw_firing(request: DrawRequest) -> DrawnFiring:
    """Render, encode (once per image) and write the local files of one
    firing (images and statistics); the other backends get the result from
    the caller.

    Runs in the drawing process or on the writer thread alike.
    """
    if request.hold_images:
        missing = _held_probes(request.maps)
        if missing:
            return DrawnFiring(missing_images=missing)
    drawer = FeatmapDrawer(request.options)
    results = [
        drawer.render(
            _host_maps(maps),
            request.class_names,
            layer_images=request.per_layer,
            overview_tile_side=OVERVIEW_TILE_SIDE
            if request.overview else None) for maps in request.maps
    ]
    drawn = DrawnFiring(notes=drawer.notes)
    for path in request.scalar_files:
        try:
            append_scalar_lines(path, request.scalars, request.step)
        except Exception as error:  # the images still get through
            drawn.failures.append(('LocalVisBackend', path, error))
    for tag, pixels in firing_images(results, request.per_layer,
                                     request.overview):
        encoded = encode_image(pixels, request.image_format)
        for folder in request.local_dirs:
            path = f'{folder}/' + local_file_name(tag, request.step,
                                                  request.image_format)
            try:
                put_atomically(encoded, path)
            except Exception as error:  # the other backends still get it
                drawn.failures.append(('LocalVisBackend', path, error))
        drawn.images.append(
            EncodedImage(tag, encoded, pixels.shape,
                         pixels if request.keep_pixels else None))
    return drawn


#: Per drawing process, the tokens of the probe images it holds.
_SENT_IMAGES: 'weakref.WeakKeyDictionary[DrawingProcess, HeldImages[bool]]' = (
    weakref.WeakKeyDictionary())
_SENT_IMAGES_LOCK = threading.Lock()


def draw_in_process(process: DrawingProcess,
                    request: DrawRequest) -> DrawnFiring:
    """:func:`draw_firing` of ``request`` in ``process``, which is sent
    each probe image once: later firings draw on the image it holds.

    Raises:
        DrawingProcessGone: The process is not there to answer.
    """
    tokens = [maps.probe.token for maps in request.maps]
    with _SENT_IMAGES_LOCK:
        sent = _SENT_IMAGES.setdefault(process, HeldImages())
        unsent = {token for token in tokens if token not in sent}
    # Should the two sides' bookkeeping part (calls from two threads at
    # once), the process answers which images it lacks, and the second
    # try sends every image.
    for send_all in (False, True):
        portable = dataclasses.replace(
            request,
            hold_images=True,
            maps=[
                portable_maps(maps, send_all or token in unsent)
                for maps, token in zip(request.maps, tokens)
            ])
        drawn = process.call(draw_firing, portable)
        if not drawn.missing_images:
            break
    with _SENT_IMAGES_LOCK:  # the second try holds every image
        for token in tokens:
            sent.put(token, True)
        sent.keep_recent(tokens)
    return drawn


def _held_probes(maps_list: Sequence[ProbeMaps]) -> List[str]:
    """Hold the probes sent with their image and put the held ones in
    place of those sent without; returns the tokens not held (then
    nothing is drawn, and the caller sends them all)."""
    missing = []
    for maps in maps_list:
        probe = maps.probe
        if probe.image is not None:
            _HELD_PROBES.put(probe.token, probe)
            continue
        held = _HELD_PROBES.get(probe.token)
        if held is None:
            missing.append(probe.token)
        else:
            maps.probe = held
    if not missing:
        _HELD_PROBES.keep_recent([maps.probe.token for maps in maps_list])
    return missing


def portable_maps(maps: ProbeMaps, with_image: bool = True) -> ProbeMaps:
    """A copy of host ``maps`` that pickles small and fast: the probe
    without its model input (drawing needs only the image and its meta),
    and without its image unless ``with_image`` (a drawing process that
    holds it draws on that); the maps as NumPy arrays (torch pickles
    tensors through its own serialiser, at many times the cost).
    :func:`draw_firing` turns them back."""
    layers = [
        dataclasses.replace(
            item,
            reduced=dataclasses.replace(
                item.reduced,
                maps=_numpy(item.reduced.maps),
                channels=_numpy(item.reduced.channels),
                basis=None)) for item in maps.layers
    ]
    probe = maps.probe
    return ProbeMaps(
        Probe(
            probe.name,
            probe.image if with_image else None, {},
            probe.meta,
            probe.source,
            token=probe.token),
        skipped=dict(maps.skipped),
        prediction=maps.prediction,
        _layers=layers)


def _host_maps(maps: ProbeMaps) -> ProbeMaps:
    """Undo :func:`portable_maps`' NumPy arrays (maps of the writer thread
    pass unchanged)."""
    for item in maps.layers:
        reduced = item.reduced
        if isinstance(reduced.maps, np.ndarray):
            reduced.maps = torch.from_numpy(reduced.maps)
        if isinstance(reduced.channels, np.ndarray):
            reduced.channels = torch.from_numpy(reduced.channels)
    return maps


def _numpy(value: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if value is None else value.detach().cpu().numpy()
