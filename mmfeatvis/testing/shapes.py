"""A tiny, generated COCO-format detection data set of drawn shapes.

It exists so that the demo and the end-to-end tests can train a real
detector on a CPU in minutes, with no download: the objects are flat-coloured
filled shapes, easy to learn, on a cluttered background, so that the feature
maps have something to show besides the objects.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple, Union

import cv2
import numpy as np

POLYGON_CORNERS = dict(triangle=3, square=4, pentagon=5, hexagon=6)
SHAPES = ('circle', ) + tuple(POLYGON_CORNERS)
DEFAULT_CLASSES = ('circle', 'square', 'triangle')
# Height, width: not square, so that letterbox padding shows in the demo.
DEFAULT_IMAGE_SIZE = (256, 320)
# Clearance between object boxes, in pixels; no object hides another, so a
# box always spans exactly the pixels of its shape.
_GAP = 4


def _to_hw(image_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """Normalise an image size given as ``int`` or ``(H, W)``."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = (int(v) for v in image_size)
    return height, width


def _background(rng: np.random.Generator, height: int,
                width: int) -> np.ndarray:
    """Draw a grey-ish textured background with clutter.

    Args:
        rng (np.random.Generator): Source of randomness.
        height (int): Image height.
        width (int): Image width.

    Returns:
        np.ndarray: A ``(H, W, 3)`` uint8 BGR image.
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs[..., None] / width * rng.uniform(-50, 50, 3) +
            ys[..., None] / height * rng.uniform(-50, 50, 3))
    # Coarse noise upsampled gives blotches; a single grey channel keeps the
    # background unsaturated, unlike the objects.
    coarse = rng.normal(0, 25, (height // 16 + 1, width // 16 + 1, 1))
    blotches = cv2.resize(coarse.astype(np.float32), (width, height),
                          interpolation=cv2.INTER_CUBIC)[..., None]
    grain = rng.normal(0, 10, (height, width, 1))
    img = rng.uniform(80, 170) + ramp + blotches + grain
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        p1 = tuple(int(v) for v in rng.integers(0, (width, height)))
        p2 = tuple(int(v) for v in rng.integers(0, (width, height)))
        grey = int(rng.integers(0, 256))
        cv2.line(img, p1, p2, (grey, grey, grey), int(rng.integers(1, 4)),
                 cv2.LINE_AA)
    return img


def _random_colour(rng: np.random.Generator) -> Tuple[int, int, int]:
    """Pick a saturated, bright BGR colour that stands out of grey."""
    hsv = np.array([[[
        rng.integers(0, 180),
        rng.integers(150, 256),
        rng.integers(150, 256)
    ]]], dtype=np.uint8)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def _polygon(name: str, size: float, angle: float) -> np.ndarray:
    """Corners of a regular polygon around the origin.

    Args:
        name (str): A key of :data:`POLYGON_CORNERS`.
        size (float): Side of a square, else diameter of the circumscribed
            circle.
        angle (float): Rotation in radians.

    Returns:
        np.ndarray: ``(N, 2)`` float corners.
    """
    num = POLYGON_CORNERS[name]
    # A square is sized by its side so that it looks as big as a circle of
    # the same size rather than smaller.
    radius = size / np.sqrt(2) if num == 4 else size / 2
    thetas = angle + np.arange(num) * 2 * np.pi / num
    return np.stack([radius * np.cos(thetas), radius * np.sin(thetas)], 1)


def draw_shape(mask: np.ndarray, name: str, centre: Tuple[int, int],
               size: float, angle: float) -> None:
    """Fill one shape into a single-channel mask, in place.

    Drawing is not anti-aliased, so that the mask is exactly the set of
    pixels that the shape covers in the image.

    Args:
        mask (np.ndarray): ``(H, W)`` uint8 mask to draw into with 255.
        name (str): One of :data:`SHAPES`.
        centre (tuple[int, int]): ``(x, y)`` centre.
        size (float): Diameter of the shape.
        angle (float): Rotation in radians (ignored for circles).
    """
    if name == 'circle':
        cv2.circle(mask, centre, int(round(size / 2)), 255, -1, cv2.LINE_8)
        return
    pts = np.round(_polygon(name, size, angle) + np.asarray(centre))
    cv2.fillPoly(mask, [pts.astype(np.int32)], 255, cv2.LINE_8)


def _overlaps(box: Sequence[int], boxes: List[Sequence[int]]) -> bool:
    """Whether ``box`` (x0, y0, x1, y1) comes within ``_GAP`` of any box."""
    for other in boxes:
        if (box[0] < other[2] + _GAP and other[0] < box[2] + _GAP
                and box[1] < other[3] + _GAP and other[1] < box[3] + _GAP):
            return True
    return False


def render_sample(
    rng: np.random.Generator,
    image_size: Union[int, Sequence[int]] = DEFAULT_IMAGE_SIZE,
    classes: Sequence[str] = DEFAULT_CLASSES,
    max_objects: int = 4,
) -> Tuple[np.ndarray, List[dict]]:
    """Render one image with 1 to ``max_objects`` non-overlapping shapes.

    Args:
        rng (np.random.Generator): Source of randomness.
        image_size (int | tuple[int, int]): ``(H, W)`` or a side length.
        classes (Sequence[str]): Class names, each one of :data:`SHAPES`;
            each object picks one.
        max_objects (int): Most objects in the image.

    Returns:
        tuple[np.ndarray, list[dict]]: The BGR image, and one dict per object
        with ``label`` (index into ``classes``), ``bbox`` (x, y, w, h in
        pixel-edge coordinates, tight around the drawn pixels) and ``mask``
        (``(H, W)`` bool).
    """
    height, width = _to_hw(image_size)
    img = _background(rng, height, width)
    short = min(height, width)
    objects: List[dict] = []
    boxes: List[Tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(classes)))
        size = float(rng.uniform(0.12, 0.4) * short)
        angle = float(rng.uniform(0, 2 * np.pi))
        half = int(np.ceil(size / 2)) + 1
        # A few tries to find free room; crowded images just get fewer
        # objects rather than overlapping ones.
        for _ in range(30):
            centre = (int(rng.integers(half, width - half)),
                      int(rng.integers(half, height - half)))
            mask = np.zeros((height, width), np.uint8)
            draw_shape(mask, classes[label], centre, size, angle)
            ys, xs = np.nonzero(mask)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                   int(ys.max()) + 1)
            if not _overlaps(box, boxes):
                break
        else:
            continue
        boxes.append(box)
        img[mask > 0] = _random_colour(rng)
        objects.append(
            dict(
                label=label,
                bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
                mask=mask > 0))
    return img, objects


def _write_split(out_dir: str, split: str, num_images: int,
                 rng: np.random.Generator, image_size: Tuple[int, int],
                 classes: Sequence[str], img_ext: str) -> str:
    """Write the images and the COCO annotation file of one split.

    Returns:
        str: Path of the annotation file.
    """
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        img, objects = render_sample(rng, image_size, classes)
        file_name = f'{index:06d}{img_ext}'
        # JPEG quality high enough that colours survive; PNG is lossless.
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if img_ext != '.png' else []
        if not cv2.imwrite(osp.join(img_dir, file_name), img, params):
            raise OSError(f'could not write {osp.join(img_dir, file_name)}')
        image_id = index + 1
        images.append(
            dict(
                id=image_id,
                file_name=file_name,
                height=img.shape[0],
                width=img.shape[1]))
        for obj in objects:
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=obj['label'] + 1,
                    bbox=[float(v) for v in obj['bbox']],
                    area=float(obj['mask'].sum()),
                    iscrowd=0))
    coco = dict(
        info=dict(description=f'mmfeatvis shapes, {split}'),
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(classes)
        ])
    ann_file = osp.join(out_dir, 'annotations', f'{split}.json')
    os.makedirs(osp.dirname(ann_file), exist_ok=True)
    with open(ann_file, 'w', encoding='utf-8') as f:
        json.dump(coco, f)
    return ann_file


def make_shapes_dataset(
    out_dir: str,
    num_train: int = 128,
    num_val: int = 32,
    image_size: Union[int, Sequence[int]] = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
    classes: Sequence[str] = DEFAULT_CLASSES,
    img_ext: str = '.jpg',
) -> Dict[str, object]:
    """Generate a COCO-format detection data set of drawn filled shapes.

    The layout is ``out_dir/{train,val}/NNNNNN.jpg`` plus
    ``out_dir/annotations/{train,val}.json``; ``file_name`` in the JSON is
    relative to the split's image folder. The output is the same for the same
    arguments, and the validation split does not depend on ``num_train``.

    Args:
        out_dir (str): Folder to write into; created if missing, and files of
            an earlier run with the same names are overwritten.
        num_train (int): Number of training images.
        num_val (int): Number of validation images.
        image_size (int | tuple[int, int]): ``(H, W)`` or a side length.
        seed (int): Seed of the generator.
        classes (Sequence[str]): Class names, each one of :data:`SHAPES`.
        img_ext (str): ``'.jpg'`` (small files) or ``'.png'`` (lossless).

    Returns:
        dict: ``data_root``, ``train_ann``, ``val_ann``, ``train_img_dir``,
        ``val_img_dir`` (paths) and ``classes`` (tuple of names).
    """
    if img_ext not in ('.jpg', '.png'):
        raise ValueError(f'img_ext must be .jpg or .png, not {img_ext!r}')
    height, width = _to_hw(image_size)
    if min(height, width) < 32:
        raise ValueError(f'image_size {image_size} is too small (< 32)')
    classes = tuple(classes)
    unknown = set(classes) - set(SHAPES)
    if unknown:
        raise ValueError(f'cannot draw {sorted(unknown)}; known: {SHAPES}')
    ann_files = {}
    for stream, (split, count) in enumerate((('train', num_train),
                                             ('val', num_val))):
        # One stream per split, so that either count leaves the other split
        # unchanged.
        rng = np.random.default_rng([seed, stream])
        ann_files[split] = _write_split(out_dir, split, count, rng,
                                        (height, width), classes, img_ext)
    return dict(
        data_root=osp.abspath(out_dir),
        train_ann=ann_files['train'],
        val_ann=ann_files['val'],
        train_img_dir=osp.join(out_dir, 'train'),
        val_img_dir=osp.join(out_dir, 'val'),
        classes=classes)


def shapes_cfg_options(data_root: str) -> Dict[str, str]:
    """Config overrides that point ``configs/demo/yolov5_n_shapes.py`` at a
    data set made by :func:`make_shapes_dataset`.

    The config derives several paths from its ``data_root`` when it is read,
    so overriding ``data_root`` alone afterwards changes nothing.

    Args:
        data_root (str): ``out_dir`` given to :func:`make_shapes_dataset`.

    Returns:
        dict[str, str]: Keys and values for ``Config.merge_from_dict`` (or
        ``--cfg-options``).
    """
    data_root = osp.join(data_root, '')
    val_ann = osp.join(data_root, 'annotations', 'val.json')
    options = {
        f'{split}_dataloader.dataset.data_root': data_root
        for split in ('train', 'val', 'test')
    }
    options.update({
        'val_evaluator.ann_file': val_ann,
        'test_evaluator.ann_file': val_ann
    })
    return options
