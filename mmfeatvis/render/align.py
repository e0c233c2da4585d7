"""How a feature map lines up with the original image: the padding cut
off, the rest warped onto the image (geometry from
:mod:`mmfeatvis.probe.geometry`)."""
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from ..probe.geometry import content_slices, input_geometry


def crop_to_content(map_hw: np.ndarray, meta: Any) -> np.ndarray:
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
    rows, cols = content_slices(meta, map_hw.shape[:2])
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
