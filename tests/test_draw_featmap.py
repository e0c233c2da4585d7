"""draw_featmap against mmengine's Visualizer.draw_featmap and on its own."""
import warnings

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.visualization import Visualizer

from mmfeatvis import draw_featmap, reduce_featmap
from mmfeatvis.cli.inputs import resolve_config
from mmfeatvis.probe import content_region
from mmfeatvis.reduce.featmap import _resize_weights
from mmfeatvis.render import render_reduced
from mmfeatvis.testing import sample_photo_path

GRACE_HOPPER = sample_photo_path()
LETTERBOX_META = dict(
    ori_shape=(300, 400),
    img_shape=(640, 640),
    scale_factor=(1.6, 1.6),
    pad_param=np.array([80., 80., 0., 0.], dtype=np.float32),
    batch_input_shape=(640, 640))


def _mean_abs_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b).mean())


def _mmengine(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return Visualizer.draw_featmap(*args, **kwargs)


@pytest.fixture(scope='module')
def grace_hopper_rgb():
    return cv2.cvtColor(cv2.imread(GRACE_HOPPER), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope='module')
def noise_image_320():
    return np.random.default_rng(0).integers(0, 256, (320, 320, 3), np.uint8)


# ------------------------------------------------------- parity: reductions
@pytest.mark.parametrize('mode', ['squeeze_mean', 'select_max'])
@pytest.mark.parametrize('resize_shape', [None, (150, 100)])
@pytest.mark.parametrize('image', [None, 'noise', 'photo'])
@pytest.mark.parametrize('shape', [(32, 40, 40), (24, 37, 53)])
def test_same_picture_as_mmengine(mode, resize_shape, image, shape,
                                  grace_hopper_rgb, noise_image_320):
    image = {
        None: None,
        'noise': noise_image_320,
        'photo': grace_hopper_rgb
    }[image]
    featmap = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    featmap = featmap.relu()
    ref = _mmengine(featmap, image, mode, resize_shape=resize_shape)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ours = draw_featmap(featmap, image, mode, resize_shape=resize_shape)
    assert ours.dtype == np.uint8
    assert _mean_abs_diff(ours, ref) <= 2


def test_select_max_ranks_like_mmengine_when_scale_is_not_integer(
        grace_hopper_rgb):
    # Bilinear resizing weights feature pixels unequally for a non-integer
    # scale; build a map whose plain-sum winner is not mmengine's winner.
    h_in, w_in, out_hw = 37, 3, (53, 9)
    wy = _resize_weights(h_in, out_hw[0], torch.device('cpu'))
    hi, lo = int(wy.argmax()), int(wy.argmin())
    ratio = float(wy[hi] / wy[lo])
    assert ratio > 1.1
    featmap = torch.zeros(2, h_in, w_in)
    featmap[0, hi] = 1.
    featmap[1, lo] = (1 + ratio) / 2
    assert featmap[1].sum() > featmap[0].sum()
    kwargs = dict(resize_shape=out_hw)
    ref = _mmengine(featmap, grace_hopper_rgb, 'select_max', **kwargs)
    ours = draw_featmap(featmap, grace_hopper_rgb, 'select_max', **kwargs)
    assert _mean_abs_diff(ours, ref) <= 2
    plain = draw_featmap(featmap[[1]], grace_hopper_rgb, 'select_max',
                         **kwargs)
    assert _mean_abs_diff(plain, ref) > 2


def test_grey_image_and_one_channel_image_mode_match_mmengine(
        grace_hopper_rgb):
    grey = cv2.cvtColor(grace_hopper_rgb, cv2.COLOR_RGB2GRAY)
    featmap = torch.rand(1, 30, 25)
    ref = _mmengine(featmap, grey, None, topk=0)
    ours = draw_featmap(featmap, grey, None, topk=0)
    assert _mean_abs_diff(ours, ref) <= 2


# ------------------------------------------------------------- top-k grid
def test_topk_grid_matches_mmengine(grace_hopper_rgb):
    gen = torch.Generator().manual_seed(2)
    featmap = torch.rand(24, 37, 53, generator=gen)
    ref = _mmengine(featmap, grace_hopper_rgb, None, topk=6,
                    arrangement=(2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ours = draw_featmap(featmap, grace_hopper_rgb, None, topk=6,
                            arrangement=(2, 3))
    h, w = grace_hopper_rgb.shape[:2]
    assert ours.shape == ref.shape == (2 * h, 3 * w, 3)
    for i in range(6):
        r, c = divmod(i, 3)
        cell = np.s_[r * h + 30:(r + 1) * h, c * w:(c + 1) * w]
        # Per tile, so a different channel choice would show up.
        assert _mean_abs_diff(ours[cell], ref[cell]) <= 2


def test_topk_grid_without_image_has_featmap_sized_tiles():
    featmap = torch.rand(8, 30, 40)
    out = draw_featmap(featmap, None, None, topk=5, arrangement=(2, 3))
    ref = _mmengine(featmap, None, None, topk=5, arrangement=(2, 3))
    assert out.shape == ref.shape == (60, 120, 3)
    assert (out[30:, 80:] == 255).all()  # sixth cell empty, white


def test_topk_clamped_before_arrangement_check():
    featmap = torch.rand(3, 10, 10)
    out = draw_featmap(featmap, None, None, topk=20, arrangement=(2, 2))
    assert out.shape == (20, 20, 3)
    assert (out[10:, 10:] == 255).all() and not (out[:10, :10] == 255).all()
    with pytest.raises(ValueError, match='arrangement 2x2 holds 4 tiles'):
        draw_featmap(torch.rand(10, 8, 8), None, None, topk=5,
                     arrangement=(2, 2))


def test_three_channel_image_mode_shows_rgb():
    featmap = torch.zeros(3, 4, 4)
    featmap[0] = 2.  # red plane high, others low: joint min-max -> red
    out = draw_featmap(featmap, None, None, topk=0)
    assert (out[..., 0] == 255).all() and not out[..., 1:].any()
    with pytest.raises(ValueError, match='needs 1 or 3 channels, got 5'):
        draw_featmap(torch.rand(5, 4, 4), None, None, topk=0)


# --------------------------------------------------------------- warnings
def test_size_warning_once_per_pair_and_not_with_meta():
    image = np.zeros((33, 35, 3), np.uint8)
    featmap = torch.rand(2, 17, 19)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for _ in range(3):
            draw_featmap(featmap, image)
        draw_featmap(torch.rand(2, 18, 19), image)
        draw_featmap(
            torch.rand(2, 20, 20), np.zeros((300, 400, 3), np.uint8),
            image_meta=LETTERBOX_META)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert '(17, 19)' in messages[0] and '(18, 19)' in messages[1]


# ------------------------------------------------------------- alignment
def test_image_meta_puts_heat_on_original_pixels():
    # 40x40 map of a 640x640 letterboxed input; heat where the original
    # 300x400 image has rows 20..120 and cols 120..260.
    featmap = torch.zeros(4, 40, 40)
    featmap[:, 6:14, 12:26] = 1.  # net rows 96..224, cols 192..416
    image = np.full((300, 400, 3), 128, np.uint8)
    out = draw_featmap(featmap, image, alpha=1.0, image_meta=LETTERBOX_META)
    assert out.shape == (300, 400, 3)
    hot = out[..., 0] > 120  # jet: red channel high only at the hot end
    rows = np.flatnonzero(hot.any(1))
    cols = np.flatnonzero(hot.any(0))
    assert abs(rows[0] - 10) <= 6 and abs(rows[-1] - 90) <= 6
    assert abs(cols[0] - 120) <= 6 and abs(cols[-1] - 260) <= 6
    no_image = draw_featmap(featmap, image_meta=LETTERBOX_META)
    assert no_image.shape == (300, 400, 3)


# --------------------------------------------------------------- layouts
def test_tokens_drawn_like_their_grid(noise_image_320):
    grid = torch.rand(16, 14, 14)
    tokens = torch.cat([torch.rand(1, 16), grid.reshape(16, -1).T])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        a = draw_featmap(tokens, noise_image_320)
        b = draw_featmap(tokens[None], noise_image_320, layout='tokens')
        c = draw_featmap(grid, noise_image_320)
    assert np.array_equal(a, c) and np.array_equal(b, c)


def test_nan_input_warns_and_draws_sanitised_map():
    featmap = torch.rand(4, 8, 8)
    featmap[1, 2, 3] = float('nan')
    with pytest.warns(UserWarning, match='1 NaN'):
        out = draw_featmap(featmap)
    clean = featmap.nan_to_num(0.)
    assert np.array_equal(out, draw_featmap(clean))


# --------------------------------------------------------- normalization
def test_norm_range_shares_scale_minmax_does_not():
    featmap = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(draw_featmap(featmap), draw_featmap(featmap * 2))
    fixed = dict(norm_range=(0., 2.))
    assert not np.array_equal(
        draw_featmap(featmap, **fixed), draw_featmap(featmap * 2, **fixed))
    # Values at the top of the frozen range reach the hot end of jet.
    hot = draw_featmap(torch.full((1, 4, 4), 2.), **fixed)
    assert (hot == [128, 0, 0]).all()


def test_percentile_resists_outlier():
    featmap = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(6))
    featmap[0, 0, 0] = 1000.
    plain = draw_featmap(featmap)
    robust = draw_featmap(featmap, percentile=(1, 99))
    assert len(np.unique(plain.reshape(-1, 3), axis=0)) < 10
    assert len(np.unique(robust.reshape(-1, 3), axis=0)) > 100


def test_pca_and_other_reductions_render():
    featmap = torch.rand(12, 20, 24)
    image = np.zeros((40, 48, 3), np.uint8)
    for mode in ('pca', 'norm', 'std'):
        out = draw_featmap(featmap, image, mode, resize_shape=(60, 72))
        assert out.shape == (60, 72, 3) and out.dtype == np.uint8
    pca = draw_featmap(featmap, None, 'pca')
    assert pca.shape == (20, 24, 3)
    assert np.array_equal(pca, draw_featmap(-featmap, None, 'pca'))


def test_colormap_choice_and_errors():
    featmap = torch.rand(2, 8, 8)
    jet = draw_featmap(featmap)
    viridis = draw_featmap(featmap, colormap='Viridis')
    assert not np.array_equal(jet, viridis)
    with pytest.raises(ValueError, match='unknown colormap'):
        draw_featmap(featmap, colormap='nope')
    with pytest.raises(ValueError, match='alpha must be in'):
        draw_featmap(featmap, np.zeros((8, 8, 3), np.uint8), alpha=1.5)
    with pytest.raises(ValueError, match='resize_shape must be'):
        draw_featmap(featmap, resize_shape=(0, 5))
    with pytest.raises(ValueError, match='overlaid_image must be uint8'):
        draw_featmap(featmap, np.zeros((8, 8, 3), np.float32))


def test_render_reduced_with_frozen_range_is_what_the_hook_uses():
    from mmfeatvis import measure_range
    first = reduce_featmap(torch.rand(4, 10, 10), 'squeeze_mean')
    frozen = measure_range(first)
    later = reduce_featmap(torch.rand(4, 10, 10) * 3, 'squeeze_mean')
    out = render_reduced(later, norm_range=frozen)
    # Values mostly above the frozen range saturate at the hot end.
    assert (out == [128, 0, 0]).all(2).mean() > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_featmap_same_picture():
    featmap = torch.rand(16, 20, 20)
    assert _mean_abs_diff(
        draw_featmap(featmap.cuda()), draw_featmap(featmap)) <= 1


# ------------------------------------------- real models, real photograph
def _backbone_outputs(model, registry, cfg):
    """Run the config's test pipeline on the photo (annotations dropped)
    and the model's data preprocessor, then the backbone alone."""
    from mmengine.dataset import Compose
    steps = [
        registry.build(step) for step in cfg.test_pipeline
        if 'LoadAnnotations' not in step['type']
    ]
    data = Compose(steps)(dict(img_path=GRACE_HOPPER, img_id=0))
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    with torch.no_grad():
        feats = model.backbone(batch['inputs'])
    return [f[0] for f in feats], batch['data_samples'][0]


@pytest.fixture(scope='module')
def yolov5s_backbone_outputs():
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmyolo.registry import MODELS, TRANSFORMS
    from mmyolo.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(
        resolve_config(
            'mmyolo::yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py'))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmyolo'):
        # SyncBN needs a process group; plain BN runs on CPU.
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
        return _backbone_outputs(model, TRANSFORMS, cfg)


@pytest.fixture(scope='module')
def retinanet_r18_backbone_outputs():
    from mmdet.registry import MODELS, TRANSFORMS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(
        resolve_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg = None  # no weight download
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model).eval()
        return _backbone_outputs(model, TRANSFORMS, cfg)


def _check_real_maps(feats, sample, photo, expected_shapes):
    assert [tuple(f.shape) for f in feats] == expected_shapes
    ori_hw = tuple(sample.metainfo['ori_shape'][:2])
    assert ori_hw == photo.shape[:2]
    for featmap in feats:
        for mode in ('squeeze_mean', 'select_max'):
            ref = _mmengine(featmap, photo, mode)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                ours = draw_featmap(featmap, photo, mode)
            assert ours.shape == ref.shape == photo.shape
            assert _mean_abs_diff(ours, ref) <= 2
        aligned = draw_featmap(featmap, photo, image_meta=sample)
        assert aligned.shape == photo.shape
        no_image = draw_featmap(featmap, image_meta=sample.metainfo)
        assert no_image.shape[:2] == ori_hw


def test_real_yolov5s_backbone_maps(yolov5s_backbone_outputs,
                                    grace_hopper_rgb):
    feats, sample = yolov5s_backbone_outputs
    # 600x512 photo, letterboxed to 640x640 with left/right padding.
    pad = sample.metainfo['pad_param']
    assert pad[2] > 0 and pad[3] > 0
    _check_real_maps(feats, sample, grace_hopper_rgb,
                     [(128, 80, 80), (256, 40, 40), (512, 20, 20)])
    # The letterbox bars are cut away: stretching the padded map differs.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        stretched = draw_featmap(feats[0], grace_hopper_rgb)
    aligned = draw_featmap(feats[0], grace_hopper_rgb, image_meta=sample)
    assert _mean_abs_diff(aligned, stretched) > 2


def test_real_retinanet_r18_backbone_maps(retinanet_r18_backbone_outputs,
                                          grace_hopper_rgb):
    feats, sample = retinanet_r18_backbone_outputs
    meta = sample.metainfo
    # Short side 512 -> 800, then mmdet pads bottom/right only: 938x800
    # content in a 960x800 input.
    assert tuple(meta['img_shape'][:2]) == (938, 800)
    assert tuple(meta['batch_input_shape']) == (960, 800)
    _check_real_maps(feats, sample, grace_hopper_rgb,
                     [(64, 240, 200), (128, 120, 100), (256, 60, 50),
                      (512, 30, 25)])
    assert content_region(sample, (30, 25)) == (0., 938 / 32, 0., 25.)


def test_empty_meta_means_no_alignment():
    featmap = torch.rand(3, 10, 12)
    image = np.zeros((20, 24, 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert np.array_equal(
            draw_featmap(featmap, image, image_meta={}),
            draw_featmap(featmap, image))


@pytest.mark.parametrize('with_image', [False, True])
@pytest.mark.parametrize('mode', ['squeeze_mean', 'pca', None])
def test_results_do_not_share_reused_buffers(with_image, mode):
    image = np.full((32, 32, 3), 77, np.uint8) if with_image else None
    first = draw_featmap(torch.rand(4, 32, 32), image, mode, topk=2,
                         arrangement=(1, 2))
    kept = first.copy()
    draw_featmap(torch.rand(4, 32, 32), image, mode, topk=2,
                 arrangement=(1, 2))
    assert np.array_equal(first, kept)


def test_featmap_not_modified():
    featmap = torch.rand(1, 16, 16)
    kept = featmap.clone()
    for topk in (0, 1):
        draw_featmap(featmap, None, None, topk=topk, norm_range=(0.2, 0.5))
        draw_featmap(featmap, None, None, topk=topk, percentile=(5, 95))
    assert torch.equal(featmap, kept)


def test_degenerate_and_bad_norm_range():
    featmap = torch.rand(2, 6, 6)
    flat = draw_featmap(featmap, norm_range=(0.5, 0.5))
    assert (flat == flat[0, 0]).all()
    with pytest.raises(ValueError, match='lo <= hi'):
        draw_featmap(featmap, norm_range=(1., 0.))
    with pytest.raises(ValueError, match='not both'):
        draw_featmap(featmap, norm_range=(0., 1.), percentile=(1, 99))
