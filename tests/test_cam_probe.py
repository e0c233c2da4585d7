"""A probe's CAMs leave the model as they found it: parameters' gradients
(pending ones too), BatchNorm statistics, modes, random states, hooks."""
import pytest
import torch
from conftest import forward_hook_count
from mmengine.model import BaseModel
from torch import nn

from mmfeatvis.orchestrator.cam import class_target, probe_cams
from mmfeatvis.probe import ProbeBuilder
from mmfeatvis.reduce.cam import CAM_METHODS


class BranchyNet(BaseModel):
    """A CNN classifier with BatchNorm and a branch the logits ignore."""

    def __init__(self) -> None:
        super().__init__(data_preprocessor=dict(
            type='ImgDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3))
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1),
                                  nn.BatchNorm2d(8), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1),
                                   nn.ReLU())
        self.unused = nn.Conv2d(8, 4, 1)
        self.head = nn.Linear(16, 3)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = self.stem(inputs)
        self.unused(x)
        return self.head(self.stage(x).mean((2, 3)))


@pytest.fixture()
def model_and_probe(probe_image_path):
    torch.manual_seed(0)
    model = BranchyNet().train()
    probe, = ProbeBuilder({}).build(probe_image_path, model)
    return model, probe


@pytest.mark.parametrize('method', CAM_METHODS)
def test_cams_change_nothing_of_the_model(model_and_probe, method):
    model, probe = model_and_probe
    # Gradients pending between accumulation steps, and BN statistics.
    loss = model(probe.data['inputs']).sum()
    loss.backward()
    grads = {
        n: None if p.grad is None else p.grad.clone()
        for n, p in model.named_parameters()
    }
    assert grads['head.weight'] is not None and grads['unused.weight'] is None
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    cams = probe_cams(model, probe, ['stem', 'stage'], method,
                      class_target())
    assert set(cams) == {'stem', 'stage'}
    assert cams['stage'].shape == (150, 128)  # 600x512 probe, stride 4
    assert all(bool((c >= 0).all()) and c.isfinite().all()
               for c in cams.values())
    for name, param in model.named_parameters():
        if grads[name] is None:
            assert param.grad is None, name
        else:
            assert torch.equal(param.grad, grads[name]), name
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    assert forward_hook_count(model) == 0


def test_a_layer_without_gradient_is_named(model_and_probe):
    model, probe = model_and_probe
    with pytest.raises(ValueError, match=r"\['unused'\].*eigencam"):
        probe_cams(model, probe, ['stage', 'unused'], 'gradcam',
                   class_target())
    # Gradient-free: any layer.
    assert probe_cams(model, probe, ['unused'], 'eigencam',
                      class_target())['unused'].shape == (300, 256)
    assert forward_hook_count(model) == 0


def test_the_class_target_picks_a_logit(model_and_probe):
    model, probe = model_and_probe
    first = probe_cams(model, probe, ['stage'], 'gradcam', class_target(0))
    second = probe_cams(model, probe, ['stage'], 'gradcam', class_target(1))
    assert not torch.equal(first['stage'], second['stage'])
    with pytest.raises(ValueError, match='class 5 is out of range for 3'):
        probe_cams(model, probe, ['stage'], 'gradcam', class_target(5))
