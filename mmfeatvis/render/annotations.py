"""Ground truth and predictions of a validation sample, drawn under its maps
so that a model's errors show where its features are.

Detection: predictions matched to the ground truth at IoU 0.5 (greedily,
best score first, within a class) are drawn green, unmatched predictions
(false positives) red, and objects no prediction found (missed) yellow.
Segmentation: the outlines of the true (white) and predicted (magenta)
masks. Each image states its own metric in its top-left corner.
"""
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .boxes import box_thickness, class_name, draw_box, draw_detections

MATCH_IOU = 0.5
MATCHED = (60, 220, 60)
FALSE_POSITIVE = (255, 40, 40)
MISSED = (255, 220, 0)
TRUE_OUTLINE = (255, 255, 255)
PREDICTED_OUTLINE = (255, 0, 255)
#: Labels of mmseg's ``ignore_index``.
IGNORE_LABEL = 255


def _numpy(value: Any) -> np.ndarray:
    value = getattr(value, 'tensor', value)  # mmdet's HorizontalBoxes
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4),
    both ``x1, y1, x2, y2``."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def match_detections(pred_boxes: np.ndarray, pred_scores: np.ndarray,
                     pred_labels: np.ndarray, true_boxes: np.ndarray,
                     true_labels: np.ndarray,
                     iou: float = MATCH_IOU) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy matching of predictions to ground truth, best score first,
    within a class, at ``iou`` or more, each object matched once.

    Returns:
        tuple[np.ndarray, np.ndarray]: Whether each prediction matched an
        object, and whether each object was matched.
    """
    matched_pred = np.zeros(len(pred_boxes), bool)
    matched_true = np.zeros(len(true_boxes), bool)
    overlaps = box_iou(pred_boxes, true_boxes)
    for i in np.argsort(-pred_scores, kind='stable'):
        candidates = (true_labels == pred_labels[i]) & ~matched_true
        candidates &= overlaps[i] >= iou
        if candidates.any():
            best = int(np.argmax(np.where(candidates, overlaps[i], -1)))
            matched_pred[i] = matched_true[best] = True
    return matched_pred, matched_true


def detection_summary(matched_pred: np.ndarray,
                      matched_true: np.ndarray) -> str:
    """Precision, recall and F1 of one image at IoU 0.5 (``-`` where one
    is undefined: no prediction, or no object)."""
    hits, found = int(matched_pred.sum()), int(matched_true.sum())
    precision = hits / len(matched_pred) if len(matched_pred) else None
    recall = found / len(matched_true) if len(matched_true) else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision and recall else 0.0)
    if precision is None or recall is None:
        f1 = None

    def show(value: Optional[float]) -> str:
        return '-' if value is None else f'{value:.2f}'

    return (f'P {show(precision)} R {show(recall)} F1 {show(f1)} '
            f'({hits} hit, {len(matched_pred) - hits} false, '
            f'{len(matched_true) - found} missed)')


def caption(canvas: np.ndarray, text: str) -> None:
    """Write ``text`` in the top-left corner, white on a dark band, small
    enough to fit the image's width."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.4, min(1.0, canvas.shape[1] / 900))
    (width, _), _ = cv2.getTextSize(text, font, scale, 1)
    scale = max(0.25, scale * min(1.0, (canvas.shape[1] - 8) / width))
    (width, height), base = cv2.getTextSize(text, font, scale, 1)
    band = canvas[:height + base + 6, :width + 8]
    band[:] = band // 3
    cv2.putText(canvas, text, (4, height + 3), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_detection_errors(image: np.ndarray,
                          data_sample: Any,
                          score_thr: float = 0.3,
                          class_names: Optional[Sequence[str]] = None,
                          scale: float = 1.0) -> np.ndarray:
    """Matched, false and missed boxes of a sample with ground truth, and
    its precision and recall in the corner (see the module docstring)."""
    pred = data_sample.pred_instances
    keep = _numpy(pred.scores) >= score_thr
    boxes = _numpy(pred.bboxes)[keep].reshape(-1, 4)
    scores = _numpy(pred.scores)[keep]
    labels = _numpy(pred.labels)[keep].astype(int)
    truth = data_sample.gt_instances
    true_boxes = _numpy(truth.bboxes).reshape(-1, 4)
    true_labels = _numpy(truth.labels).astype(int)
    hit, found = match_detections(boxes, scores, labels, true_boxes,
                                  true_labels)
    canvas = image.copy()
    thickness = box_thickness(image)
    for box, label, was_found in zip(true_boxes, true_labels, found):
        if not was_found:
            draw_box(canvas, box * scale, MISSED, thickness,
                     f'missed {class_name(label, class_names)}')
    for box, score, label, was_hit in zip(boxes, scores, labels, hit):
        draw_box(canvas, box * scale, MATCHED if was_hit else FALSE_POSITIVE,
                 thickness, f'{class_name(label, class_names)} {score:.2f}')
    caption(canvas, detection_summary(hit, found))
    return canvas


def _labels(field: Any) -> np.ndarray:
    data = _numpy(getattr(field, 'data', field))
    return data.reshape(data.shape[-2:]).astype(np.int64)


def segmentation_iou(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean IoU over the classes in the ground truth or the prediction,
    leaving out ignored pixels (NaN for an image that is all ignored)."""
    valid = truth != IGNORE_LABEL
    classes = np.union1d(np.unique(truth[valid]),
                         np.unique(predicted[valid]))
    ious: List[float] = []
    for k in classes:
        t, p = (truth == k) & valid, (predicted == k) & valid
        ious.append((t & p).sum() / max((t | p).sum(), 1))
    return float(np.mean(ious)) if ious else float('nan')


def _outline(labels: np.ndarray) -> np.ndarray:
    """Pixels where the label changes to a neighbour's."""
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge


def draw_segmentation_errors(image: np.ndarray,
                             data_sample: Any) -> np.ndarray:
    """Outlines of the true and predicted masks, drawn at ``image``'s size
    (any resampling of the original), and the image's mean IoU in the
    corner (only the prediction without ground truth)."""
    h, w = image.shape[:2]
    canvas = image.copy()
    predicted = _labels(data_sample.pred_sem_seg)
    parts = [('pred_sem_seg', predicted, PREDICTED_OUTLINE)]
    truth = None
    if getattr(data_sample, 'gt_sem_seg', None) is not None:
        truth = _labels(data_sample.gt_sem_seg)
        parts.insert(0, ('gt_sem_seg', truth, TRUE_OUTLINE))
    for _, labels, colour in parts:
        small = cv2.resize(labels.astype(np.int32), (w, h),
                           interpolation=cv2.INTER_NEAREST)
        edge = cv2.dilate(_outline(small).astype(np.uint8),
                          np.ones((2, 2), np.uint8)) > 0
        canvas[edge] = colour
    if truth is not None and truth.shape == predicted.shape:
        caption(canvas, f'mIoU {segmentation_iou(truth, predicted):.2f} '
                '(white: truth, magenta: predicted)')
    return canvas


def draw_sample(image: np.ndarray,
                data_sample: Any,
                score_thr: float = 0.3,
                class_names: Optional[Sequence[str]] = None,
                scale: float = 1.0) -> np.ndarray:
    """What a sample knows, under its maps: a detector's errors where there
    is ground truth, else its predictions; a segmentor's masks; nothing
    for anything else (the image itself is returned)."""
    predicted = getattr(data_sample, 'pred_instances', None)
    if predicted is not None and 'bboxes' in predicted:
        truth = getattr(data_sample, 'gt_instances', None)
        if truth is not None and 'bboxes' in truth:
            return draw_detection_errors(image, data_sample, score_thr,
                                         class_names, scale)
        return draw_detections(image, data_sample, score_thr, class_names,
                               scale)
    if getattr(data_sample, 'pred_sem_seg', None) is not None:
        return draw_segmentation_errors(image, data_sample)
    return image
