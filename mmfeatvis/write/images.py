"""Images and scalars into every backend of an mmengine ``Visualizer``.

Each image is encoded once for all backends; one backend's failure never
keeps an image from the others (:data:`WRITE_FAILURES` counts them).
"""
import functools
import json
import os.path as osp
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.visualization import (LocalVisBackend, TensorboardVisBackend,
                                    Visualizer)

from ..engine_internals import (local_image_dir, local_scalar_file,
                                tensorboard_file_writer, use_compiled_crc32c,
                                vis_backends)
from ..probe import safe_name
from ..render import ProbeResult
from .background import log_warning
from .encode import decode_image, encode_image, put_atomically
from .names import image_names, overview_name


def add_image(visualizer: Visualizer,
              name: str,
              image: np.ndarray,
              step: int,
              image_format: str = 'jpg') -> None:
    """``visualizer.add_image``, encoding the image once for all backends.

    mmengine's local and TensorBoard backends would each encode the image
    again (a PNG costs about 15 times a JPEG here, and TensorBoard encodes
    with Pillow); instead it is encoded once with OpenCV in
    ``image_format`` and the same bytes go to the local file
    (``vis_image/<name>_<step>.<image_format>``) and the event file. Any
    other backend, or a subclass that overrides ``add_image``, is called as
    the Visualizer would call it.

    Args:
        visualizer (Visualizer): Usually ``runner.visualizer``.
        name (str): Image tag, such as ``featvis/dog/backbone_0``. Local
            files (any ``LocalVisBackend``, which joins the name into a
            path) get it as a safe file name, ``featvis_dog_backbone_0``;
            TensorBoard and other backends get the tag.
        image (np.ndarray): RGB uint8 image.
        step (int): Global step.
        image_format (str): ``'jpg'`` (default) or ``'png'`` (lossless).
    """
    if not vis_backends(visualizer):
        return
    try:
        encoded = encode_image(image, image_format)
    except Exception as error:
        WRITE_FAILURES.report('every backend', f'image {name!r} of step '
                              f'{step}', error)
        return
    put_encoded(visualizer, [EncodedImage(name, encoded, image.shape, image)],
                step, image_format)


@dataclass
class EncodedImage:
    """An image encoded once for every backend.

    Attributes:
        tag (str): Image tag; see :func:`add_image`.
        encoded (bytes): The encoded file.
        shape (tuple[int, ...]): The image's (height, width, 3).
        pixels (np.ndarray, optional): The RGB image, for backends that
            take arrays; decoded from ``encoded`` when such a backend needs
            it and it is not given.
    """
    tag: str
    encoded: bytes
    shape: Tuple[int, ...]
    pixels: Optional[np.ndarray] = None


def put_encoded(visualizer: Visualizer,
                images: Sequence[EncodedImage],
                step: int,
                image_format: str = 'jpg',
                local_written: bool = False) -> None:
    """Send encoded images of one step to every backend of ``visualizer``.

    TensorBoard gets them all in one event (fewer records, and less of its
    writer thread's Python beside a training loop that needs the
    interpreter); the local backend one file each; any other backend one
    ``add_image`` call each.

    Args:
        visualizer (Visualizer): Usually ``runner.visualizer``.
        images (Sequence[EncodedImage]): The images.
        step (int): Global step.
        image_format (str): The encoding of the images.
        local_written (bool): The stock local backends' files exist already
            (:func:`local_file_name` in :func:`local_image_dirs`).
    """
    if not images:
        return
    for backend in vis_backends(visualizer).values():
        kind = _own_image_path(backend)
        if kind == 'tensorboard':
            try:
                _add_tensorboard_images(backend, images, step)
            except Exception as error:
                WRITE_FAILURES.report(
                    type(backend).__name__,
                    f'the images of step {step} ({images[0].tag}, ...)',
                    error)
            continue
        if kind == 'local' and local_written:
            continue
        for image in images:
            # One failure (a full or read-only disk) must not keep the
            # image from the others.
            target = f'image {image.tag!r} of step {step}'
            try:
                if kind == 'local':
                    target = osp.join(
                        local_image_dir(backend),
                        local_file_name(image.tag, step, image_format))
                    put_atomically(image.encoded, target)
                    continue
                if image.pixels is None:
                    image.pixels = decode_image(image.encoded)
                backend.add_image(
                    safe_name(image.tag) if isinstance(
                        backend, LocalVisBackend) else image.tag,
                    image.pixels, step)
            except Exception as error:
                WRITE_FAILURES.report(type(backend).__name__, target, error)


