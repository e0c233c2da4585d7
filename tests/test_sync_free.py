"""The reduce stage without host syncs: the sanitize path that accelerators
take, quantiles and statistics as device tensors, the one host copy, and
(on CUDA) the number of syncs of a whole probe firing."""
import collections
import math
import os.path as osp
import warnings

import numpy as np
import pytest
import torch

from mmfeatvis.cuda.transfer import pack, start_host_copy, unpack
from mmfeatvis.reduce import (activation_stats, measure_range,
                              measure_range_tensor, reduce_chw)
from mmfeatvis.reduce.nonfinite import (NonfiniteCounts, replace_nonfinite,
                                        sanitize_nonfinite)
from mmfeatvis.reduce.stats import (STATS_KEYS, activation_stats_tensor,
                                    quantiles)

NAN, INF = float('nan'), float('inf')


def _inputs():
    gen = torch.Generator().manual_seed(0)
    finite = torch.randn(6, 7, 9, generator=gen)
    dirty = finite.clone()
    dirty[1, 2, 3] = NAN
    dirty[4, 0, 0] = INF
    dirty[0, 6, 8] = -INF
    dirty[5, 3, 3] = NAN
    # 'norm' squares 3e38: finite input whose reduction overflows.
    huge = torch.full((2, 3, 3), 3e38)
    return dict(finite=finite, dirty=dirty, huge=huge,
                all_nan=torch.full((3, 4, 4), NAN))


# ------------------------------------------------------------ sanitizing
@pytest.mark.parametrize('name', ['finite', 'dirty', 'huge', 'all_nan'])
def test_sanitize_equals_the_cpu_replacement(name):
    x = _inputs()[name]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        expected = replace_nonfinite(x)
    clean, counts = sanitize_nonfinite(x)
    assert torch.equal(clean, expected)
    assert counts.counts.dtype == torch.int64
    assert counts.counts.tolist() == [
        int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
    ]
    assert counts.shape == tuple(x.shape)


@pytest.mark.parametrize('name', ['finite', 'dirty', 'huge', 'all_nan'])
@pytest.mark.parametrize('reduction, topk', [('squeeze_mean', 0),
                                             ('select_max', 0), ('pca', 0),
                                             ('norm', 0), ('std', 0),
                                             (None, 3)])
