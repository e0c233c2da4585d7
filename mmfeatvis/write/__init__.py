"""Stage "write": rendered maps and statistics into Visualizer backends.

Everything goes through an mmengine ``Visualizer``, so each configured
backend (local image files, TensorBoard, WandB, ...) receives it: names
(:mod:`.names`), encoding and atomic files (:mod:`.encode`), the writes
(:mod:`.images`), the writer thread (:mod:`.background`) and the one
adapter for what mmengine and TensorBoard keep private
(:mod:`.backends`).
"""
from .background import BackgroundWriter
from .encode import (IMAGE_FORMATS, check_image_format, encode_image,
                     gif_bytes, put_atomically)
from .images import (WRITE_FAILURES, WriteFailures, add_image,
                     prepare_backends, write_results, write_scalars)
from .names import cam_tag, image_names, image_tag, overview_name, stat_scalars

__all__ = [
    'BackgroundWriter', 'IMAGE_FORMATS', 'WRITE_FAILURES', 'WriteFailures',
    'add_image', 'cam_tag', 'check_image_format', 'encode_image', 'gif_bytes',
    'image_names', 'image_tag', 'overview_name', 'prepare_backends',
    'put_atomically', 'stat_scalars', 'write_results', 'write_scalars'
]
