"""Detector targets: each kept box explained by the score that made it.

A dense head's ``predict_by_feat`` flattens its outputs over levels,
positions and anchors, filters them and runs NMS, and the boxes it
returns no longer say which anchor or point (prior) they came from. The
head's own post-processing is run once more on the detached outputs of
the one forward (no second forward), with two taps that put that index
back:

* every call of ``filter_scores_and_topk``, in the module that calls it,
  is recorded: its ``keep_idxs`` are rows of what it was given;
* the head's ``_bbox_post_process`` is wrapped for the call, to number
  the candidates before NMS: that number survives NMS as a field.

The box's target is then read from the live outputs at that prior and
class: the logits its score is made of (class, plus objectness or
centerness where the head has them). The score recomputed there is
checked against the one the head returned, so a head that scores
otherwise is reported, not explained wrongly. A two-stage detector's
box is explained by its RoI head's class logit, the RoI recovered the
same way from ``multiclass_nms``.
"""
import copy
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ...capture import detached
from ...probe import Probe
from ...render.boxes import class_name
from .targets import Box, CamTarget, TargetRule


def _score_tolerance(dtype: torch.dtype) -> float:
    """How far a score recomputed in float32 may be from the head's,
    which rounded in ``dtype`` (half precision under autocast)."""
    return max(1e-4, 4 * torch.finfo(dtype).eps)


@contextmanager
def recorded_calls(function: Any, name: str,
                   **forced: Any) -> Iterator[List[Any]]:
    """Record what ``name`` returns when the module of ``function`` calls
    it, with ``forced`` keyword arguments added (``return_inds=True``).

    Yields:
        list: The results, one per call; with ``forced`` arguments, the
        caller gets the results it expects and the list the rest.
    """
    namespace = function.__globals__
    original = namespace[name]
    calls: List[Any] = []

    def recording(*args, **kwargs):
        result = original(*args, **kwargs, **forced)
        calls.append(result)
        if forced:  # the caller expects the results without the extras
            return result[:-len(forced)]
        return result

    namespace[name] = recording
    try:
        yield calls
    finally:
        namespace[name] = original


@contextmanager
def numbered_candidates(head: nn.Module) -> Iterator[None]:
    """Number the candidates that reach ``head._bbox_post_process`` (its
    NMS), in a ``candidate`` field that survives the NMS."""
    original = head._bbox_post_process
    own = '_bbox_post_process' in vars(head)

    def numbered(results, *args, **kwargs):
        results.candidate = torch.arange(
            len(results), device=results.scores.device)
        return original(results, *args, **kwargs)

    head._bbox_post_process = numbered
    try:
        yield
    finally:
        if own:
            head._bbox_post_process = original
        else:
            del head._bbox_post_process


def _mmyolo_head_type() -> Optional[type]:
    try:
        from mmyolo.models.dense_heads import YOLOv5Head
    except ImportError:
        return None
    return YOLOv5Head


def _is_mmyolo_style(head: nn.Module) -> bool:
    """Heads that post-process with YOLOv5Head's ``predict_by_feat``:
    all levels flattened at once, objectness multiplied in."""
    base = _mmyolo_head_type()
    return base is not None and (type(head).predict_by_feat is
                                 base.predict_by_feat)


def _is_mmdet_dense(head: nn.Module) -> bool:
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    return isinstance(head, BaseDenseHead) and (
        type(head).predict_by_feat is BaseDenseHead.predict_by_feat)


class DetectorRule(TargetRule):
    """What detector rules share: a picture without boxes says why."""

    def nothing_note(self) -> str:
        return f'no box above {self.score_thr:.2f}'


def _raised_cfg(cfg: Any, score_thr: float) -> Any:
    """A copy of a head's test config that drops boxes below
    ``score_thr`` before NMS (the copy: YOLOX's post-processing writes
    into its config)."""
    cfg = copy.deepcopy(cfg)
    if cfg.get('score_thr', 0) < score_thr:
        cfg['score_thr'] = score_thr
    return cfg


