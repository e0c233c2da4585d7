"""Capture stage: layer resolution, output flattening and hook lifetime."""
import pytest
import torch
from conftest import forward_hook_count, free_port
from torch import nn

from mmfeatvis.capture import (FeatureCapture, find_layers, flatten_output,
                               resolve_layers, unwrap_model)


class TupleBackbone(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Conv2d(3, 4, 3, padding=1)
        self.stage2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def forward(self, x):
        c1 = self.stage1(x)
        return c1, self.stage2(c1)


class DictHead(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Conv2d(8, 2, 1)

    def forward(self, feats):
        # Shared across levels, as detection heads are.
        return {'cls': [self.shared(f) for f in feats], 'name': 'tag'}


class Toy(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.backbone = TupleBackbone()
        self.head = DictHead()

    def forward(self, x):
        feats = self.backbone(x)
        return self.head([feats[1], feats[1][:, :, ::2, ::2]])


def test_resolve_exact_dotted_glob_and_order():
    model = Toy()
    assert resolve_layers(model, 'backbone') == ['backbone']
    assert resolve_layers(model, ['backbone.stage2', 'backbone.stage1']) == [
        'backbone.stage1', 'backbone.stage2'
    ]
    # One glob level stays within one level of the module tree.
    assert resolve_layers(model, ['backbone.stage*']) == [
        'backbone.stage1', 'backbone.stage2'
    ]
    assert resolve_layers(model, ['*']) == ['backbone', 'head']
    assert resolve_layers(model, ['**.shared']) == ['head.shared']
    # Names from a DDP state dict keep working.
    assert resolve_layers(model, ['module.head']) == ['head']


def test_unknown_layer_names_closest_matches():
    with pytest.raises(ValueError) as info:
        resolve_layers(Toy(), ['backbone.stag2'])
    message = str(info.value)
    assert "'backbone.stag2'" in message
    assert 'backbone.stage2' in message
    with pytest.raises(ValueError, match='empty'):
        resolve_layers(Toy(), [])


def test_flatten_names_tuples_and_dicts():
    out = (torch.zeros(1), {'a': torch.ones(1), 'b': [torch.ones(2), 3]})
    names = [name for name, _ in flatten_output('x', out)]
    assert names == ['x[0]', 'x[1][a]', 'x[1][b][0]', 'x[1][b][1]']


def test_capture_flattens_and_numbers_repeated_calls():
    model = Toy()
    with FeatureCapture(model, ['backbone', 'head.shared', 'head']) as cap:
        model(torch.rand(1, 3, 16, 16))
        features = cap.pop_features()
    assert list(features) == [
        'backbone[0]', 'backbone[1]', 'head.shared#0', 'head.shared#1',
        'head[cls][0]', 'head[cls][1]', 'head[name]'
    ]
    assert features['backbone[1]'].shape == (1, 8, 8, 8)
    assert features['head.shared#1'].shape == (1, 2, 4, 4)
    assert features['head[name]'] == 'tag'
    assert not features['backbone[0]'].requires_grad


def test_layers_are_found_as_the_model_holds_them_now():
    model = Toy()
    first = dict(find_layers(model, ['backbone.stage2', 'head.shared']))
    assert first['backbone.stage2'] is model.backbone.stage2
    # A submodule replaced between firings is the one hooked next time.
    model.backbone.stage2 = nn.Conv2d(4, 8, 1, stride=2)
    with FeatureCapture(model, ['backbone.stage2']) as cap:
        model(torch.rand(1, 3, 16, 16))
        features = cap.pop_features()
    assert features['backbone.stage2'].shape == (1, 8, 8, 8)
    assert dict(find_layers(
        model, ['backbone.stage2']))['backbone.stage2'] is (
            model.backbone.stage2)
    # A layer that disappeared is reported with the names that exist.
    del model.head.shared
    with pytest.raises(ValueError, match="'head.shared'.*Closest"):
        FeatureCapture(model, ['head.shared'])


def test_hooks_exist_only_inside_and_are_removed_on_error():
    model = Toy()
    capture = FeatureCapture(model, ['backbone.stage1', 'head'])
    with capture:
        assert forward_hook_count(model) == 2
    assert forward_hook_count(model) == 0
    with pytest.raises(RuntimeError):
        with capture:
            model(torch.rand(1, 5, 8, 8))  # wrong channel count
    assert forward_hook_count(model) == 0


def test_unwrap_ddp_and_compiled_models():
    model = Toy()
    compiled = torch.compile(model)
    assert unwrap_model(compiled) is model
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{free_port()}',
        rank=0,
        world_size=1)
    try:
        wrapped = MMDistributedDataParallel(model, device_ids=None)
        assert unwrap_model(wrapped) is model
        assert resolve_layers(unwrap_model(wrapped), ['head']) == ['head']
    finally:
        dist.destroy_process_group()
