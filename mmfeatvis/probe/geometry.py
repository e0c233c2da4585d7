"""Where the real image lies in a (padded) network input.

Metainfo keys follow OpenMMLab 2.x (all shapes (h, w)): ``ori_shape`` (the
loaded image), ``img_shape`` (mmdet/mmseg: the resized content; mmyolo
LetterResize: the letterboxed image), ``pad_shape``, ``batch_input_shape``
(the network input), ``pad_param`` (mmyolo: [top, bottom, left, right]
padding in network-input pixels) and ``scale_factor`` (w, h).

Both the reduce stage (ranking channels over the content) and the render
stage (cutting the padding off) read it from here.
"""
import math
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Tuple


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
    img_hw = (
        _hw(meta.get('img_shape')) or _hw(meta.get('batch_input_shape'))
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


def content_region(
        meta: Any,
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
    return (geo.top / sy, (geo.top + geo.content_hw[0]) / sy, geo.left / sx,
            (geo.left + geo.content_hw[1]) / sx)


def region_slices(region: Sequence[float],
                  hw: Sequence[int]) -> Tuple[slice, slice]:
    """Rows and columns of an (h, w) map that a fractional ``(y0, y1, x0,
    x1)`` region touches, rounded outwards (keeping all of it, and at most
    one pixel of the rest per side) and clipped to the map."""
    y0, y1, x0, x1 = region
    eps = 1e-6  # float noise must not add a row
    return (slice(max(0, math.floor(y0 + eps)),
                  min(int(hw[0]), math.ceil(y1 - eps))),
            slice(max(0, math.floor(x0 + eps)),
                  min(int(hw[1]), math.ceil(x1 - eps))))


def content_slices(meta: Any, hw: Sequence[int]) -> Tuple[slice, slice]:
    """Rows and columns of an (h, w) map in the network input's geometry
    that touch image content (see :func:`region_slices`)."""
    return region_slices(content_region(meta, hw), hw)


def meta_or_none(image_meta: Any) -> Any:
    """``image_meta``, or None where it is an empty dict (a plain model's
    probe): nothing to align."""
    if isinstance(image_meta, Mapping) and not image_meta:
        return None
    return image_meta
