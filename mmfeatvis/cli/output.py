"""Where pictures go: files under ``--out-dir``/``--out-file``, or a window.

One checkpoint gives one picture per image, at the image's relative path
under the output folder (or at ``--out-file``). A series of checkpoints
gives, per image, one picture per checkpoint, the strip of all checkpoints
and an animated GIF::

    OUT_DIR/sub/dog/epoch_1.jpg ... epoch_N.jpg   one per checkpoint
    OUT_DIR/sub/dog/series_strip.jpg              checkpoints as columns
    OUT_DIR/sub/dog/series.gif                    one frame per checkpoint
    OUT_DIR/sub/dog/series_ranges.json            the ranges drawn with

With ``--out-file x.jpg``: ``x.jpg`` is the strip, ``x.gif`` the GIF,
``x_epoch_1.jpg`` ... the frames (in the format of ``x``, so ``x.png``
gives lossless frames) and ``x_ranges.json`` the ranges.
"""
import json
import logging
import os
import os.path as osp
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from mmengine.logging import print_log

from ..probe import safe_name
from ..render import ProbeResult, compose_panels, series_strip, titled
from ..write import encode_image, gif_bytes, put_atomically
from .drawing import Drawn, compose_layers
from .errors import RunError, UsageError
from .inputs import output_path, with_image_extension

DEFAULT_OUT_DIR = 'output'


def display_available() -> bool:
    """Whether a window can be opened (a display on Linux)."""
    if sys.platform.startswith('linux'):
        return bool(
            os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))
    return True


def _check_writable(folder: str, option: str, given: str) -> None:
    """Raise UsageError unless files can be created in ``folder``, trying
    its nearest existing ancestor (nothing is created for a run that may
    fail later)."""
    existing = osp.abspath(folder)
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    try:
        if not osp.isdir(existing):
            raise NotADirectoryError(20, 'Not a directory')
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UsageError(f'{option} {given!r}: cannot write into '
                         f'{existing!r}: {error.strerror or error}.') from None


class PictureSink:
    """Writes (and optionally shows) the pictures of drawn images.

    Args:
        labels (Sequence[str]): Checkpoint names, in order.
        out_dir (str, optional): ``--out-dir``.
        out_file (str, optional): ``--out-file`` (one image only).
        show (bool): ``--show``.
        layer_cols (int, optional): Layers per row of a picture.
        gif_duration (int): Milliseconds per GIF frame.
    """

    def __init__(self,
                 labels: Sequence[str],
                 out_dir: Optional[str] = None,
                 out_file: Optional[str] = None,
                 show: bool = False,
                 layer_cols: Optional[int] = None,
                 gif_duration: int = 800) -> None:
        self.labels = list(labels)
        self.out_file = with_image_extension(out_file) if out_file else None
        if self.out_file and not cv2.haveImageWriter(self.out_file):
            raise UsageError(f'--out-file {out_file!r}: OpenCV cannot write '
                             'this format; use .jpg or .png.')
        self.show = show
        if show and not display_available():
            print_log(
                '--show: no display is available (DISPLAY is not set), so '
                'the pictures are written to files instead.',
                logger='current',
                level=logging.WARNING)
            self.show = False
        # Shown pictures are written only where the user asked for files.
        self.out_dir = out_dir or (None if self.show else DEFAULT_OUT_DIR)
        if self.out_file:
            self.out_dir = None
        self.layer_cols = layer_cols
        self.gif_duration = gif_duration
        self.written: List[str] = []
        # A folder that cannot take files fails now, not after the model.
        if self.out_file:
            _check_writable(
                osp.dirname(self.out_file) or '.', '--out-file', self.out_file)
        elif self.out_dir:
            _check_writable(self.out_dir, '--out-dir', self.out_dir)

    @property
    def series(self) -> bool:
        """Whether several checkpoints are drawn."""
        return len(self.labels) > 1

    def _write(self, path: str, image: np.ndarray) -> None:
        try:
            encoded = encode_image(image, osp.splitext(path)[1][1:])
        except ValueError:
            raise RunError(f'OpenCV cannot encode {path!r}; use .jpg or '
                           '.png.') from None
        self._save(path, encoded)

    def _save(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` whole, or fail naming the reason."""
        try:
            put_atomically(data, path)
        except OSError as error:
            raise RunError(f'cannot write {path!r}: '
                           f'{error.strerror or error}.') from error
        self.written.append(path)

    def _show(self, title: str, image: np.ndarray) -> None:
        try:
            cv2.imshow(title, np.ascontiguousarray(image[..., ::-1]))
            cv2.waitKey(0)
            cv2.destroyWindow(title)
        except cv2.error as error:
            # e.g. opencv-python-headless, which has no GUI at all.
            print_log(
                f'--show failed ({str(error).strip()}); writing to '
                f'{DEFAULT_OUT_DIR!r} instead.',
                logger='current',
                level=logging.WARNING)
            self.show = False
            if not (self.out_dir or self.out_file):
                self.out_dir = DEFAULT_OUT_DIR

    def __call__(self, drawn: Drawn) -> None:
        """Emit the pictures of one image."""
        if self.series:
            self._emit_series(drawn)
            return
        picture = drawn.pictures[0] if drawn.pictures else compose_layers(
            drawn.results[0], self.layer_cols, drawn.item.source)
        if self.show:
            self._show(drawn.item.rel_path, picture)
        if self.out_file:
            self._write(self.out_file, picture)
        elif self.out_dir:
            self._write(output_path(drawn.item, self.out_dir), picture)

    def _series_paths(self, drawn: Drawn):
        if self.out_file:
            stem, extension = osp.splitext(self.out_file)
            frames = [
                f'{stem}_{safe_name(label)}{extension}'
                for label in self.labels
            ]
            return frames, self.out_file, stem + '.gif'
        base = osp.join(self.out_dir, osp.splitext(drawn.item.rel_path)[0])
        frames = [
            osp.join(base,
                     safe_name(label) + '.jpg') for label in self.labels
        ]
        return (frames, osp.join(base, 'series_strip.jpg'),
                osp.join(base, 'series.gif'))

    def _emit_series(self, drawn: Drawn) -> None:
        if drawn.pictures:  # CAMs: each checkpoint's picture, in a row
            frames = [
                titled(label, picture)
                for label, picture in zip(self.labels, drawn.pictures)
            ]
            strip = compose_panels(
                list(zip(self.labels, drawn.pictures)), cols=len(frames))
        else:
            frames = [
                titled(
                    label,
                    compose_layers(result, self.layer_cols,
                                   drawn.item.source))
                for label, result in zip(self.labels, drawn.results)
            ]
            strip = series_strip(self.labels, drawn.results)
        if self.show:
            self._show(drawn.item.rel_path, strip)
        if not (self.out_dir or self.out_file):
            return
        frame_paths, strip_path, gif_path = self._series_paths(drawn)
        for path, frame in zip(frame_paths, frames):
            self._write(path, frame)
        self._write(strip_path, strip)
        self._save(gif_path, gif_bytes(frames, self.gif_duration))
        if drawn.pictures:
            return  # each CAM is drawn on its own peak: no shared ranges
        self._save(
            osp.splitext(gif_path)[0] + '_ranges.json',
            json.dumps(series_ranges(self.labels, drawn.results),
                       indent=1).encode())


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
