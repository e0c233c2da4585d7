"""Where the real image lies in a (padded) network input, and how a feature
map lines up with the original image.

Metainfo keys follow OpenMMLab 2.x (all shapes (h, w)): ``ori_shape`` (the
loaded image), ``img_shape`` (mmdet/mmseg: the resized content; mmyolo
LetterResize: the letterboxed image), ``pad_shape``, ``batch_input_shape``
(the network input), ``pad_param`` (mmyolo: [top, bottom, left, right]
padding in network-input pixels) and ``scale_factor`` (w, h).
"""
import math
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np


class InputGeometry(NamedTuple):
    """Placement of the original image inside the network input.

    All values are in network-input pixels, except ``ori_hw``.
    """

    input_hw: Tuple[float, float]
    top: float
    left: float
    content_hw: Tuple[float, float]
    ori_hw: Tuple[float, float]


def _hw(value: Any) -> Optional[Tuple[float, float]]:
    if value is None:
        return None
    return float(value[0]), float(value[1])


def _as_mapping(meta: Any) -> Mapping:
    # Accept a data sample (DetDataSample, SegDataSample) as well.
    meta = getattr(meta, 'metainfo', meta)
    if not isinstance(meta, Mapping):
        raise TypeError('image_meta must be a dict of metainfo or a data '
                        f'sample, got {type(meta).__name__}')
    return meta


def input_geometry(meta: Any) -> InputGeometry:
    """Read the input geometry from a sample's metainfo.

    Args:
        meta (dict | data sample): Metainfo, ideally with ``img_shape``;
            without it the input is assumed unpadded.

    Returns:
        InputGeometry: Network input size, content offset and size, and the
        original image size.
    """
    meta = _as_mapping(meta)
    # Without img_shape the input is taken as unpadded: the whole input
    # (or the original image) is content.
    img_hw = (_hw(meta.get('img_shape')) or _hw(meta.get('batch_input_shape'))
              or _hw(meta.get('pad_shape')) or _hw(meta.get('ori_shape')))
    if img_hw is None:
        raise ValueError('image_meta needs "img_shape" (and ideally '
                         '"ori_shape", "pad_shape"/"batch_input_shape", '
                         f'"pad_param"); got keys {sorted(meta)}')
    input_hw = _hw(meta.get('batch_input_shape')) or _hw(
        meta.get('pad_shape')) or img_hw
    top = left = 0.0
    content_hw = img_hw
    pad = meta.get('pad_param')
    if pad is not None:
        # mmyolo's img_shape includes its letterbox padding.
        top, bottom, left, right = (float(p) for p in pad)
        content_hw = (img_hw[0] - top - bottom, img_hw[1] - left - right)
    if content_hw[0] <= 0 or content_hw[1] <= 0:
        raise ValueError(f'image_meta leaves no image content: img_shape '
                         f'{meta.get("img_shape")}, pad_param {pad}')
    ori_hw = _hw(meta.get('ori_shape'))
    if ori_hw is None:
        scale = meta.get('scale_factor', (1.0, 1.0))
        ori_hw = (content_hw[0] / float(scale[1]),
                  content_hw[1] / float(scale[0]))
    return InputGeometry(input_hw, top, left, content_hw, ori_hw)


def valid_region(meta: Any,
                 feat_hw: Sequence[int]) -> Tuple[float, float, float, float]:
    """Part of a feature map that covers real image content.

    A feature pixel spans ``stride = batch_input_shape / feat_hw`` input
    pixels, so borders are fractional in general.

    Args:
        meta (dict | data sample): Sample metainfo.
        feat_hw (Sequence[int]): (h, w) of the feature map.

    Returns:
        tuple[float, float, float, float]: (y0, y1, x0, x1) in feature
        pixels (pixel edges, 0 is the top/left edge of the map).
    """
    geo = input_geometry(meta)
    sy = geo.input_hw[0] / feat_hw[0]
    sx = geo.input_hw[1] / feat_hw[1]
    return (geo.top / sy, (geo.top + geo.content_hw[0]) / sy,
            geo.left / sx, (geo.left + geo.content_hw[1]) / sx)


def crop_to_valid(map_hw: np.ndarray, meta: Any) -> np.ndarray:
    """Crop a map (H, W[, C]) to the feature pixels touching image content.

    Fractional borders are rounded outwards, so the crop keeps all content
    and at most one pixel of padding per side. For a sub-pixel placement on
    the original image use :func:`warp_to_image`.

    Args:
        map_hw (np.ndarray): Map of shape (H, W) or (H, W, C).
        meta (dict | data sample): Sample metainfo.

    Returns:
        np.ndarray: A view of the cropped map.
    """
    h, w = map_hw.shape[:2]
    y0, y1, x0, x1 = valid_region(meta, (h, w))
    eps = 1e-6
    rows = slice(max(0, math.floor(y0 + eps)), min(h, math.ceil(y1 - eps)))
    cols = slice(max(0, math.floor(x0 + eps)), min(w, math.ceil(x1 - eps)))
    return map_hw[rows, cols]


def feature_to_image_matrix(meta: Any, feat_hw: Sequence[int],
                            out_hw: Sequence[int]) -> np.ndarray:
    """Affine map from output pixels to feature-map pixel coordinates.

    The output is the original image at any resolution ``out_hw``; pixel
    centres are at +0.5 as in ``align_corners=False`` resizing.

    Args:
        meta (dict | data sample): Sample metainfo.
        feat_hw (Sequence[int]): (h, w) of the feature map.
        out_hw (Sequence[int]): (H, W) of the output image.

    Returns:
        np.ndarray: (2, 3) float64 matrix for ``cv2.WARP_INVERSE_MAP``.
    """
    geo = input_geometry(meta)
    rows = []
    for axis, offset in ((1, geo.left), (0, geo.top)):
        stride = geo.input_hw[axis] / feat_hw[axis]
        step = geo.content_hw[axis] / out_hw[axis]
        rows.append((step / stride, (offset + 0.5 * step) / stride - 0.5))
    (ax, bx), (ay, by) = rows
    return np.array([[ax, 0.0, bx], [0.0, ay, by]])


def warp_to_image(map_hw: np.ndarray,
                  meta: Any,
                  out_hw: Optional[Sequence[int]] = None,
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """Resample a feature-resolution map onto the original image.

    Padding is cut away and the content stretched onto the image in one
    bilinear pass.

    Args:
        map_hw (np.ndarray): float32 or uint8 map (h, w) or (h, w, C<=4).
        meta (dict | data sample): Sample metainfo.
        out_hw (Sequence[int], optional): Output (H, W). Defaults to
            ``ori_shape``.
        out (np.ndarray, optional): Buffer of the output's shape and dtype.

    Returns:
        np.ndarray: The map at (H, W), same dtype.
    """
    if out_hw is None:
        ori_hw = input_geometry(meta).ori_hw
        out_hw = (int(round(ori_hw[0])), int(round(ori_hw[1])))
    matrix = feature_to_image_matrix(meta, map_hw.shape[:2], out_hw)
    return cv2.warpAffine(
        map_hw,
        matrix, (int(out_hw[1]), int(out_hw[0])),
        dst=out,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE)
