"""A probe's class activation maps drawn as users read them: over the
original image with the letterbox cut, each with the box and label it
explains, one panel per target or all in one."""
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..reduce.cam import CamPanel, ProbeCams
from .align import warp_to_image
from .boxes import PALETTE, box_thickness, class_name, draw_box
from .layout import compose_panels, with_colour_bar
from .overlay import blend, colorize, image_at

#: A panel's longer side is at most this (a large probe is resampled).
CAM_PANEL_SIDE = 800
_CAM_BAR_LABELS = ('0', "the target's peak")


def _box_region(box: Sequence[float], hw: Tuple[int, int],
                scale: float) -> Tuple[slice, slice]:
    x1, y1, x2, y2 = (float(v) * scale for v in box)
    rows = slice(max(0, int(np.floor(y1))), min(hw[0], int(np.ceil(y2))))
    cols = slice(max(0, int(np.floor(x1))), min(hw[1], int(np.ceil(x2))))
    return rows, cols


def normalized_in_boxes(values: np.ndarray, boxes: Sequence[Sequence[float]],
                        scale: float = 1.0) -> np.ndarray:
    """``values`` scaled to [0, 1] inside each box and 0 outside; where
    boxes overlap the larger value stays (MMYOLO's ``--norm-in-bbox``).

    Args:
        values (np.ndarray): (H, W) float map over the image.
        boxes (Sequence): (x1, y1, x2, y2) in original image pixels.
        scale (float): Size of ``values`` over the original image.
    """
    out = np.zeros_like(values)
    for box in boxes:
        rows, cols = _box_region(box, values.shape[:2], scale)
        region = values[rows, cols]
        if region.size == 0:
            continue
        low, high = float(region.min()), float(region.max())
        scaled = (region - low) / (high - low) if high > low else region * 0
        np.maximum(out[rows, cols], scaled, out=out[rows, cols])
    return out


def _draw_boxes(canvas: np.ndarray, boxes: Sequence, scale: float,
                class_names: Optional[Sequence[str]]) -> None:
    thickness = box_thickness(canvas)
    for box, label, score in boxes:
        draw_box(canvas, [float(v) * scale for v in box],
                 PALETTE[int(label) % len(PALETTE)], thickness,
                 f'{class_name(label, class_names)} {score:.2f}', halo=True)


def cam_values(panel: CamPanel,
               meta: dict,
               hw: Tuple[int, int],
               scale: float,
               norm_in_box: bool = False) -> np.ndarray:
    """A panel's map on the original image at ``hw``: padding cut,
    warped, optionally scaled within its boxes."""
    values = warp_to_image(
        np.ascontiguousarray(panel.cam, np.float32), meta, hw)
    if norm_in_box and panel.boxes:
        values = normalized_in_boxes(values, [b[0] for b in panel.boxes],
                                     scale)
    return values


def render_cams(cams: ProbeCams,
                *,
                alpha: float = 0.5,
                colormap: str = 'jet',
                norm_in_box: bool = False,
                layout: str = 'grid',
                class_names: Optional[Sequence[str]] = None,
                max_side: int = CAM_PANEL_SIDE) -> np.ndarray:
    """Draw a probe's CAMs in one image.

    Args:
        cams (ProbeCams): What the CAM firing gave for one probe.
        alpha (float): Weight of the heat map over the image.
        colormap (str): OpenCV colormap name.
        norm_in_box (bool): Scale each map within its boxes.
        layout (str): ``'grid'`` (a titled panel per target) or
            ``'single'`` (the maps' pixel-wise maximum and all boxes).
        class_names (Sequence[str], optional): Names of box labels.
        max_side (int): Longest side of a panel.

    Returns:
        np.ndarray: RGB uint8, above a colour bar.
    """
    probe = cams.probe
    height, width = probe.image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    hw = (max(1, round(height * scale)), max(1, round(width * scale)))
    image = image_at(probe.image, hw, probe.resized)
    title = f'{cams.method}'
    if not cams.panels:
        panels = [(f'{title}: {cams.note or "nothing to explain"}', image)]
        return compose_panels(panels, cols=1)
    values = [
        cam_values(p, probe.meta, hw, scale, norm_in_box) for p in cams.panels
    ]
    groups: List[Tuple[str, np.ndarray, list]]
    if layout == 'single':
        groups = [('; '.join(p.title for p in cams.panels),
                   np.maximum.reduce(values),
                   [b for p in cams.panels for b in p.boxes])]
    else:
        groups = [(p.title, v, p.boxes) for p, v in zip(cams.panels, values)]
    drawn = []
    for text, value, boxes in groups:
        picture = blend(image,
                        colorize(value, 'heat', colormap, (0.0, 1.0)), alpha)
        _draw_boxes(picture, boxes, scale, class_names)
        drawn.append((f'{title}: {text}', picture))
    return with_colour_bar(
        compose_panels(drawn), colormap, labels=_CAM_BAR_LABELS)
