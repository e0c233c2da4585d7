"""A head's classification output drawn per class: where each class fires.

A dense head's class branch gives one logit per class at each position
(per anchor and class for anchor-based heads). ``'class_max'`` draws the
highest class probability at each position (the sigmoid of the largest
logit); ``'class_topk'`` draws, in a grid, the probability maps of the
``topk`` classes whose peak over the image content is highest. Both are
probabilities, drawn on the fixed range 0 to 1.
"""
from typing import Optional, Sequence, Tuple

import torch

from ..probe.geometry import region_slices

CLASS_REDUCTIONS = ('class_max', 'class_topk')
# YOLO heads have 3 anchors per position, RetinaNet's 9.
_MAX_ANCHORS = 9
#: The range class probabilities are drawn on.
PROBABILITY_RANGE = (0.0, 1.0)


def class_probabilities(x: torch.Tensor,
                        num_classes: Optional[int] = None) -> torch.Tensor:
    """Per-class probability maps (num_classes, H, W) of a class logit map.

    Args:
        x (torch.Tensor): (C, H, W) logits in one of three layouts:
            C classes (YOLOv8's, RTMDet's class branch); YOLOv5's and
            YOLOv7's prediction convolution, anchors x (4 box, 1
            objectness, classes), whose class probability is the model's
            score, class times objectness; or anchors x classes (channel
            ``a * num_classes + k``, RetinaNet's). Anchors are folded by
            their maximum.
        num_classes (int, optional): The model's classes; None: every
            channel is a class.

    Raises:
        ValueError: If the channels are not a multiple of the classes (a
            layer that is not a class branch).
    """
    channels, hw = x.shape[0], x.shape[1:]
    if not num_classes or channels == num_classes:
        return x.sigmoid()
    per_anchor = num_classes + 5
    if channels % per_anchor == 0 and channels // per_anchor <= _MAX_ANCHORS:
        grid = x.reshape(channels // per_anchor, per_anchor, *hw)
        scores = grid[:, 5:].sigmoid() * grid[:, 4:5].sigmoid()
        return scores.amax(0)
    if channels % num_classes:
        raise ValueError(
            f'{channels} channels are neither the model\'s {num_classes} '
            'classes nor anchors of them: not a class branch (target a '
            "head's class convolution, e.g. 'bbox_head.*cls*')")
    return x.reshape(channels // num_classes, num_classes,
                     *hw).amax(0).sigmoid()


def reduce_classes(
        x: torch.Tensor,
        mode: str,
        topk: int,
        num_classes: Optional[int] = None,
        content_region: Optional[Sequence[float]] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(maps, classes)``: the one 'class_max' map (classes None), or the
    ``topk`` classes' maps, highest peak over the content first."""
    probabilities = class_probabilities(x, num_classes)
    if mode == 'class_max':
        return probabilities.amax(0, keepdim=True), None
    content = probabilities
    if content_region is not None:
        rows, cols = region_slices(content_region, probabilities.shape[1:])
        if probabilities[:, rows, cols].numel():
            content = probabilities[:, rows, cols]
    peaks = content.flatten(1).amax(1)
    index = torch.topk(peaks, min(int(topk), len(peaks))).indices
    return probabilities[index], index
