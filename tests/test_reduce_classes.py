"""Head score maps: a class branch's output drawn per class."""
import pytest
import torch

from mmfeatvis.options import DrawOptions
from mmfeatvis.reduce import reduce_featmap
from mmfeatvis.reduce.classes import class_probabilities


def test_the_three_class_layouts():
    logits = torch.randn(3, 5, 6)
    # One channel per class.
    assert torch.equal(class_probabilities(logits, 3), logits.sigmoid())
    assert torch.equal(class_probabilities(logits), logits.sigmoid())
    # Anchors x classes: each class's best anchor.
    anchors = torch.randn(9 * 3, 5, 6)
    expected = anchors.reshape(9, 3, 5, 6).amax(0).sigmoid()
    assert torch.allclose(class_probabilities(anchors, 3), expected)
    # YOLOv5's anchors x (4 box, objectness, classes): class x objectness.
    yolo = torch.randn(3 * 8, 5, 6)
    grid = yolo.reshape(3, 8, 5, 6)
    expected = (grid[:, 5:].sigmoid() * grid[:, 4:5].sigmoid()).amax(0)
    assert torch.allclose(class_probabilities(yolo, 3), expected)
    with pytest.raises(ValueError, match='neither the model.s 3 classes'):
        class_probabilities(torch.randn(7, 5, 6), 3)


def test_class_topk_ranks_classes_by_their_peak_over_the_content():
    logits = torch.full((4, 8, 8), -5.0)
    logits[2, 1, 1] = 3.0  # class 2 fires strongest, in the padding
    logits[1, 5, 5] = 2.0
    logits[3, 6, 2] = 1.0
    reduced = reduce_featmap(logits, 'class_topk', topk=2)
    assert reduced.channels.tolist() == [2, 1] and reduced.is_grid
    # Over the content alone (rows and columns 2 to 8), class 2 is gone.
    reduced = reduce_featmap(logits, 'class_topk', topk=2,
                             content_region=(2, 8, 2, 8))
    assert reduced.channels.tolist() == [1, 3]
    assert torch.allclose(reduced.maps, logits[[1, 3]].sigmoid())
    single = reduce_featmap(logits, 'class_max')
    assert single.maps.shape == (1, 8, 8) and not single.is_grid
    assert float(single.maps.max()) == pytest.approx(torch.sigmoid(
        torch.tensor(3.0)).item())


def test_the_class_reductions_are_options():
    DrawOptions(channel_reduction='class_topk', topk=3, arrangement=(1, 3))
    with pytest.raises(ValueError, match="'class_max', 'class_topk'"):
        DrawOptions(channel_reduction='class')
