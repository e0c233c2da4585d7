"""A probe's CAMs leave the model as they found it: parameters' gradients
(pending ones too), BatchNorm statistics, modes, random states, hooks;
and a classifier's or a user's targets."""
import numpy as np
import pytest
import torch
from conftest import forward_hook_count
from mmengine.model import BaseModel
from torch import nn

from mmfeatvis.options import CamOptions, cam_options
from mmfeatvis.orchestrator.cam import CamOrchestrator
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


def _cams(model, probe, layers, method='layercam', **options):
    orchestrator = CamOrchestrator(
        CamOptions(method=method, target_layers=layers, **options))
    orchestrator.check(model, [probe])
    cams, = orchestrator.fire(model, [probe], ['cat', 'dog', 'owl'])
    return orchestrator, cams


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
    _, cams = _cams(model, probe, ['stem', 'stage'], method, topk=2)
    # The two top logits, each one map fused from both layers, at the
    # finer layer's size (600x512 probe, stride 2), in [0, 1].
    assert len(cams.panels) == 2
    for panel in cams.panels:
        assert panel.cam.shape == (300, 256)
        assert panel.cam.min() >= 0 and panel.cam.max() == pytest.approx(1)
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
        _cams(model, probe, ['stage', 'unused'], 'gradcam')
    # Gradient-free: any layer.
    _, cams = _cams(model, probe, ['unused'], 'eigencam')
    assert cams.panels[0].cam.shape == (300, 256)
    assert forward_hook_count(model) == 0


def test_classes_pick_the_logits(model_and_probe):
    model, probe = model_and_probe
    logits = model(probe.data['inputs'])[0]
    _, top = _cams(model, probe, ['stage'], topk=3)
    assert [p.title.split()[0] for p in top.panels] == [
        ['cat', 'dog', 'owl'][i] for i in logits.argsort(descending=True)
    ]
    _, chosen = _cams(model, probe, ['stage'], classes=[2, 0])
    assert [p.title.split()[0] for p in chosen.panels] == ['owl', 'cat']
    assert not np.array_equal(chosen.panels[0].cam, chosen.panels[1].cam)
    with pytest.raises(ValueError, match='class 5 is out of range for 3'):
        _cams(model, probe, ['stage'], classes=[5])


def owl_minus_cat(outputs):
    """A user's target: the margin of one class over another."""
    return {'owl - cat': outputs[0, 2] - outputs[0, 0]}


def test_a_users_target_by_its_import_path(model_and_probe):
    model, probe = model_and_probe
    _, cams = _cams(
        model, probe, ['stage'], target='test_cam_probe.owl_minus_cat')
    titles = [p.title.split(' ')[:3] for p in cams.panels]
    assert titles == [['owl', '-', 'cat']]
    with pytest.raises(ValueError, match='cannot be imported'):
        _cams(model, probe, ['stage'], target='test_cam_probe.nothing')


@pytest.mark.parametrize('config,message', [
    (dict(method='scorecam'), "Unknown CAM method 'scorecam'; choose one"),
    (dict(methd='gradcam'), r"Unknown cam option\(s\) \['methd'\]; valid"),
    (dict(topk=0), 'cam topk must be a positive integer'),
    (dict(score_thr=3), r'cam score_thr must be in \[0, 1\]'),
    (dict(classes=['dog']), 'cam classes must be class indices'),
    (dict(layout='mosaic'), "Unknown cam layout 'mosaic'; choose one of"),
    ('gradcam', 'cam must be a dict'),
])
def test_bad_options_are_named(config, message):
    with pytest.raises(ValueError, match=message):
        cam_options(config)


def test_a_model_whose_output_is_not_logits_is_told_what_to_do(
        probe_image_path):
    model = BranchyNet()
    model.forward = lambda inputs, data_samples=None, mode='tensor': (
        model.stage(model.stem(inputs)))
    probe, = ProbeBuilder({}).build(probe_image_path, model)
    with pytest.raises(ValueError, match=r'logits.*cam=dict\(target=...\)'):
        _cams(model, probe, ['stage'])


@pytest.mark.parametrize('method', CAM_METHODS)
def test_under_autocast_the_maps_are_upcast(model_and_probe, method):
    # An AMP training's hook may fire inside autocast: the maps are
    # computed in float32 from the half-precision activations.
    model, probe = model_and_probe
    _, reference = _cams(model, probe, ['stem', 'stage'], method, topk=2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _, cams = _cams(model, probe, ['stem', 'stage'], method, topk=2)
    for panel, expected in zip(cams.panels, reference.panels):
        assert panel.cam.dtype == np.float32
        assert 0 <= panel.cam.min() and panel.cam.max() == pytest.approx(1)
        # bfloat16 keeps about 3 significant digits.
        assert np.abs(panel.cam - expected.cam).mean() < 0.05


def test_a_kept_range_lets_maps_compare_across_firings(model_and_probe):
    # With value_range='first' the first firing's peak stays the top of
    # the scale: activations halved later draw at half strength, where
    # each map's own peak ('per_image') would hide the change.
    from mmfeatvis.reduce import ValueRangeTracker
    model, probe = model_and_probe
    firings = {}
    for mode in ('first', 'per_image'):
        orchestrator = CamOrchestrator(
            CamOptions(target_layers=['stage'], classes=[0]),
            ValueRangeTracker(mode))
        first, = orchestrator.fire(model, [probe])
        with torch.no_grad():
            model.stage[0].weight.mul_(0.5)
            model.stage[0].bias.mul_(0.5)
        second, = orchestrator.fire(model, [probe])
        with torch.no_grad():
            model.stage[0].weight.mul_(2)
            model.stage[0].bias.mul_(2)
        firings[mode] = (first.panels[0].cam, second.panels[0].cam)
    first, second = firings['first']
    assert first.max() == pytest.approx(1)
    # LayerCAM is linear in the activations (the head reads their mean).
    assert second.max() == pytest.approx(0.5, abs=1e-3)
    assert np.allclose(second, first / 2, atol=1e-3)
    assert firings['per_image'][1].max() == pytest.approx(1)
