"""The bookkeeping of the recorded CUDA graphs, plain Python that runs on
the CPU: where a recorded forward reads the model (``StorageSignature``:
in-place updates keep it valid, a moved tensor or a replaced module does
not), and how a recorded reduction's layers are dealt to its branches."""
import torch
from torch import nn

from mmfeatvis.cuda.graphs import StorageSignature, deal_branches


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)))


def test_in_place_updates_keep_it_valid():
    model = _model()
    signature = StorageSignature(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(2):  # optimiser steps and BatchNorm statistics
        model(torch.randn(2, 3, 9, 9)).square().mean().backward()
        optimizer.step()
    model.load_state_dict(_model().state_dict())
    model.eval()
    assert signature.matches(model)


def test_moved_or_replaced_tensors_invalidate_it():
    model = _model()
    signature = StorageSignature(model)
    with torch.no_grad():
        model[0].weight.data = model[0].weight.data * 2
    assert not signature.matches(model)

    model = _model()
    signature = StorageSignature(model)
    model[3][1].running_mean = torch.zeros(4)  # a buffer replaced
    assert not signature.matches(model)

    model = _model()
    signature = StorageSignature(model)
    model[3][0].bias = None  # a parameter removed
    assert not signature.matches(model)


def test_a_changed_tree_invalidates_it():
    model = _model()
    signature = StorageSignature(model)
    # The same parameters in a new module: the recorded forward ran the
    # old one.
    old = model[3][0]
    new = nn.Conv2d(8, 4, 1)
    new.weight, new.bias = old.weight, old.bias
    model[3][0] = new
    assert not signature.matches(model)

    model = _model()
    signature = StorageSignature(model)
    model[3].add_module('extra', nn.ReLU())
    assert not signature.matches(model)
    assert not StorageSignature(_model()).matches(model)


def test_parts_are_dealt_largest_first_in_equal_runs():
    # YOLO's backbone and neck outputs: two of each size.
    sizes = [819200, 409600, 204800, 819200, 409600, 204800]
    assert deal_branches(sizes, 4) == [0, 1, 2, 0, 1, 2]
    assert deal_branches(sizes, 2) == [0, 0, 1, 0, 1, 1]
    assert deal_branches(sizes, 1) == [0] * 6
    assert deal_branches([5, 7, 1], 4) == [1, 0, 2]
    assert deal_branches([], 4) == []