def local_file_name(name: str, step: int, image_format: str) -> str:
    """The file of image ``name`` at ``step`` in a local backend's
    ``vis_image`` folder."""
    return f'{safe_name(name)}_{step}.{image_format}'


def local_image_dirs(visualizer: Visualizer) -> List[str]:
    """The ``vis_image`` folders of the stock local backends, whose files
    :func:`put_encoded` leaves to the caller when told they exist."""
    return [
        local_image_dir(backend)
        for backend in vis_backends(visualizer).values()
        if _own_image_path(backend) == 'local'
    ]


def local_scalar_files(visualizer: Visualizer) -> List[str]:
    """The ``scalars.json`` of the stock local backends, whose lines
    :func:`write_scalars` leaves to the caller when told they exist."""
    return [
        local_scalar_file(backend)
        for backend in vis_backends(visualizer).values()
        if _stock(backend, LocalVisBackend, 'add_scalars', '_dump')
    ]


def append_scalar_lines(path: str, scalars: Dict[str, float],
                        step: int) -> None:
    """Append ``scalars`` to a local backend's ``scalars.json`` as its own
    ``add_scalars`` would, one line per group (see :func:`write_scalars`),
    each line in one ``write`` of a file opened for appending."""
    lines = [
        json.dumps({**group, 'step': step}) + '\n'
        for group in _scalar_groups(scalars).values()
    ]
    with open(path, 'a') as file:
        for line in lines:
            file.write(line)
            file.flush()


