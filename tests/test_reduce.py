"""Tests of the device-side stage: layouts, reductions, ranges, stats."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmfeatvis.reduce import (activation_stats, channel_scores,
                              infer_token_grid, map_ranges, measure_range,
                              reduce_featmap, to_chw)


def _structured(channels, h, w, seed=0):
    """Non-negative map with a few dominant spatial patterns, like real
    backbone outputs."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(4, h * w, generator=gen)
    mix = torch.randn(channels, 4, generator=gen) * torch.tensor(
        [6., 4., 2., 1.])
    noise = 0.3 * torch.randn(channels, h * w, generator=gen)
    return (mix @ base + noise).reshape(channels, h, w).relu()


# ----------------------------------------------------------------- layouts
def test_to_chw_accepts_chw_and_batch_of_one():
    x = torch.randn(4, 5, 6)
    assert torch.equal(to_chw(x), x)
    assert torch.equal(to_chw(x[None]), x)
    arr = to_chw(x.numpy())
    assert arr.dtype == torch.float32 and torch.equal(arr, x)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_to_chw_upcasts_half_precision(dtype):
    x = torch.randn(3, 4, 4).to(dtype)
    out = to_chw(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, x.float())


@pytest.mark.parametrize('shape, words', [
    ((7, ), ['1-D', '(7,)', '(C, H, W)']),
    ((0, 4, 4), ['empty', '(0, 4, 4)']),
    ((2, 3, 4, 4), ['batch of 2', 'featmap[i]']),
    ((1, 1, 3, 4, 4), ['5-D']),
    ((1, 8), ['single token']),
])
def test_to_chw_rejects_bad_shapes_with_clear_message(shape, words):
    with pytest.raises(ValueError) as err:
        to_chw(torch.zeros(shape))
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize('num, image_hw, expected', [
    (197, None, (1, 14, 14)),  # ViT-B/16 at 224: class token
    (198, (224, 224), (2, 14, 14)),  # DeiT: class + distillation token
    (196, None, (0, 14, 14)),  # Swin-like: no prefix
    (1 + 20 * 30, (480, 640), (1, 20, 30)),
    (1 + 4 + 16 * 16, None, (5, 16, 16)),  # class + 4 registers
    (1 + 24 * 32, (480, 640), (1, 24, 32)),
])
def test_infer_token_grid(num, image_hw, expected):
    assert infer_token_grid(num, image_hw) == expected


def test_tokens_become_grid_in_raster_order():
    channels = 8
    grid = torch.randn(channels, 20, 30)
    patches = grid.reshape(channels, -1).T
    tokens = torch.cat([torch.full((1, channels), 99.), patches])
    out = to_chw(tokens, image_hw=(480, 640))
    assert torch.equal(out, grid)
    out3 = to_chw(tokens[None], image_hw=(480, 640), layout='tokens')
    assert torch.equal(out3, grid)


def test_leading_one_is_a_channel_unless_layout_tokens():
    x = torch.randn(1, 50, 60)
    assert to_chw(x).shape == (1, 50, 60)
    assert to_chw(x, layout='tokens', grid_hw=(5, 10)).shape == (60, 5, 10)


def test_grid_hw_override_and_its_error():
    tokens = torch.randn(1 + 6 * 4, 3)
    assert to_chw(tokens, grid_hw=(6, 4)).shape == (3, 6, 4)
    with pytest.raises(ValueError, match='needs 49 patch tokens'):
        to_chw(tokens, grid_hw=(7, 7))


def test_nan_and_inf_replaced_with_counted_warning():
    x = torch.tensor([[[1., float('nan')], [float('inf'), -2.]],
                      [[float('nan'), 5.], [float('-inf'), 0.]]])
    with pytest.warns(UserWarning, match='2 NaN and 2 Inf values out of 8'):
        out = to_chw(x)
    expected = torch.tensor([[[1., 0.], [5., -2.]], [[0., 5.], [-2., 0.]]])
    assert torch.equal(out, expected)


def test_finite_input_gives_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        to_chw(torch.randn(3, 4, 4))


# -------------------------------------------------------------- reductions
def test_squeeze_mean_norm_std():
    x = torch.randn(6, 7, 9)
    red = reduce_featmap(x, 'squeeze_mean')
    assert red.kind == 'heat' and red.channels is None and not red.is_grid
    assert torch.allclose(red.maps[0], x.mean(0))
    norm = reduce_featmap(x, 'norm').maps[0]
    assert torch.allclose(norm, (x**2).sum(0).sqrt())
    std = reduce_featmap(x, 'std').maps[0]
    assert torch.allclose(std, torch.from_numpy(x.numpy().std(0)), atol=1e-6)


def test_select_max_picks_channel_with_largest_sum():
    x = torch.randn(5, 4, 4)
    x[3] += 2
    red = reduce_featmap(x, 'select_max')
    assert red.channels.tolist() == [3]
    assert torch.equal(red.maps[0], x[3])


