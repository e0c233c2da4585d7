"""A tiny generated semantic segmentation data set (images + label PNGs).

Laid out as mmseg's ``BaseSegDataset`` expects (``img_dir/{split}`` and
``ann_dir/{split}``), so that a segmentor from mmseg's shipped configs can be
trained for a few iterations without any download.
"""
import os
import os.path as osp
from typing import Dict, Tuple

import cv2
import numpy as np

SEG_CLASSES = ('background', 'disc', 'box')


def make_shapes_segmentation(out_dir: str,
                             num_train: int = 8,
                             num_val: int = 2,
                             image_size: Tuple[int, int] = (128, 160),
                             seed: int = 0) -> Dict[str, object]:
    """Write images with discs and boxes and their label maps.

    Args:
        out_dir (str): Root folder of the data set.
        num_train (int): Training images.
        num_val (int): Validation images.
        image_size (tuple[int, int]): Height and width.
        seed (int): Seed; the same seed writes the same files.

    Returns:
        dict: ``data_root``, ``classes`` and ``palette``.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    for split, count in (('train', num_train), ('val', num_val)):
        img_dir = osp.join(out_dir, 'img_dir', split)
        ann_dir = osp.join(out_dir, 'ann_dir', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for index in range(count):
            image = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
            label = np.zeros((height, width), np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                cls = int(rng.integers(1, len(SEG_CLASSES)))
                cx, cy = int(rng.integers(16, width - 16)), int(
                    rng.integers(16, height - 16))
                size = int(rng.integers(8, 24))
                colour = tuple(int(c) for c in rng.integers(150, 256, 3))
                for canvas, value in ((image, colour), (label, cls)):
                    if cls == 1:
                        cv2.circle(canvas, (cx, cy), size, value, -1)
                    else:
                        cv2.rectangle(canvas, (cx - size, cy - size),
                                      (cx + size, cy + size), value, -1)
            name = f'{split}_{index:04d}'
            cv2.imwrite(osp.join(img_dir, f'{name}.jpg'), image)
            cv2.imwrite(osp.join(ann_dir, f'{name}.png'), label)
    palette = [[0, 0, 0], [220, 20, 60], [0, 0, 142]]
    return dict(data_root=out_dir, classes=SEG_CLASSES, palette=palette)