def _scalar_groups(
        scalars: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """A layer's statistics share everything but the last ``/`` part of
    their names."""
    groups: Dict[str, Dict[str, float]] = {}
    for name, value in scalars.items():
        groups.setdefault(name.rpartition('/')[0], {})[name] = value
    return groups


def wants_pixels(visualizer: Visualizer) -> bool:
    """Whether a backend takes RGB arrays rather than encoded bytes."""
    return any(
        _own_image_path(backend) is None
        for backend in vis_backends(visualizer).values())


class WriteFailures:
    """Failed image writes, warned about once per kind and counted.

    A full disk fails every image of every firing; the first failure of a
    backend with a given error is a warning naming the file and the
    reason, the rest are counted and summarised by :meth:`summary`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Dict[Tuple[str, str], int] = {}

    def report(self, backend: str, target: str, error: Exception) -> None:
        """Record that ``backend`` could not write ``target``."""
        kind = (backend, f'{type(error).__name__}'
                f'{getattr(error, "errno", "") or ""}')
        with self._lock:
            first = kind not in self.counts
            self.counts[kind] = self.counts.get(kind, 0) + 1
        if first:
            log_warning(
                f'{backend} could not write {target} '
                f'({type(error).__name__}: {error}); the image was skipped '
                'there (other backends still got it) and training goes on. '
                'Later failures of this kind are counted, not repeated.')

    def summary(self) -> Optional[str]:
        """One line about every failure since the last summary, or None;
        the counts start again."""
        with self._lock:
            counts, self.counts = self.counts, {}
        if not counts:
            return None
        return 'image writes that failed: ' + '; '.join(
            f'{backend} ({reason}): {count}'
            for (backend, reason), count in counts.items())


#: Failures of :func:`add_image`, process-wide (the writer thread and the
#: training thread both write).
WRITE_FAILURES = WriteFailures()


def _own_image_path(backend: Any) -> Optional[str]:
    """'local' or 'tensorboard' where the encoded bytes can be written
    directly, None where the backend's own ``add_image`` must run."""
    if _stock(backend, LocalVisBackend, 'add_image'):
        return 'local'
    if _stock(backend, TensorboardVisBackend, 'add_image'):
        return 'tensorboard'
    return None


def _stock(backend: Any, base: type, *methods: str) -> bool:
    """Whether ``backend`` is a ``base`` whose ``methods`` are mmengine's own
    (a subclass that overrides one must be called through it)."""
    return isinstance(backend, base) and all(
        getattr(type(backend), name) is getattr(base, name)
        for name in methods)


def _add_tensorboard_images(backend: TensorboardVisBackend,
                            images: Sequence[EncodedImage],
                            step: int) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary
    summary = Summary(value=[
        Summary.Value(
            tag=image.tag,
            image=Summary.Image(
                height=image.shape[0],
                width=image.shape[1],
                colorspace=3,
                encoded_image_string=image.encoded)) for image in images
    ])
    tensorboard_file_writer(backend).add_summary(summary, step)


def prepare_backends(visualizer: Visualizer) -> None:
    """Get the backends ready on the training thread, before the writer
    thread exists.

    The writer thread writes to the local and TensorBoard backends directly;
    mmengine initialises a backend at its first use, without a lock, and
    Python can deadlock when two threads first import the same package at
    once (seen under FSDP: ``_DeadlockError`` on TensorBoard's event file
    writer). So both happen here instead: the backends are initialised and
    what the writer imports is imported, and TensorBoard's checksum is
    compiled (:func:`use_compiled_crc32c`). Call it on the process that
    writes only: initialising a TensorBoard backend creates its event file.
    """
    for backend in vis_backends(visualizer).values():
        if isinstance(backend, (LocalVisBackend, TensorboardVisBackend)):
            backend.experiment  # the property initialises the backend
        if isinstance(backend, TensorboardVisBackend):
            import tensorboard.compat.proto.summary_pb2  # noqa: F401
            if not use_compiled_crc32c():
                _warn_pure_python_checksum()


@functools.lru_cache(maxsize=None)  # once per process
def _warn_pure_python_checksum() -> None:
    """TensorBoard will checksum in Python."""
    log_warning(
        'FeatmapVisHook: TensorBoard checksums each event in pure Python '
        'here (no compiled google-crc32c): about 50 ms of the interpreter '
        "lock per firing's overview, which the training loop waits for. "
        'Install it: pip install google-crc32c (or mmfeatvis[tensorboard]).')


def write_scalars(visualizer: Visualizer,
                  scalars: Dict[str, float],
                  step: int,
                  local_written: bool = False) -> None:
    """Send scalars to every backend.

    TensorBoard gets them as one summary of many values (one event instead
    of one per scalar: this runs beside a training loop whose own Python
    competes for the same interpreter). Other backends get one
    ``add_scalars`` call per group (a layer's statistics share everything
    but the last ``/`` part of their names): the hook calls this on its
    writer thread while the Runner's logger appends to the same
    ``scalars.json`` of the local backend, and one short line per call is
    written by one ``write`` in append mode, which concurrent lines cannot
    split, whereas one line of all layers could exceed the file buffer and
    be written in pieces.

    Args:
        visualizer (Visualizer): Usually ``runner.visualizer``.
        scalars (dict[str, float]): Values by name.
        step (int): Global step.
        local_written (bool): The stock local backends' lines are written
            already (:func:`append_scalar_lines` on
            :func:`local_scalar_files`).
    """
    if not scalars:
        return
    groups = _scalar_groups(scalars)
    for backend in vis_backends(visualizer).values():
        try:
            if _stock(backend, TensorboardVisBackend, 'add_scalars',
                      'add_scalar'):
                _add_tensorboard_scalars(backend, scalars, step)
                continue
            if local_written and _stock(backend, LocalVisBackend,
                                        'add_scalars', '_dump'):
                continue
            for group in groups.values():
                backend.add_scalars(group, step=step)
        except Exception as error:  # the images may still get through
            WRITE_FAILURES.report(
                type(backend).__name__, f'the statistics of step {step}',
                error)


def _add_tensorboard_scalars(backend: TensorboardVisBackend,
                             scalars: Dict[str, float], step: int) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary
    summary = Summary(value=[
        Summary.Value(tag=name, simple_value=float(value))
        for name, value in scalars.items()
    ])
    tensorboard_file_writer(backend).add_summary(summary, step)


def firing_images(results: List[ProbeResult], per_layer: bool = True,
                  overview: bool = True) -> List[Tuple[str, np.ndarray]]:
    """The tags and RGB images of one firing, in the order they are
    written: each probe's overview, then its layers."""
    images: List[Tuple[str, np.ndarray]] = []
    for result in results:
        if not result.has_images:
            continue
        if overview:
            images.append((overview_name(result.probe), result.overview()))
        if per_layer:
            images.extend((name, result.layer_images[layer])
                          for layer, name in image_names(result).items())
    return images
