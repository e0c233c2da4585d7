"""Detector predictions drawn under the maps, as MMYOLO's demo does."""
from typing import Any, Optional, Sequence

import cv2
import numpy as np

# Distinct, saturated colours (RGB) that stay visible under a heat map.
PALETTE = ((255, 56, 56), (72, 249, 10), (0, 194, 255), (255, 157, 151),
           (146, 204, 23), (52, 69, 147), (255, 178, 29), (207, 210, 49),
           (100, 115, 255), (203, 56, 255))


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
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for (x1, y1, x2, y2), score, label in zip(bboxes, scores, labels):
        colour = PALETTE[int(label) % len(PALETTE)]
        top_left, bottom_right = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(canvas, top_left, bottom_right, colour, thickness)
        name = (class_names[int(label)] if class_names
                and int(label) < len(class_names) else str(int(label)))
        cv2.putText(canvas, f'{name} {score:.2f}',
                    (top_left[0], max(top_left[1] - 3, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, colour,
                    thickness, cv2.LINE_AA)
    return canvas
