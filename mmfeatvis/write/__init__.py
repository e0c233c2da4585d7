"""Stage "write": rendered maps and statistics into Visualizer backends.

Everything goes through an mmengine ``Visualizer``, so each configured
backend (local image files, TensorBoard, WandB, ...) receives it: names
(:mod:`.names`), encoding and atomic files (:mod:`.encode`), the writes
(:mod:`.images`), the writer thread (:mod:`.background`), the
drawing process (:mod:`.process`) and the one
adapter for what mmengine and TensorBoard keep private
(:mod:`.backends`).
"""
from .background import BackgroundWriter
from .encode import (IMAGE_FORMATS, check_image_format, decode_image,
                     encode_image, gif_bytes, put_atomically)
from .images import (WRITE_FAILURES, WriteFailures, add_image, firing_images,
                     local_image_dirs, local_scalar_files, prepare_backends,
                     put_encoded, wants_pixels, write_scalars)
from .names import cam_tag, image_names, image_tag, overview_name, stat_scalars
from .process import DrawingProcess, DrawingProcessGone, drawing_process

__all__ = [
    'BackgroundWriter', 'DrawingProcess', 'DrawingProcessGone',
    'IMAGE_FORMATS', 'WRITE_FAILURES', 'WriteFailures', 'add_image',
    'cam_tag', 'check_image_format', 'decode_image', 'drawing_process',
    'encode_image', 'firing_images', 'gif_bytes', 'image_names', 'image_tag',
    'local_image_dirs', 'local_scalar_files', 'overview_name',
    'prepare_backends', 'put_atomically', 'put_encoded', 'stat_scalars',
    'wants_pixels', 'write_scalars'
]