class DenseRule(DetectorRule):
    """Dense detectors (mmyolo's YOLO family and RTMDet, mmdet's
    RetinaNet, FCOS, ATSS, ...): one target per kept box, its pre-NMS
    score at its prior and class."""
    kind = 'dense detector'

    def targets(self, model: nn.Module, probe: Probe, outputs: Any,
                class_names: Optional[Sequence[str]]) -> List[CamTarget]:
        head = model.bbox_head
        meta = probe.data['data_samples'][0].metainfo
        with torch.no_grad():
            kept, priors = self._predict_with_priors(head, outputs, meta)
        boxes = _boxes(kept)
        chosen = _chosen(boxes, self.topk, self.classes)
        logits, probabilities = self._live_scores(head, outputs,
                                                  priors[chosen],
                                                  kept.labels[chosen])
        returned = kept.scores[chosen].float()
        tolerance = _score_tolerance(outputs[0][0].dtype)
        if not torch.allclose(
                probabilities, returned, atol=tolerance, rtol=tolerance):
            raise ValueError(
                f'{type(head).__name__} scores its boxes differently from '
                'class probability x objectness/centerness, so its boxes '
                'cannot be tied to their priors; give cam=dict(target=...)')
        return _box_targets(logits, [boxes[i] for i in chosen], self.classes,
                            class_names)

    def any_score(self, model: nn.Module, outputs: Any) -> torch.Tensor:
        return sum(level.sum() for level in outputs[0])

    def _predict_with_priors(self, head: nn.Module, outputs: Any,
                             meta: Dict) -> Tuple[Any, torch.Tensor]:
        """The head's own predictions above ``score_thr``, and the flat
        prior index (over levels, then positions, then anchors) of
        each."""
        cfg = _raised_cfg(head.test_cfg, self.score_thr)
        inputs = detached(outputs)
        mmyolo = _is_mmyolo_style(head)
        caller = (
            type(head).predict_by_feat
            if mmyolo else type(head)._predict_by_feat_single)
        with recorded_calls(caller, 'filter_scores_and_topk') as calls, \
                numbered_candidates(head):
            kept = head.predict_by_feat(
                *inputs, batch_img_metas=[meta], cfg=cfg, rescale=True)[0]
        if not calls or len(kept) == 0:
            return kept, torch.zeros(0, dtype=torch.long)
        if mmyolo:
            rows = calls[0][2]
            objectness = inputs[2] if len(inputs) > 2 else None
            if (objectness is not None and cfg.get('score_thr', -1) > 0
                    and not cfg.get('yolox_style', False)):
                # YOLOv5's post-processing first keeps the priors whose
                # objectness passes the threshold: rows index those.
                flat = torch.cat([o.permute(0, 2, 3, 1).reshape(-1)
                                  for o in objectness]).sigmoid()
                rows = (flat > cfg['score_thr']).nonzero().flatten()[rows]
        else:  # one call per level: rows index that level's priors
            anchors = _anchors_per_position(head, inputs[0][0])
            offsets = np.cumsum([0] + [
                level.shape[-2:].numel() * anchors for level in inputs[0]
            ])
            rows = torch.cat([
                call[2] + int(offset) for call, offset in zip(calls, offsets)
            ])
        return kept, rows[kept.candidate]

    def _live_scores(
            self, head: nn.Module, outputs: Any, priors: torch.Tensor,
            labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each box's target from the live outputs, and its score.

        The target is the sum of the logits its score is made of (class,
        and objectness or centerness where the head has them): a
        confident box's sigmoid saturates, and its gradient would round
        to zero. The score (probabilities multiplied, detached) checks
        that the prior is the right one.
        """
        cls_scores = outputs[0]
        classes = _class_channels(head)
        anchors = _anchors_per_position(head, cls_scores[0])
        extra = outputs[2] if len(outputs) > 2 else None
        targets, scores = [], []
        for prior, label in zip(priors.tolist(), labels.tolist()):
            level, y, x, anchor = _locate(prior, cls_scores, anchors)
            logits = cls_scores[level][0, anchor * classes:(anchor + 1) *
                                       classes, y, x]
            target = logits[label]
            if getattr(head, 'use_sigmoid_cls', True):
                score = target.detach().float().sigmoid()
            else:  # softmax over classes and background
                score = logits.detach().float().softmax(0)[label]
            if extra is not None and extra[level] is not None:
                factor = extra[level][0, anchor, y, x]
                target = target + factor
                score = score * factor.detach().float().sigmoid()
            targets.append(target)
            scores.append(score)
        if not targets:
            empty = cls_scores[0].new_zeros(0)
            return empty, empty.float()
        return torch.stack(targets), torch.stack(scores)


def _class_channels(head: nn.Module) -> int:
    if _is_mmyolo_style(head):
        return int(head.num_classes)
    return int(head.cls_out_channels)


def _anchors_per_position(head: nn.Module, cls_score: torch.Tensor) -> int:
    return int(cls_score.shape[1]) // _class_channels(head)


def _locate(prior: int, cls_scores: Sequence[torch.Tensor],
            anchors: int) -> Tuple[int, int, int, int]:
    """(level, y, x, anchor) of a flat prior index."""
    for level, score in enumerate(cls_scores):
        height, width = score.shape[-2:]
        size = height * width * anchors
        if prior < size:
            position, anchor = divmod(prior, anchors)
            y, x = divmod(position, width)
            return level, y, x, anchor
        prior -= size
    raise ValueError(f'prior index {prior} is past the last level')


def _boxes(kept: Any) -> List[Tuple[Box, int, float]]:
    """``(box, label, score)`` of each prediction, on the host."""
    return [(tuple(float(v) for v in box), int(label), float(score))
            for box, label, score in zip(kept.bboxes.tolist(),
                                         kept.labels.tolist(),
                                         kept.scores.tolist())]


def _chosen(boxes: List[Tuple[Box, int, float]], topk: int,
            classes: Optional[Sequence[int]]) -> List[int]:
    """Indices of the boxes to explain: the best ``topk``, or all boxes of
    ``classes``."""
    if classes is None:
        return sorted(range(len(boxes)), key=lambda i: -boxes[i][2])[:topk]
    return [i for i, box in enumerate(boxes) if box[1] in classes]


def _box_targets(scores: torch.Tensor,
                 boxes: List[Tuple[Box, int, float]],
                 classes: Optional[Sequence[int]],
                 class_names: Optional[Sequence[str]]) -> List[CamTarget]:
    """One target per box, or per class in ``classes``: all of its boxes
    together (their targets summed)."""
    if classes is None:
        return [
            CamTarget(
                scores[i],
                f'{class_name(box[1], class_names)} {box[2]:.2f}', [box],
                label=box[1]) for i, box in enumerate(boxes)
        ]
    targets = []
    for label in classes:
        members = [i for i, box in enumerate(boxes) if box[1] == label]
        if members:
            targets.append(
                CamTarget(
                    scores[members].sum(),
                    f'{class_name(label, class_names)} (all '
                    f'{len(members)})', [boxes[i] for i in members],
                    label=label))
    return targets


class TwoStageRule(DetectorRule):
    """Two-stage detectors with a standard RoI head (Faster and Mask
    R-CNN): one target per kept box, its RoI head class logit."""
    kind = 'two-stage detector'

    def forward(self, model: nn.Module, probe: Probe) -> Any:
        from mmdet.structures.bbox import bbox2roi
        kwargs = probe.model_kwargs()
        features = model.extract_feat(kwargs['inputs'])
        proposals = model.rpn_head.predict(
            features, kwargs['data_samples'], rescale=False)
        rois = bbox2roi([p.bboxes for p in proposals])
        results = model.roi_head._bbox_forward(features, rois)
        return rois, results['cls_score'], results['bbox_pred']

    def targets(self, model: nn.Module, probe: Probe, outputs: Any,
                class_names: Optional[Sequence[str]]) -> List[CamTarget]:
        rois, cls_score, bbox_pred = outputs
        bbox_head = model.roi_head.bbox_head
        meta = probe.data['data_samples'][0].metainfo
        cfg = _raised_cfg(model.roi_head.test_cfg, self.score_thr)
        with torch.no_grad(), recorded_calls(
                type(bbox_head)._predict_by_feat_single,
                'multiclass_nms',
                return_inds=True) as calls:
            kept = bbox_head.predict_by_feat((rois, ), (cls_score.detach(), ),
                                             (bbox_pred.detach(), ),
                                             batch_img_metas=[meta],
                                             rcnn_test_cfg=cfg,
                                             rescale=True)[0]
        if len(kept) == 0 or not calls:
            return []
        inds = calls[0][-1]
        classes = int(bbox_head.num_classes)
        roi, labels = inds // classes, inds % classes
        if not torch.equal(labels.cpu(), kept.labels.cpu()):
            raise ValueError('the RoI head labels its boxes differently '
                             'from multiclass_nms; give '
                             'cam=dict(target=...)')
        boxes = _boxes(kept)
        chosen = _chosen(boxes, self.topk, self.classes)
        logits = cls_score[roi[chosen], labels[chosen]]
        return _box_targets(logits, [boxes[i] for i in chosen], self.classes,
                            class_names)

    def any_score(self, model: nn.Module, outputs: Any) -> torch.Tensor:
        cls_score = outputs[1]
        return cls_score[:, :-1].sum()


def detector_rule(model: nn.Module, **kwargs) -> Optional[TargetRule]:
    """The rule of an mmdet/mmyolo detector; None for other models.

    Raises:
        ValueError: A detector whose kind has no rule (DETR-like heads,
            cascades), naming it.
    """
    try:
        from mmdet.models.detectors import BaseDetector
        from mmdet.models.roi_heads import StandardRoIHead
    except ImportError:
        return None
    if not isinstance(model, BaseDetector):
        return None
    roi_head = getattr(model, 'roi_head', None)
    if roi_head is not None and hasattr(model, 'rpn_head'):
        if type(roi_head)._bbox_forward is StandardRoIHead._bbox_forward:
            return TwoStageRule(**kwargs)
        what = type(roi_head).__name__
    else:
        head = getattr(model, 'bbox_head', None)
        if head is not None and (_is_mmyolo_style(head)
                                 or _is_mmdet_dense(head)):
            return DenseRule(**kwargs)
        what = type(head).__name__ if head is not None else 'no bbox_head'
    raise ValueError(
        f'no CAM target rule for {type(model).__name__} ({what}): boxes '
        'are tied to their scores for dense heads (YOLO, RTMDet, '
        'RetinaNet, FCOS, ...) and standard RoI heads (Faster/Mask '
        'R-CNN); give cam=dict(target=...) for this model.')
