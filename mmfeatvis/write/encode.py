"""Pictures encoded once, with OpenCV (JPEG, PNG) or Pillow (GIF)."""
import io
import math
import os
import os.path as osp
from typing import Sequence

import cv2
import numpy as np

#: GIF frames are scaled down to at most this side (a GIF of full-size
#: overviews of many checkpoints would be tens of megabytes).
MAX_GIF_SIDE = 1024


def gif_bytes(frames: Sequence[np.ndarray], duration_ms: int) -> bytes:
    """RGB frames as a looping animated GIF (Pillow), scaled down to at
    most :data:`MAX_GIF_SIDE`.

    Args:
        frames (Sequence[np.ndarray]): RGB uint8 frames of equal size.
        duration_ms (int): Display time of each frame.

    Returns:
        bytes: The GIF file.
    """
    from PIL import Image
    height, width = frames[0].shape[:2]
    scale = min(1.0, MAX_GIF_SIDE / max(height, width))
    size = (max(1,
                math.floor(width * scale)), max(1, math.floor(height * scale)))
    images = []
    for frame in frames:
        image = Image.fromarray(np.ascontiguousarray(frame))
        if image.size != size:
            image = image.resize(size, Image.LANCZOS)
        images.append(image)
    with io.BytesIO() as buffer:
        images[0].save(
            buffer,
            format='GIF',
            save_all=True,
            append_images=images[1:],
            duration=duration_ms,
            loop=0)
        return buffer.getvalue()


JPEG_QUALITY = 92

IMAGE_FORMATS = ('jpg', 'png')


def encode_image(image: np.ndarray, image_format: str = 'jpg') -> bytes:
    """Encode an RGB uint8 image with OpenCV (JPEG at quality 92).

    Args:
        image (np.ndarray): (H, W, 3) RGB uint8.
        image_format (str): A file extension OpenCV writes, without the
            dot: the hook's :data:`IMAGE_FORMATS`, or what a command-line
            output path ends with.

    Returns:
        bytes: The encoded file.

    Raises:
        ValueError: OpenCV cannot encode the image in that format.
    """
    jpeg = image_format.lower() in ('jpg', 'jpeg')
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else []
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    try:
        ok, encoded = cv2.imencode('.' + image_format, bgr, params)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f'OpenCV could not encode a {image.shape} image as '
                         f'{image_format}.')
    return encoded.tobytes()


def decode_image(encoded: bytes) -> np.ndarray:
    """The RGB uint8 pixels of an image :func:`encode_image` encoded."""
    bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError('OpenCV could not decode the image.')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_image_format(image_format: str) -> None:
    """Raise ValueError unless ``image_format`` is one of the hook's
    choices."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f'Unknown image_format {image_format!r}; choose one '
                         f'of {IMAGE_FORMATS}.')


def put_atomically(data: bytes, path: str) -> None:
    """Write ``data`` to the local file ``path`` under a temporary name,
    then rename it: a full disk or a killed process leaves the old file or
    none, never a truncated one."""
    folder = osp.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    temporary = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}.tmp')
    try:
        with open(temporary, 'wb') as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        if osp.exists(temporary):
            os.remove(temporary)
        raise
