"""Probe images: read from any mmengine file backend, and named safely."""
import os.path as osp
import re
from typing import Optional, Sequence

import cv2
import numpy as np
from mmengine.fileio import get as get_bytes


def read_rgb(path: str, backend_args: Optional[dict] = None) -> np.ndarray:
    """Read an image through ``mmengine.fileio`` as RGB uint8.

    Args:
        path (str): Local path or any URI a file backend understands.
        backend_args (dict, optional): Arguments for the file backend.

    Returns:
        np.ndarray: ``(H, W, 3)`` RGB image.

    Raises:
        FileNotFoundError: If the file does not exist.
        OSError: If it cannot be read (e.g. a URL without network).
        ValueError: If the file is not a readable image.
    """
    try:
        content = get_bytes(path, backend_args=backend_args)
    except FileNotFoundError:
        raise FileNotFoundError(f'Probe image not found: {path!r}') from None
    except Exception as error:  # a URL without network, a bad backend
        raise OSError(f'cannot read the probe image {path!r}: '
                      f'{type(error).__name__}: {error}') from error
    # OpenCV straight away (mmcv's reader is the same call): reading a
    # probe then needs no compiled mmcv, on a machine with only torch.
    data = np.frombuffer(content, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f'Probe image {path!r} is not a readable image.')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def probe_name(source: str, index: int, taken: Sequence[str]) -> str:
    """A short, file-name-safe name for a probe, unique among ``taken``."""
    stem = osp.splitext(osp.basename(str(source).rstrip('/')))[0] or 'probe'
    name = safe_name(stem) or 'probe'
    if name in taken:
        name = f'{name}_{index}'
    return name


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
