"""The CAM methods against TorchCAM and their definitions, on a small CNN
classifier; gradients are taken with respect to the activations only."""
import pytest
import torch
import torchcam.methods as torchcam
from torch import nn

from mmfeatvis.capture import FeatureCapture
from mmfeatvis.reduce.cam import (CAM_METHODS, check_cam_method,
                                  class_activation_map, fuse_layers,
                                  normalized)

LAYER = '3'  # the second conv's ReLU: (16, 16, 16) for a 32x32 input


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)).eval()


def _ours(model: nn.Module, x: torch.Tensor, method: str,
          target_class: int) -> torch.Tensor:
    """Our map for every sample of ``x``: the activations kept live by
    the capture, the gradients taken with autograd.grad."""
    with FeatureCapture(model, [LAYER], keep=lambda out: out) as capture:
        logits = model(x)
        activations = capture.pop_features()[LAYER]
    gradients, = torch.autograd.grad(logits[:, target_class].sum(),
                                     activations)
    return torch.stack([
        class_activation_map(method, a, g)
        for a, g in zip(activations, gradients)
    ])


def _one_sample(seed: int, target_class: int):
    """A random input's activations at LAYER and the gradient of one
    logit with respect to them, (C, H, W) each."""
    model = _classifier()
    x = torch.randn(1, 3, 32, 32,
                    generator=torch.Generator().manual_seed(seed))
    with FeatureCapture(model, [LAYER], keep=lambda out: out) as capture:
        logits = model(x)
        a = capture.pop_features()[LAYER]
    g, = torch.autograd.grad(logits[0, target_class], a)
    return a[0], g[0]


@pytest.mark.parametrize('ours,theirs', [('gradcam', 'GradCAM'),
                                         ('layercam', 'LayerCAM')])
@pytest.mark.parametrize('target_class', [0, 3])
def test_equals_torchcam(ours, theirs, target_class):
    model = _classifier()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with getattr(torchcam, theirs)(model, target_layer=LAYER) as extractor:
        reference = extractor(class_idx=target_class, scores=model(x))[0]
    got = normalized(_ours(model, x, ours, target_class))
    assert got.shape == reference.shape == (2, 16, 16)
    assert torch.allclose(got, reference, atol=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_gradcam_plus_plus_follows_its_definition():
    # TorchCAM 0.5's GradCAM++ divides a copy (its alpha ends up G^2), so
    # it is checked against the paper's eq. 19, written out per element.
    a, g = _one_sample(seed=2, target_class=2)
    a, g = a.double(), g.double()
    weights = torch.zeros(a.shape[0], dtype=torch.float64)
    for c in range(a.shape[0]):
        for i in range(a.shape[1]):
            for j in range(a.shape[2]):
                grad = g[c, i, j]
                if grad != 0:
                    alpha = grad**2 / (2 * grad**2 + a[c].sum() * grad**3)
                    weights[c] += alpha * torch.relu(grad)
    expected = torch.relu((weights[:, None, None] * a).sum(0))
    got = class_activation_map('gradcam++', a.float(), g.float())
    assert torch.allclose(normalized(got), normalized(expected.float()),
                          atol=1e-5)


def test_eigencam_is_the_first_principal_component_with_a_fixed_sign():
    torch.manual_seed(3)
    # A rank-one pattern (a bright blob) in 12 channels, plus noise.
    yy, xx = torch.meshgrid(torch.arange(20.), torch.arange(24.),
                            indexing='ij')
    blob = torch.exp(-((yy - 6)**2 + (xx - 16)**2) / 20)
    a = torch.rand(12)[:, None, None] * blob + 0.01 * torch.rand(12, 20, 24)
    cam = class_activation_map('eigencam', a)
    x = a.reshape(12, -1).T
    centred = x - x.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[0]).reshape(20, 24)
    # Equal to the projection up to the sign, and the sign makes the
    # blob bright: the maximum lies at its centre.
    assert torch.allclose(cam, torch.relu(projection), atol=1e-5) or (
        torch.allclose(cam, torch.relu(-projection), atol=1e-5))
    assert divmod(int(cam.argmax()), 24) == (6, 16)
    assert torch.equal(class_activation_map('eigencam', -(-a)), cam)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"'gradcam\+\+', 'layercam'"):
        check_cam_method('scorecam')
    with pytest.raises(ValueError, match='needs the gradients'):
        class_activation_map('gradcam', torch.rand(4, 5, 5))
    with pytest.raises(ValueError, match='do not match'):
        class_activation_map('layercam', torch.rand(4, 5, 5),
                             torch.rand(4, 5, 6))
    assert set(CAM_METHODS) == {'gradcam', 'gradcam++', 'layercam',
                                'hirescam', 'eigencam'}


def test_hirescam_weighs_each_position_by_its_own_gradient():
    # TorchCAM has no HiResCAM: its definition (Draelos and Carin 2020),
    # sum_c G * A per position, and what sets it apart from LayerCAM, which
    # drops negative gradients.
    a, g = _one_sample(seed=4, target_class=1)
    expected = torch.relu(
        torch.stack([(g[:, i, j] * a[:, i, j]).sum() for i in range(16)
                     for j in range(16)]).reshape(16, 16))
    got = class_activation_map('hirescam', a, g)
    assert torch.allclose(got, expected, atol=1e-6)
    assert (g < 0).any() and not torch.allclose(
        got, class_activation_map('layercam', a, g))


def test_fused_levels_read_one_at_their_peak_over_the_content():
    # A letterboxed 40x64 input (8 rows of padding above and below).
    meta = dict(ori_shape=(24, 64), img_shape=(40, 64), scale_factor=(1, 1),
                pad_param=[8, 8, 0, 0], batch_input_shape=(40, 64))
    fine = torch.zeros(20, 32)
    fine[10, 5] = 2.0  # in the content
    fine[0, 0] = 9.0  # in the padding: not the peak
    coarse = torch.zeros(5, 8)
    coarse[2, 6] = 4.0
    fused = fuse_layers([fine, coarse], meta)
    assert fused.shape == (20, 32)
    assert float(fused[10, 5]) == pytest.approx(1.0)
    assert float(fused[0, 0]) == 1.0  # clipped, not 4.5
    assert float(fused[10, 25]) > 0.4  # the coarse level's peak, upsampled
    # A map with nothing over the content is blank, padding and all.
    padding_only = torch.zeros(20, 32)
    padding_only[1, 1] = 3.0
    assert float(fuse_layers([padding_only], meta).abs().max()) == 0.0


def test_eigencam_of_many_channels_matches_the_svd():
    # 128 channels: the principal component comes from a subspace
    # iteration on the channels' Gram matrix, not a full decomposition.
    torch.manual_seed(5)
    yy, xx = torch.meshgrid(torch.arange(16.), torch.arange(16.),
                            indexing='ij')
    blob = torch.exp(-((yy - 4)**2 + (xx - 11)**2) / 10)
    a = torch.rand(128)[:, None, None] * blob + 0.05 * torch.rand(128, 16, 16)
    x = a.reshape(128, -1).T
    centred = x - x.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[0]).reshape(16, 16)
    cam = class_activation_map('eigencam', a)
    expected = torch.relu(projection if projection[4, 11] > 0 else -projection)
    assert torch.allclose(cam, expected, atol=1e-4 * float(expected.max()))
