"""The probe pass leaves modes, random states and BN statistics alone."""
import random

import numpy as np
import torch
from torch import nn

from mmfeatvis.capture import isolated_inference


def _model() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.ReLU())
    model.train()
    model[2].eval()  # a module the user froze on purpose
    return model


def test_modes_gradients_rng_and_bn_statistics_restored():
    model = _model()
    # Give the BN layer non-trivial statistics first.
    model(torch.rand(2, 3, 8, 8))
    bn_state = {k: v.clone() for k, v in model[1].state_dict().items()}
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    with isolated_inference(model):
        assert not any(m.training for m in model.modules())
        assert not torch.is_grad_enabled()
        out = model(torch.rand(2, 3, 8, 8))
        # Random draws inside the probe must not shift the training's.
        random.random()
        np.random.rand(5)
        torch.rand(7)
    assert not out.requires_grad
    assert torch.is_grad_enabled()
    assert [m.training for m in model.modules()] == [
        True, True, True, False, True
    ]
    got = (random.random(), np.random.rand(), torch.rand(1))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])
    for key, value in model[1].state_dict().items():
        assert torch.equal(value, bn_state[key]), key


def test_restored_after_an_exception():
    model = _model()
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    try:
        with isolated_inference(model):
            torch.rand(3)
            raise RuntimeError('boom')
    except RuntimeError:
        pass
    assert model.training and not model[2].training
    assert torch.equal(torch.rand(1), expected)
