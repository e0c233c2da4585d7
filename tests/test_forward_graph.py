"""The probe's forward recorded as a CUDA graph (needs CUDA; run on the GPU
machine): replays follow the weights, moved weights are recorded again, and
a forward that cannot be recorded runs eagerly."""
import pytest
import torch
from mmengine.logging import MMLogger
from torch import nn

from mmfeatvis.options import DrawOptions
from mmfeatvis.orchestrator import FeatmapOrchestrator
from mmfeatvis.orchestrator.firing import _forward_key
from mmfeatvis.probe import Probe

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs CUDA')


class ConvBNNet(nn.Module):
    """Conv, BatchNorm and ReLU stages; ``sync=True`` reads a value on the
    host in forward, which a CUDA graph cannot record."""

    def __init__(self, sync: bool = False) -> None:
        super().__init__()
        self.sync = sync
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1),
                                   nn.BatchNorm2d(16), nn.ReLU())

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.stem(inputs)
        if self.sync and feats.mean().item() > 1e9:
            feats = feats * 0
        return self.stage(feats)


def _setup(sync: bool = False):
    torch.manual_seed(0)
    model = ConvBNNet(sync).cuda()
    image = torch.randint(0, 255, (48, 64, 3), dtype=torch.uint8)
    probe = Probe('probe', image.numpy(),
                  dict(inputs=torch.randn(1, 3, 48, 64, device='cuda')))
    pipeline = FeatmapOrchestrator(
        ['stem', 'stage'], DrawOptions(channel_reduction='squeeze_mean'))
    return model, probe, pipeline


def _eager(model: nn.Module, probe: Probe) -> dict:
    pipeline = FeatmapOrchestrator(
        ['stem', 'stage'],
        DrawOptions(channel_reduction='squeeze_mean'),
        use_cuda_graphs=False)
    (_, features, _), = pipeline.capture(model, [probe])
    return {name: t.clone() for name, t in features.items()}