def test_sync_free_path_gives_the_cpu_maps(name, reduction, topk):
    x = _inputs()[name]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        cpu = reduce_chw(x, reduction, topk, rank_hw=(14, 18),
                         sync_free=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the warning waits for the copy
        free = reduce_chw(x, reduction, topk, rank_hw=(14, 18),
                          sync_free=True)
    assert torch.equal(free.maps, cpu.maps)
    assert torch.isfinite(free.maps).all()
    assert free.kind == cpu.kind and free.mode == cpu.mode
    assert free.joint == cpu.joint
    if cpu.channels is None:
        assert free.channels is None
    else:
        assert torch.equal(free.channels, cpu.channels)
    assert cpu.nonfinite is None and free.nonfinite is not None


def test_image_mode_and_deferred_warning_text():
    x = _inputs()['dirty'][:3]
    with pytest.warns(UserWarning) as cpu_warning:
        cpu = reduce_chw(x, None, 0, sync_free=False)
    free = reduce_chw(x, None, 0, sync_free=True)
    assert torch.equal(free.maps, cpu.maps)
    with pytest.warns(UserWarning) as late:
        free.nonfinite.warn(layer='neck.out')
    assert str(late[0].message) == ("layer 'neck.out': " +
                                    str(cpu_warning[0].message))
    assert '1 NaN and 1 Inf values out of 189' in str(late[0].message)


def test_counts_of_finite_input_do_not_warn():
    _, counts = sanitize_nonfinite(_inputs()['finite'])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        counts.warn(torch.zeros(2, dtype=torch.int64), 'a')
        NonfiniteCounts(torch.zeros(2, dtype=torch.int64), (1, 2)).warn()


# ---------------------------------------------------- device-side values
@pytest.mark.parametrize('numel', [1, 2, 7, 1000, 4096])
@pytest.mark.parametrize('q', [(0.01, 0.99), (0.0, 1.0), (0.25, 0.5),
                               (0.333, 0.977)])
def test_quantiles_equal_torch_quantile(numel, q):
    gen = torch.Generator().manual_seed(numel)
    values = torch.randn(numel, generator=gen)
    values[::3] = values[0]  # ties
    expected = torch.quantile(values, torch.tensor(q))
    assert torch.equal(quantiles(values, q), expected)
    assert torch.equal(quantiles(values.double(), q),
                       torch.quantile(values.double(),
                                      torch.tensor(q, dtype=torch.float64)))


def test_quantiles_of_nan_are_nan_as_torch_quantile():
    values = torch.arange(1000.)
    values[500] = math.nan
    assert torch.quantile(values, torch.tensor([0.01, 0.99])).isnan().all()
    assert quantiles(values, (0.01, 0.99)).isnan().all()


def test_quantiles_reject_out_of_range():
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        quantiles(torch.ones(3), (0.5, 1.5))


def test_value_range_tensor_matches_floats():
    red = reduce_chw(_inputs()['finite'], None, 3)
    for percentile in (None, (1, 99)):
        rng = measure_range_tensor(red, percentile)
        assert rng.shape == (2, ) and rng.dtype == torch.float32
        assert tuple(rng.tolist()) == measure_range(red, percentile)
    flat = red.maps.reshape(-1)
    assert measure_range_tensor(red, (1, 99)).tolist() == torch.quantile(
        flat, torch.tensor([0.01, 0.99])).tolist()


def test_activation_stats_tensor_matches_dict():
    x = _inputs()['dirty']
    stats = activation_stats_tensor(x)
    assert stats.shape == (6, ) and stats.dtype == torch.float32
    assert dict(zip(STATS_KEYS, stats.tolist())) == activation_stats(x)


# ------------------------------------------------------ one host copy
def _mixed():
    return collections.OrderedDict([
        ('flag', torch.tensor(True)),
        ('maps', torch.randn(3, 5, 7)),
        ('channels', torch.tensor([5, 0, 2**40 + 3])),
        ('range', torch.tensor([-1.25, 1e-300], dtype=torch.float64)),
        ('stats', torch.tensor([0.1, NAN, INF, -INF, 0.0, -0.0])),
        ('counts', torch.tensor([2**33, 1])),
        ('half', torch.randn(3).half()),
        ('scalar', torch.tensor(7.5)),
        ('strided', torch.arange(12.).reshape(3, 4).t()),
        ('empty', torch.zeros(0, 4)),
    ])


def _same(a, b):
    """Same dtype, shape and bits (NaN payloads and -0.0 included)."""
    def bits(t):
        return t.contiguous().reshape(-1).view(torch.uint8)

    return (a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(bits(a), bits(b)))


def test_pack_unpack_round_trip_is_bit_exact():
    tensors = list(_mixed().values())
    buffer, segments = pack(tensors)
    assert buffer.dtype == torch.uint8 and buffer.ndim == 1
    assert buffer.numel() == sum(t.numel() * t.element_size()
                                 for t in tensors)
    # Every segment starts aligned to its element size.
    assert all(s.offset % tensors[s.index].element_size() == 0
               for s in segments)
    # A copy of the buffer (what .cpu() makes) unpacks the same.
    for original, back in zip(tensors, unpack(buffer.clone(), segments)):
        assert _same(original, back), original.dtype


def test_host_copy_keeps_keys_order_and_cpu_tensors():
    tensors = _mixed()
    host = start_host_copy(tensors).result()
    assert list(host) == list(tensors)
    assert all(host[k] is tensors[k] for k in tensors)
    assert start_host_copy({}).result() == {}


# ------------------------------------------------------------- pipeline
# mmyolo-style letterbox of a 48x36 image into 64x64 (the map's padding is
# cut off when measuring ranges and ranking channels).
LETTERBOX = dict(ori_shape=(48, 36), img_shape=(64, 64),
                 scale_factor=(4 / 3, 4 / 3),
                 pad_param=np.array([0, 0, 8, 8], np.float32),
                 batch_input_shape=(64, 64), pad_shape=(64, 64))


def _pipeline_and_probe(device, mode='first', percentile=(1, 99),
                        reduction='select_max', meta=None, graphs=False):
    from mmfeatvis.options import DrawOptions
    from mmfeatvis.orchestrator import FeatmapOrchestrator
    from mmfeatvis.probe import Probe
    from mmfeatvis.reduce.ranges import ValueRangeTracker
    options = DrawOptions(channel_reduction=reduction, topk=3,
                          percentile=percentile)
    pipeline = FeatmapOrchestrator(['a', 'b', 'c'], options,
                                   ValueRangeTracker(mode, momentum=0.3),
                                   use_cuda_graphs=graphs)
    pipeline.layer_names = ['a', 'b', 'c']
    image = np.zeros((48, 36, 3) if meta else (64, 48, 3), np.uint8)
    probe = Probe('p', image, dict(inputs=torch.zeros(1, 3, 64, 48,
                                                      device=device)),
                  dict(meta or {}))
    return pipeline, probe


def _features(device, scale=1.0):
    gen = torch.Generator().manual_seed(int(scale * 10))
    feats = dict(a=torch.rand(1, 8, 16, 12, generator=gen) * scale,
                 b=torch.randn(1, 16, 8, 6, generator=gen) * scale,
                 c=torch.randn(1, 12, 4, generator=gen) * scale)
    return {k: v.to(device) for k, v in feats.items()}


def _assert_host_layers(maps):
    for item in maps.layers:
        assert item.reduced.maps.device.type == 'cpu'
        if item.reduced.channels is not None:
            assert item.reduced.channels.device.type == 'cpu'
        assert item.reduced.nonfinite is None
        if item.norm_range is not None:  # None: per-image ranges
            assert all(type(v) is float for v in item.norm_range)
        assert all(type(v) is float for v in item.stats.values())


@pytest.mark.parametrize('mode', ['first', 'running'])
def test_pipeline_ranges_are_floats_and_tracker_settles(mode):
    pipeline, probe = _pipeline_and_probe('cpu', mode)
    tracker = pipeline.range_tracker
    expected = {}
    for scale in (1.0, 2.0, 0.5):
        maps = pipeline.reduce(probe, _features('cpu', scale))
        _assert_host_layers(maps)
        for item in maps.layers:
            key = ('p', item.layer)
            observed = measure_range(item.reduced, (1, 99))
            if key not in expected or mode == 'first':
                expected.setdefault(key, observed)
            else:
                lo, hi = expected[key]
                expected[key] = (lo * 0.7 + observed[0] * 0.3,
                                 hi * 0.7 + observed[1] * 0.3)
            assert item.norm_range == expected[key]
            assert tracker.ranges[key] == expected[key]
    assert tracker.state_dict() == {
        f'p\x1f{layer}': list(expected['p', layer])
        for layer in ('a', 'b', 'c')
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('mode, percentile, reduction, meta', [
    ('first', (1, 99), 'select_max', None),
    ('first', (1, 99), 'select_max', LETTERBOX),
    ('running', (1, 99), None, LETTERBOX),
    ('running', None, 'squeeze_mean', None),
    ('first', None, 'norm', LETTERBOX),
    ('running', (2, 98), 'std', None),
    ('adaptive', (1, 99), 'select_max', LETTERBOX),
    ('adaptive', None, 'norm', None),
    ('per_image', (1, 99), None, LETTERBOX),
])
def test_cuda_firing_queues_without_syncs_and_matches_cpu(
        mode, percentile, reduction, meta):
    args = (mode, percentile, reduction, meta)
    # Warm the per-device caches (resize weights) once, as a first firing
    # of a run does.
    pipeline, probe = _pipeline_and_probe('cuda', *args)
    pipeline.reduce(probe, _features('cuda'))
    pipeline, probe = _pipeline_and_probe('cuda', *args)
    cpu_pipeline, cpu_probe = _pipeline_and_probe('cpu', *args)
    for scale in (1.0, 2.0, 0.5):
        feats = _features('cuda', scale)
        feats['b'][0, 3, 2, 1] = NAN
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try:
                # As the hook calls it: the copy to the host is queued.
                maps = pipeline.reduce(probe, feats, defer=True)
            finally:
                torch.cuda.set_sync_debug_mode('default')
            maps.wait()  # the one wait, for the copy (on the writer thread)
        # A process's first mode switch is reported too, from torch's own
        # file: the measurement, not the firing.
        syncs = [
            w for w in caught if 'synchroniz' in str(w.message)
            and not w.filename.endswith(osp.join('torch', 'cuda',
                                                 '__init__.py'))
        ]
        assert not syncs, [f'{w.filename}:{w.lineno}' for w in syncs]
        nonfinite = [str(w.message) for w in caught if 'NaN' in str(w.message)]
        assert nonfinite == ["layer 'b': featmap of shape (16, 8, 6) has 1 "
                             'NaN and 0 Inf values out of 768; NaN is drawn '
                             'as 0 and +/-Inf as the largest/smallest '
                             'finite value']
        _assert_host_layers(maps)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            cpu_maps = cpu_pipeline.reduce(
                cpu_probe, {k: v.cpu() for k, v in feats.items()})
        for gpu, cpu in zip(maps.layers, cpu_maps.layers):
            assert torch.allclose(gpu.reduced.maps, cpu.reduced.maps,
                                  rtol=1e-5, atol=1e-6)
            if cpu.reduced.channels is not None:
                assert torch.equal(gpu.reduced.channels,
                                   cpu.reduced.channels)
            assert np.allclose(gpu.norm_range, cpu.norm_range, rtol=1e-5)
            assert np.allclose(list(gpu.stats.values()),
                               list(cpu.stats.values()), rtol=1e-5)
        kept = pipeline.range_tracker.ranges.values()
        if mode == 'adaptive':
            # Kept on the device and updated in place (replayable).
            assert all(v.device.type == 'cuda' for v in kept)
        else:
            # Settled: later firings and checkpoints need no copy.
            assert all(isinstance(v, tuple) for v in kept)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('mode, reduction, recorded', [
    ('first', 'select_max', True),
    ('per_image', None, True),
    ('first', 'pca', False),  # the eigensolver syncs: never recorded
    ('running', 'squeeze_mean', False),  # the average changes each time
    ('adaptive', 'select_max', True),  # updated in place on the device
    ((0.0, 1.0), 'norm', True),  # a fixed range never changes
])
def test_cuda_graph_replays_give_the_eager_results(mode, reduction,
                                                   recorded):
    graphed, probe = _pipeline_and_probe('cuda', mode, (1, 99), reduction,
                                         LETTERBOX, graphs=True)
    eager, _ = _pipeline_and_probe('cuda', mode, (1, 99), reduction,
                                   LETTERBOX, graphs=False)
    for firing, scale in enumerate((1.0, 2.0, 0.5, 3.0)):
        feats = _features('cuda', scale)
        feats['b'][0, 3, 2, 1] = NAN
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            if firing == 3:
                torch.cuda.set_sync_debug_mode('warn')
            try:
                maps = graphed.reduce(probe, feats, defer=True)
            finally:
                torch.cuda.set_sync_debug_mode('default')
            maps.wait()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            expected = eager.reduce(probe, feats)
        # NaN input is still reported at every firing, replayed or not.
        assert any("layer 'b'" in str(w.message) for w in caught)
        if firing == 3 and recorded:
            syncs = [w for w in caught if 'synchroniz' in str(w.message)
                     and not w.filename.endswith(
                         osp.join('torch', 'cuda', '__init__.py'))]
            assert not syncs, [f'{w.filename}:{w.lineno}' for w in syncs]
        _assert_host_layers(maps)
        assert maps.skipped == expected.skipped
        for got, want in zip(maps.layers, expected.layers, strict=True):
            assert got.layer == want.layer
            assert torch.equal(got.reduced.maps, want.reduced.maps)
            if want.reduced.channels is not None:
                assert torch.equal(got.reduced.channels,
                                   want.reduced.channels)
            assert got.norm_range == want.norm_range
            assert got.stats == want.stats
    graphs = graphed.reduction_replays.recorded()
    assert (len(graphs) == 1 and graphs[0] is not None) == recorded


@pytest.mark.parametrize('bad', [None, NAN, math.inf, -math.inf])
def test_statistics_leave_out_nonfinite_values(bad):
    x = torch.randn(64, 30, 20, generator=torch.Generator().manual_seed(3))
    x = x * 3 + 1
    if bad is not None:
        x[5, 7, 2] = bad
    values = x.double().numpy().ravel()
    finite = values[np.isfinite(values)]
    got = activation_stats(x)
    assert got['mean'] == pytest.approx(finite.mean(), rel=1e-5)
    assert got['std'] == pytest.approx(finite.std(), rel=1e-5)
    assert got['max'] == pytest.approx(finite.max())
    assert got['min'] == pytest.approx(finite.min())
    assert got['nonpos_ratio'] == pytest.approx((finite <= 0).mean())
    assert got['nonfinite_ratio'] == pytest.approx(
        0 if bad is None else 1 / values.size)