def test_topk_selects_by_spatial_sum_and_clamps():
    x = torch.randn(10, 6, 6) + torch.arange(10.)[:, None, None]
    red = reduce_featmap(x, None, topk=4)
    assert red.channels.tolist() == [9, 8, 7, 6] and red.is_grid
    assert torch.equal(red.maps, x[[9, 8, 7, 6]])
    assert reduce_featmap(x[:3], None, topk=20).maps.shape == (3, 6, 6)


def test_image_mode_needs_one_or_three_channels():
    assert reduce_featmap(torch.randn(3, 4, 4), None, topk=0).kind == 'rgb'
    assert reduce_featmap(torch.randn(1, 4, 4), None, topk=0).kind == 'heat'
    with pytest.raises(ValueError, match='got 5; set channel_reduction'):
        reduce_featmap(torch.randn(5, 4, 4), None, topk=0)


def test_unknown_reduction_lists_choices():
    with pytest.raises(ValueError, match="'squeeze_mean', 'select_max'"):
        reduce_featmap(torch.randn(3, 4, 4), 'mean')


def test_rank_hw_reproduces_ranking_of_resized_map():
    x = torch.rand(64, 37, 53)
    resized = F.interpolate(
        x[None], (600, 512), mode='bilinear', align_corners=False)[0]
    scores = channel_scores(x, rank_hw=(600, 512))
    assert torch.allclose(scores, resized.sum((1, 2)), rtol=1e-4)
    assert torch.equal(
        torch.topk(scores, 20).indices,
        torch.topk(resized.sum((1, 2)), 20).indices)


def test_valid_region_ignores_padding_when_ranking():
    x = torch.zeros(2, 10, 10)
    x[0, 8:] = 100.  # large values in rows 8-9 only (padding)
    x[1, :8] = 1.
    assert reduce_featmap(x, 'select_max').channels.tolist() == [0]
    red = reduce_featmap(x, 'select_max', content_region=(0, 8, 0, 10))
    assert red.channels.tolist() == [1]


# --------------------------------------------------------------------- PCA
def test_pca_matches_svd_components():
    x = _structured(32, 12, 14)
    red = reduce_featmap(x, 'pca')
    assert red.kind == 'rgb' and red.maps.shape == (3, 12, 14)
    feats = x.reshape(32, -1).T.double()
    feats = feats - feats.mean(0)
    u, s, _ = torch.linalg.svd(feats, full_matrices=False)
    for i in range(3):
        ref = (u[:, i] * s[i]).float()
        got = red.maps[i].reshape(-1)
        cos = F.cosine_similarity(got, ref, dim=0).abs()
        assert cos > 0.999


@pytest.mark.parametrize('shape', [(16, 10, 10), (200, 12, 12), (128, 9, 9)])
def test_pca_colours_stable_and_sign_invariant(shape):
    x = _structured(*shape, seed=3)
    first = reduce_featmap(x, 'pca').maps
    again = reduce_featmap(x.clone(), 'pca').maps
    negated = reduce_featmap(-x, 'pca').maps
    assert torch.equal(first, again)
    assert torch.allclose(first, negated, atol=1e-3 * first.abs().max())
    # The fixed sign: each component's largest |score| is positive.
    flat = first.reshape(3, -1)
    peak = flat.gather(1, flat.abs().argmax(1, keepdim=True))
    assert (peak > 0).all()


def _symmetric_component(peak_sign: float, seed: int = 0) -> torch.Tensor:
    """Maps whose first component's scores are symmetric, its largest
    |score| on the side of ``peak_sign``; the rule "largest |score|
    positive" flips it when that side changes."""
    gen = torch.Generator().manual_seed(seed)
    channels, h, w = 12, 16, 16
    loading = torch.randn(channels, generator=gen)
    scores = torch.linspace(-1, 1, h * w)
    scores[0 if peak_sign < 0 else -1] *= 1.02  # the one larger extreme
    second = torch.randn(channels, generator=gen) * 0.3
    pattern = torch.randn(h * w, generator=gen) * 0.2
    noise = torch.randn(channels, h * w, generator=gen) * 0.01
    x = loading[:, None] * scores + second[:, None] * pattern + noise
    return x.reshape(channels, h, w)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.reshape(-1), b.reshape(-1), dim=0))


def test_pca_keeps_its_signs_over_firings_with_a_reference():
    x = _symmetric_component(peak_sign=1)
    first = reduce_featmap(x, 'pca')
    assert first.basis.shape == (12, 3)
    # The same maps again, with the first firing's basis: identical.
    again = reduce_featmap(x.clone(), 'pca', pca_reference=first.basis)
    assert torch.equal(again.maps, first.maps)
    # Slightly perturbed maps whose largest |score| moved to the other
    # side: without the reference the first component flips ...
    moved = _symmetric_component(peak_sign=-1)
    assert _corr(reduce_featmap(moved, 'pca').maps[0], first.maps[0]) < -0.9
    # ... with it, every component keeps its sign.
    kept = reduce_featmap(moved, 'pca', pca_reference=first.basis)
    for i in range(3):
        assert _corr(kept.maps[i], first.maps[i]) > 0.9, i