def _train_steps(model: nn.Module, steps: int = 3) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        loss = model(torch.randn(4, 3, 48, 64, device='cuda')).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _assert_same(features: dict, expected: dict) -> None:
    assert list(features) == list(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(features[name], tensor)


def test_replays_follow_in_place_weight_updates():
    model, probe, pipeline = _setup()
    key = _forward_key(model, probe)
    pipeline.capture(model, [probe])  # eager: the maps are GPU tensors
    (_, recorded, _), = pipeline.capture(model, [probe])
    replay = pipeline.forward_replays.recorded(key)
    assert replay.valid_for(model)
    _assert_same(recorded, _eager(model, probe))
    # A replay writes into the graph's memory: keep this firing's maps.
    recorded = {name: t.clone() for name, t in recorded.items()}
    # SGD updates the weights and BatchNorm its statistics, in place.
    _train_steps(model)
    assert model.training  # the probe left the mode as it was
    (_, replayed, _), = pipeline.capture(model, [probe])
    # Not recorded again.
    assert pipeline.forward_replays.recorded(key) is replay
    assert not torch.equal(replayed['stage'], recorded['stage'])
    _assert_same(replayed, _eager(model, probe))


def test_recordings_follow_the_input_shape_and_the_oldest_go():
    from mmfeatvis.cuda.graphs import MAX_RECORDINGS_KEPT
    model, _, pipeline = _setup()
    probes = [
        Probe('probe', torch.zeros(8 * (i + 2), 64, 3,
                                   dtype=torch.uint8).numpy(),
              dict(inputs=torch.randn(1, 3, 8 * (i + 2), 64, device='cuda')))
        for i in range(MAX_RECORDINGS_KEPT + 2)
    ]
    keys = [_forward_key(model, probe) for probe in probes]
    assert len(set(keys)) == len(keys)  # one name, many shapes
    for probe in probes:
        for _ in range(2):  # eager, then recorded
            (_, features, _), = pipeline.capture(model, [probe])
        _assert_same(features, _eager(model, probe))
    kept = [pipeline.forward_replays.recorded(key) is not None
            for key in keys]
    # The most recent ones stay; the oldest were evicted.
    assert kept == [False] * 2 + [True] * MAX_RECORDINGS_KEPT


class ConvLinearNet(ConvBNNet):
    """ConvBNNet with a linear classifier after it: its forward calls
    cuBLAS, which keeps a workspace for every stream it runs on."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(16, 10)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = super().forward(inputs)
        return feats, self.classifier(feats.mean((2, 3)))


def test_recordings_leave_no_cublas_workspace_each():
    """Each recording warms up on the same stream: on a stream of its own,
    cuBLAS would allocate a workspace (tens of MB) for each."""
    torch.manual_seed(0)
    model = ConvLinearNet().cuda().eval()
    pipeline = FeatmapOrchestrator(
        ['stem', 'stage'], DrawOptions(channel_reduction='squeeze_mean'))

    def record(height: int) -> None:
        probe = Probe('probe', torch.zeros(height, 64, 3,
                                           dtype=torch.uint8).numpy(),
                      dict(inputs=torch.randn(1, 3, height, 64,
                                              device='cuda')))
        for _ in range(2):  # eager, then recorded
            pipeline.capture(model, [probe])
        assert pipeline.forward_replays.recorded(
            _forward_key(model, probe)) is not None

    record(16)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for height in (24, 32, 40, 48):
        record(height)
    torch.cuda.synchronize()
    # Four recordings of maps of a few KB; one workspace is at least 4 MB.
    assert torch.cuda.memory_allocated() - before < 4 * 2**20


def test_moved_weights_are_recorded_again():
    model, probe, pipeline = _setup()
    key = _forward_key(model, probe)
    for _ in range(2):
        pipeline.capture(model, [probe])
    first = pipeline.forward_replays.recorded(key)
    with torch.no_grad():
        model.stage[0].weight.data = model.stage[0].weight.data * 2
    assert not first.valid_for(model)
    (_, replayed, _), = pipeline.capture(model, [probe])
    assert pipeline.forward_replays.recorded(key) is not first
    assert pipeline.forward_replays.recordings(key) == 2
    _assert_same(replayed, _eager(model, probe))


def test_one_probe_twice_in_one_call_keeps_both_maps():
    model, probe, pipeline = _setup()
    pipeline.capture(model, [probe])
    first, second = pipeline.capture(model, [probe, probe])
    # Only one of the two may live in the graph's memory.
    assert first[1]['stage'].data_ptr() != second[1]['stage'].data_ptr()
    _assert_same(first[1], second[1])


def test_a_forward_that_syncs_runs_eagerly(capsys):
    model, probe, pipeline = _setup(sync=True)
    MMLogger.get_instance('mmfeatvis_forward_graph_test')
    for _ in range(3):
        (_, features, _), = pipeline.capture(model, [probe])
        _assert_same(features, _eager(model, probe))
    assert pipeline.forward_replays.recorded(
        _forward_key(model, probe)) is None
    assert 'could not be recorded as a CUDA graph' in capsys.readouterr().out


def test_training_is_bitwise_identical_with_replayed_probes(
        tmp_path, probe_image_path, monkeypatch):
    from conftest import plain_runner
    from mmengine.runner import Runner

    from mmfeatvis.cuda.graphs import ReplayedForward

    # Deterministic cuBLAS, as torch.use_deterministic_algorithms asks.
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':4096:8')

    def train(name: str, hooks: list) -> Runner:
        runner = plain_runner(
            str(tmp_path / name),
            hooks,
            max_iters=6,
            randomness=dict(seed=0, deterministic=True))
        runner.train()
        return runner

    hook = dict(
        type='FeatmapVisHook',
        probe=probe_image_path,
        target_layers=['backbone', 'tokens'],
        interval=1)
    with_hook = train('with_hook', [hook])
    without = train('without', [])
    featvis, = [h for h in with_hook.hooks if type(h).__name__ ==
                'FeatmapVisHook']
    key = _forward_key(with_hook.model, featvis.probes[0])
    assert isinstance(featvis.orchestrator.forward_replays.recorded(key),
                      ReplayedForward)
    assert next(with_hook.model.parameters()).is_cuda
    expected = without.model.state_dict()
    for name, tensor in with_hook.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
