"""Write stage: rendered maps and statistics into Visualizer backends.

Everything goes through an mmengine ``Visualizer`` so each configured backend
(local PNG files, TensorBoard, WandB, ...) receives it. Names are made safe
as file names, since mmengine's local backend joins them into a path.
"""
import logging
import queue
import re
import threading
from typing import Any, Callable, Dict, Iterable, List

import cv2
import numpy as np
from mmengine.logging import print_log
from mmengine.visualization import TensorboardVisBackend, Visualizer

from .pipeline import ProbeResult

NAME_PREFIX = 'featvis'
JPEG_QUALITY = 92


def safe_name(*parts: str) -> str:
    """Join name parts into one name made of ``[A-Za-z0-9_.-]`` only.

    ``backbone[0]`` becomes ``backbone_0``; slashes, brackets, ``#`` and
    spaces would otherwise break local file names.
    """
    cleaned = [
        re.sub(r'[^A-Za-z0-9_.-]+', '_', str(part)).strip('_')
        for part in parts
    ]
    return '_'.join(part for part in cleaned if part)


def image_names(result: ProbeResult) -> Dict[str, str]:
    """Backend name for each layer image of ``result``."""
    return {
        layer: safe_name(NAME_PREFIX, result.probe, layer)
        for layer in result.layer_images
    }


def overview_name(probe: str) -> str:
    """Backend name of the composed image of all layers of ``probe``."""
    return safe_name(NAME_PREFIX, probe, 'overview')


def stat_scalars(results: Iterable[Any]) -> Dict[str, float]:
    """Scalars such as ``featvis/dog/backbone_0/mean`` for every map.

    Args:
        results (Iterable[ProbeResult | ProbeMaps]): Anything with ``probe``
            (a name or a :class:`~mmfeatvis.probe.Probe`) and ``stats``.

    Slashes group the curves in TensorBoard; scalar names are never used as
    file names, so they are safe here.
    """
    scalars: Dict[str, float] = {}
    for result in results:
        probe = getattr(result.probe, 'name', result.probe)
        for layer, stats in result.stats.items():
            for stat, value in stats.items():
                key = '/'.join(
                    (NAME_PREFIX, safe_name(probe),
                     safe_name(layer), stat))
                scalars[key] = float(value)
    return scalars


def add_image(visualizer: Visualizer, name: str, image: np.ndarray,
              step: int) -> None:
    """``visualizer.add_image`` with a fast path for TensorBoard.

    TensorBoard's own ``add_image`` encodes PNG with Pillow, which costs
    more than the whole probe pass of a small model; here the image is
    encoded as a high-quality JPEG with OpenCV (about 15 times faster,
    invisible on heat maps) and the summary goes to the same event file.
    Other backends (PNG files, ...) are called as the Visualizer would.
    """
    for backend in getattr(visualizer, '_vis_backends', {}).values():
        if isinstance(backend, TensorboardVisBackend):
            try:
                _add_tensorboard_jpeg(backend, name, image, step)
                continue
            except (AttributeError, ImportError):
                pass  # another writer implementation: use its own path
        backend.add_image(name, image, step)


def _add_tensorboard_jpeg(backend: TensorboardVisBackend, name: str,
                          image: np.ndarray, step: int) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary
    writer = backend.experiment
    file_writer = writer._get_file_writer()
    bgr = np.ascontiguousarray(image[..., ::-1])
    ok, encoded = cv2.imencode('.jpg', bgr,
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f'OpenCV could not encode image {name!r}.')
    summary = Summary(value=[
        Summary.Value(
            tag=name,
            image=Summary.Image(
                height=image.shape[0],
                width=image.shape[1],
                colorspace=3,
                encoded_image_string=encoded.tobytes()))
    ])
    file_writer.add_summary(summary, step)


def write_scalars(visualizer: Visualizer, scalars: Dict[str, float],
                  step: int) -> None:
    """Send scalars to every backend (on the training thread: the local
    backend appends to the same ``scalars.json`` as the logger)."""
    if scalars:
        visualizer.add_scalars(scalars, step=step)


def write_results(visualizer: Visualizer,
                  results: List[ProbeResult],
                  step: int,
                  per_layer: bool = True,
                  overview: bool = True,
                  stats: bool = True) -> List[str]:
    """Send images (and statistics) of one firing to every backend.

    Args:
        visualizer (Visualizer): Usually ``runner.visualizer``.
        results (list[ProbeResult]): What the pipeline drew.
        step (int): The training iteration, so images line up with losses.
        per_layer (bool): Write one image per captured map.
        overview (bool): Write one composed image per probe.
        stats (bool): Write activation statistics as scalars.

    Returns:
        list[str]: The image names written.
    """
    written: List[str] = []
    for result in results:
        if not result.layer_images:
            continue
        if overview:
            name = overview_name(result.probe)
            add_image(visualizer, name, result.overview(), step)
            written.append(name)
        if per_layer:
            for layer, name in image_names(result).items():
                add_image(visualizer, name, result.layer_images[layer], step)
                written.append(name)
    if stats:
        write_scalars(visualizer, stat_scalars(results), step)
    return written


class BackgroundWriter:
    """Runs drawing-and-writing jobs on one worker thread, in order.

    The training thread only captures and reduces; colouring, resizing,
    encoding and file I/O happen here, off the training loop. At most
    ``max_pending`` jobs wait; a further submit blocks until one is done,
    so a slow disk delays training instead of dropping or piling up images.

    Args:
        max_pending (int): Jobs that may wait. Defaults to 2.
    """

    def __init__(self, max_pending: int = 2) -> None:
        self._jobs: 'queue.Queue' = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(
            target=self._work, name='mmfeatvis-writer', daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None], description: str) -> None:
        """Queue ``job``; a failure is logged as a warning with
        ``description``."""
        self._jobs.put((job, description))

    def flush(self) -> None:
        """Wait until every queued job has finished."""
        self._jobs.join()

    def _work(self) -> None:
        while True:
            job, description = self._jobs.get()
            try:
                job()
            except Exception as error:  # a failed image never stops training
                print_log(
                    f'{description} failed and was skipped '
                    f'({type(error).__name__}: {error}); training goes on.',
                    logger='current',
                    level=logging.WARNING)
            finally:
                self._jobs.task_done()
