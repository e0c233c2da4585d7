"""Detector predictions drawn under the maps, as MMYOLO's demo does."""
from typing import Any, Optional, Sequence, Tuple

import cv2
import numpy as np

# Distinct, saturated colours (RGB) that stay visible under a heat map.
PALETTE = ((255, 56, 56), (72, 249, 10), (0, 194, 255), (255, 157, 151),
           (146, 204, 23), (52, 69, 147), (255, 178, 29), (207, 210, 49),
           (100, 115, 255), (203, 56, 255))


def class_name(label: int, class_names: Optional[Sequence[str]]) -> str:
    """``class_names[label]``, or the label as text."""
    label = int(label)
    if class_names and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def box_thickness(image: np.ndarray) -> int:
    """Line thickness of boxes on ``image``: 1 px per 400 px of its longer
    side."""
    return max(1, round(max(image.shape[:2]) / 400))


def draw_box(canvas: np.ndarray,
             box: Sequence[float],
             colour: Tuple[int, ...],
             thickness: int,
             text: str = '',
             halo: bool = False) -> None:
    """Draw one box and its text above it, in place.

    Args:
        canvas (np.ndarray): RGB uint8 image.
        box (Sequence[float]): (x1, y1, x2, y2) in ``canvas`` pixels.
        colour (tuple): RGB.
        thickness (int): Line thickness.
        text (str): Written above the box's top-left corner.
        halo (bool): Outline the box and the text in white, so that they
            stay visible on a heat map of any colour.
    """
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    org = (x1, max(y1 - 3, 10))
    scale = 0.4 * thickness
    for ink, width in (((255, 255, 255), thickness + 2), (colour, thickness)):
        if ink != colour and not halo:
            continue
        cv2.rectangle(canvas, (x1, y1), (x2, y2), ink, width)
        if text:
            cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale,
                        ink, width, cv2.LINE_AA)


def draw_detections(image: np.ndarray,
                    data_sample: Any,
                    score_thr: float = 0.3,
                    class_names: Optional[Sequence[str]] = None,
                    scale: float = 1.0) -> np.ndarray:
    """Draw the boxes of a detection sample whose score passes a threshold.

    Args:
        image (np.ndarray): RGB uint8 image in original coordinates.
        data_sample (DetDataSample | Any): A predicted sample; anything
            without ``pred_instances.bboxes`` leaves the image unchanged.
        score_thr (float): Boxes scoring below are not drawn.
        class_names (Sequence[str], optional): Names for the labels.
        scale (float): Size of ``image`` over the original image, for
            drawing on a smaller copy. Defaults to 1.0.

    Returns:
        np.ndarray: A new RGB uint8 image (the input is not modified).
        ``image`` itself when there are no predictions.
    """
    instances = getattr(data_sample, 'pred_instances', None)
    if instances is None or 'bboxes' not in instances:
        return image
    keep = instances.scores >= score_thr
    bboxes = instances.bboxes[keep].detach().cpu().numpy() * scale
    scores = instances.scores[keep].detach().cpu().numpy()
    labels = instances.labels[keep].detach().cpu().numpy()
    canvas = image.copy()
    thickness = box_thickness(image)
    for box, score, label in zip(bboxes, scores, labels):
        draw_box(canvas, box, PALETTE[int(label) % len(PALETTE)], thickness,
                 f'{class_name(label, class_names)} {score:.2f}')
    return canvas