def test_pca_keeps_its_signs_in_the_pipeline_across_firings():
    from mmfeatvis.options import DrawOptions
    from mmfeatvis.orchestrator import FeatmapOrchestrator
    from mmfeatvis.probe import Probe
    pipeline = FeatmapOrchestrator(['layer'], DrawOptions('pca'),
                                   with_stats=False)
    pipeline.layer_names = ['layer']
    probe = Probe('p', np.zeros((16, 16, 3), np.uint8), {})
    maps = [
        pipeline.reduce(probe, {'layer': x[None]}).layers[0].reduced.maps
        for x in (_symmetric_component(1), _symmetric_component(-1))
    ]
    assert _corr(maps[1][0], maps[0][0]) > 0.9


def test_pca_with_two_channels_leaves_third_map_zero():
    maps = reduce_featmap(torch.randn(2, 5, 5), 'pca').maps
    assert maps[2].abs().max() == 0 and maps[0].abs().max() > 0


# ------------------------------------------------------------------ ranges
def test_value_range_plain_and_percentile():
    x = torch.linspace(0, 1, 10001).reshape(1, 1, -1).expand(1, 1, -1)
    x = x.clone()
    x[0, 0, 0] = 1000.  # one outlier
    red = reduce_featmap(x, 'squeeze_mean')
    lo, hi = measure_range(red)
    assert (lo, hi) == (pytest.approx(1e-4), 1000.)
    plo, phi = measure_range(red, percentile=(1, 99))
    ref = np.percentile(x.numpy().ravel(), [1, 99])
    assert plo == pytest.approx(ref[0], abs=1e-4)
    assert phi == pytest.approx(ref[1], abs=1e-4)
    assert isinstance(plo, float)


@pytest.mark.parametrize('bad', [(99, 1), (-1, 50), (1, 101), (5, )])
def test_bad_percentile_rejected(bad):
    red = reduce_featmap(torch.randn(1, 3, 3), 'squeeze_mean')
    with pytest.raises(ValueError, match='percentile must be'):
        measure_range(red, percentile=bad)


def test_map_ranges_per_map_and_joint():
    x = torch.stack([torch.zeros(4, 4), torch.ones(4, 4) * 5])
    x[0, 0, 0] = -1
    per_map = map_ranges(reduce_featmap(x, None, topk=2))
    assert per_map.tolist() == [[5., 5.], [-1., 0.]]
    rgb = torch.cat([x, x[:1]])
    joint = map_ranges(reduce_featmap(rgb, None, topk=0))
    assert joint.tolist() == [[-1., 5.]] * 3


# ------------------------------------------------------------------- stats
def test_activation_stats_values():
    x = torch.tensor([[-1., 0., 2.], [3., float('nan'), 1.]])
    stats = activation_stats(x)
    finite = np.array([-1., 0., 2., 3., 1.])
    assert stats['mean'] == pytest.approx(finite.mean())
    assert stats['std'] == pytest.approx(finite.std())
    assert stats['max'] == 3. and stats['min'] == -1.
    assert stats['nonpos_ratio'] == pytest.approx(2 / 5)
    assert stats['nonfinite_ratio'] == pytest.approx(1 / 6)
    assert all(isinstance(v, float) for v in stats.values())


def test_activation_stats_all_nan_and_empty():
    stats = activation_stats(torch.full((3, ), float('nan')))
    assert math.isnan(stats['mean']) and stats['nonfinite_ratio'] == 1.
    with pytest.raises(ValueError, match='non-empty'):
        activation_stats(torch.zeros(0))


def test_thread_setting_restored_after_success_and_error():
    before = torch.get_num_threads()
    reduce_featmap(torch.rand(8, 6, 6), 'pca')
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        reduce_featmap(torch.rand(8, 6, 6), 'bogus')
    assert torch.get_num_threads() == before


@pytest.mark.parametrize('mode, topk', [('squeeze_mean', 0), ('norm', 0),
                                        ('std', 0), ('pca', 0),
                                        ('select_max', 0), (None, 2),
                                        (None, 0)])
def test_reduce_featmap_sanitizes_every_mode(mode, topk):
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(3, 6, 6, generator=gen)
    x[2, 1, 1] = float('nan')  # not the top channel by sum
    x[0, 0, 0] = float('-inf')
    clean = x.clone()
    clean[0, 0, 0] = x[torch.isfinite(x)].min()
    clean[2, 1, 1] = 0.
    with pytest.warns(UserWarning, match='1 NaN and 1 Inf'):
        red = reduce_featmap(x, mode, topk=topk)
    ref = reduce_featmap(clean, mode, topk=topk)
    assert torch.isfinite(red.maps).all()
    assert torch.allclose(red.maps, ref.maps)
    if ref.channels is not None:
        assert torch.equal(red.channels, ref.channels)
