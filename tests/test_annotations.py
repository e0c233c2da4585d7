"""A validation sample's errors, drawn under its maps: matched, false and
missed boxes; true and predicted mask outlines; the image's own metric."""
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData, PixelData

from mmfeatvis.render import draw_sample
from mmfeatvis.render.annotations import (FALSE_POSITIVE, MATCHED, MISSED,
                                          PREDICTED_OUTLINE, TRUE_OUTLINE,
                                          detection_summary, match_detections,
                                          segmentation_iou)


def _detection_sample() -> DetDataSample:
    sample = DetDataSample()
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10., 10., 50., 50.], [100., 20., 150., 80.],
                             [20., 100., 60., 150.]]),
        labels=torch.tensor([0, 1, 0]))
    sample.pred_instances = InstanceData(
        # A hit on object 0, a box of the wrong class on object 1, a box
        # where there is nothing, and one below the score threshold.
        bboxes=torch.tensor([[12., 11., 50., 52.], [100., 20., 150., 80.],
                             [160., 150., 190., 190.], [20., 100., 60.,
                                                        150.]]),
        scores=torch.tensor([0.9, 0.8, 0.7, 0.1]),
        labels=torch.tensor([0, 0, 1, 0]))
    return sample


def test_matching_is_per_class_best_score_first_and_once():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10.]])
    hit, found = match_detections(boxes, np.array([0.5, 0.9, 0.8]),
                                  np.array([0, 0, 1]),
                                  np.array([[0, 0, 10, 10.]]), np.array([0]))
    # The higher-scoring class-0 box takes the object; the class-1 box on
    # the same spot is a false positive.
    assert hit.tolist() == [False, True, False]
    assert found.tolist() == [True]
    assert detection_summary(hit, found).startswith('P 0.33 R 1.00 F1 0.50')
    empty = detection_summary(np.zeros(0, bool), np.ones(2, bool) & False)
    assert empty.startswith('P - R 0.00 F1 -')


def _colour_share(image: np.ndarray, colour) -> float:
    return float(np.all(image == np.array(colour, np.uint8), axis=2).mean())


def test_detection_errors_are_told_apart_by_colour():
    image = np.full((200, 200, 3), 90, np.uint8)
    drawn = draw_sample(image, _detection_sample(), score_thr=0.3)
    assert drawn is not image and (image == 90).all()
    # One matched box, two false positives, two missed objects.
    for colour in (MATCHED, FALSE_POSITIVE, MISSED):
        assert _colour_share(drawn, colour) > 0.002, colour
    # The matched box is drawn where the hit was predicted.
    assert (drawn[52, 20:40] == MATCHED).all(axis=1).all()
    # Missed: object 2 (its only prediction is below the threshold).
    assert (drawn[100, 25:55] == MISSED).all(axis=1).any()
    # The caption: darkened band with the metric, top left.
    assert np.median(drawn[1:8, 2:60]) < 60


def test_segmentation_outlines_and_iou():
    truth = np.zeros((40, 60), np.int64)
    truth[10:30, 10:30] = 1
    predicted = np.zeros_like(truth)
    predicted[10:30, 20:40] = 1
    # Class 0: 1000 px union, 800 px overlap; class 1: 600 union, 200.
    assert segmentation_iou(truth, predicted) == (
        (2400 - 600) / (2400 - 200) + 200 / 600) / 2
    sample = DetDataSample()  # any data element with the two fields
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(truth)[None])
    sample.pred_sem_seg = PixelData(data=torch.from_numpy(predicted)[None])
    image = np.full((80, 120, 3), 90, np.uint8)  # drawn at twice the size
    drawn = draw_sample(image, sample, scale=2.0)
    assert _colour_share(drawn, TRUE_OUTLINE) > 0.01
    assert _colour_share(drawn, PREDICTED_OUTLINE) > 0.01
    # The true square's left edge (x = 20 at this size) is outlined.
    assert (drawn[30:50, 18:22] == TRUE_OUTLINE).all(axis=2).any()


def test_a_sample_without_predictions_is_left_as_it_is():
    image = np.zeros((20, 20, 3), np.uint8)
    assert draw_sample(image, DetDataSample()) is image
    assert draw_sample(image, object()) is image
