"""The probe pass on the CPU feeds its input channels-last, and falls back
for good to the default layout where a model cannot take it."""
import pytest
import torch
from conftest import TinyTokenNet
from mmengine.logging import MMLogger
from torch import nn

from mmfeatvis.capture import ProbeLayout, channels_last_eligible
from mmfeatvis.options import DrawOptions
from mmfeatvis.orchestrator import FeatmapOrchestrator
from mmfeatvis.probe import ProbeBuilder


class ViewingNet(nn.Module):
    """A backbone whose output is flattened with ``view``, which needs the
    default strides (channels-last raises)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, padding=1)
        self.layouts = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.layouts.append(_layout(inputs))
        feats = self.backbone(inputs)
        # (B, C, H, W) -> (B, C*H*W): a view, as some heads write it.
        return feats.view(feats.shape[0], -1).mean(1)


def _layout(tensor: torch.Tensor) -> str:
    if tensor.is_contiguous():
        return 'default'
    if tensor.is_contiguous(memory_format=torch.channels_last):
        return 'channels_last'
    return 'other'


def _fire(model, probe_image_path, layers):
    probes = ProbeBuilder({}).build(probe_image_path, model)
    orchestrator = FeatmapOrchestrator(layers, DrawOptions())
    return orchestrator, probes, orchestrator.fire(model, probes)


def test_a_cpu_probe_pass_runs_channels_last_with_the_same_maps(
        probe_image_path):
    torch.manual_seed(0)
    model = TinyTokenNet()
    seen = []
    model.backbone[0].register_forward_pre_hook(
        lambda module, args: seen.append(_layout(args[0])))
    orchestrator, probes, (fast, ) = _fire(model, probe_image_path,
                                           ['backbone'])
    assert seen == ['channels_last']
    # The probe keeps its own input as it was built.
    assert probes[0].data['inputs'].is_contiguous()
    orchestrator.layout.channels_last = False
    (default, ) = orchestrator.fire(model, probes)
    assert seen == ['channels_last', 'default']
    fast_map = fast.layers[0].reduced.maps
    default_map = default.layers[0].reduced.maps
    assert fast_map.shape == default_map.shape
    torch.testing.assert_close(fast_map, default_map, rtol=1e-5, atol=1e-5)


def test_a_model_that_cannot_take_channels_last_falls_back_once(
        probe_image_path, capsys):
    model = ViewingNet()
    MMLogger.get_instance('mmfeatvis_layout_test')  # a current logger
    orchestrator, probes, (maps, ) = _fire(model, probe_image_path,
                                           ['backbone'])
    orchestrator.fire(model, probes)
    # Tried once channels-last, then the default layout for good.
    assert model.layouts == ['channels_last', 'default', 'default']
    assert orchestrator.layout.channels_last is False
    assert [layer.layer for layer in maps.layers] == ['backbone']
    notes = [
        line for line in capsys.readouterr().out.splitlines()
        if 'memory layout' in line
    ]
    assert len(notes) == 1
    assert 'view size is not compatible' in notes[0]


def test_a_model_error_is_not_taken_for_a_layout_one():
    layout = ProbeLayout()
    calls = []

    def broken(inputs):
        calls.append(_layout(inputs))
        raise RuntimeError('shapes do not match')

    with pytest.raises(RuntimeError, match='shapes do not match'):
        layout.forward(broken, dict(inputs=torch.zeros(1, 3, 8, 8)),
                       discard=lambda: None)
    # Both layouts failed: the model's own error, and channels-last stays.
    assert calls == ['channels_last', 'default']
    assert layout.channels_last is True


@pytest.mark.parametrize('inputs, eligible', [
    (torch.zeros(1, 3, 8, 8), True),
    (torch.zeros(1, 3, 8, 8).to(memory_format=torch.channels_last), False),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), False),
    (torch.zeros(3, 8, 8), False),
    ([torch.zeros(3, 8, 8)], False),
])
def test_only_cpu_float_image_batches_are_made_channels_last(
        inputs, eligible):
    assert channels_last_eligible(inputs) is eligible
