"""FeatmapVisHook with a plain mmengine BaseModel and the Runner."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import TinyTokenNet, plain_runner

from mmfeatvis.hooks import FeatmapVisHook
from mmfeatvis.testing import read_scalar_log, read_tensorboard


def test_plain_model_conv_and_token_layers(tmp_path, probe_image_path):
    hook = dict(
        type='FeatmapVisHook',
        probe=probe_image_path,
        target_layers=['backbone', 'tokens'],
        interval=2,
        channel_reduction='squeeze_mean',
        per_layer=True)
    runner = plain_runner(str(tmp_path), [hook])
    runner.train()
    vis_dir = osp.join(runner.log_dir, 'vis_data')
    files = sorted(
        osp.basename(p)
        for p in glob.glob(osp.join(vis_dir, 'vis_image', '*.jpg')))
    # Baseline at 0, interval firings at 2 and 4 (the final state is step 4
    # already, so it is not written twice).
    for step in (0, 2, 4):
        assert f'featvis_grace_hopper_backbone_{step}.jpg' in files
        assert f'featvis_grace_hopper_tokens_{step}.jpg' in files
        assert f'featvis_grace_hopper_overview_{step}.jpg' in files
    assert not any(name.endswith('_1.jpg') for name in files)
    images, scalars = read_tensorboard(vis_dir)
    assert images['featvis/grace_hopper/tokens'] == [0, 2, 4]
    # Token maps are drawn on the original photo, at its size.
    import cv2
    token_image = cv2.imread(
        osp.join(vis_dir, 'vis_image', 'featvis_grace_hopper_tokens_2.jpg'))
    assert token_image.shape[:2] == (600, 512)
    assert 'featvis/grace_hopper/backbone/mean' in scalars
    assert scalars['featvis/grace_hopper/backbone/nonpos_ratio'][0][1] >= 0
    logged = read_scalar_log(vis_dir)
    assert {'featvis/grace_hopper/tokens/std', 'step'} <= set(logged[-1])
    assert np.isfinite(logged[-1]['featvis/grace_hopper/tokens/max'])


def test_unknown_layer_fails_before_the_first_iteration(
        tmp_path, probe_image_path):
    hook = dict(
        type='FeatmapVisHook',
        probe=probe_image_path,
        target_layers=['backbone.9'])
    runner = plain_runner(str(tmp_path), [hook])
    with pytest.raises(ValueError, match=r"'backbone.9'.*backbone\.[0-3]"):
        runner.train()
    assert runner.iter == 0


@pytest.mark.parametrize('kwargs, message', [
    (dict(channel_reduction='mean'), 'squeeze_mean'),
    (dict(channel_reduction=None, topk=5, arrangement=(2, 2)), 'topk=5'),
    (dict(interval=0), 'interval'),
    (dict(probe='does/not/exist.jpg'), 'does/not/exist.jpg'),
    (dict(value_range='minmax'), 'per_image'),
    (dict(colormap='rainbowz'), 'rainbowz'),
])
def test_bad_configuration_is_named(kwargs, message, probe_image_path):
    kwargs.setdefault('probe', probe_image_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        FeatmapVisHook(**kwargs)


def test_bad_sample_choices_fail_when_the_hook_is_built(probe_image_path):
    for option in ('val_samples', 'test_samples'):
        for bad in (0, [3, -1], 'every', [0.5]):
            with pytest.raises(ValueError, match=option):
                FeatmapVisHook(probe=probe_image_path, **{option: bad})
    hook = FeatmapVisHook(probe=probe_image_path, val_samples=[7, 0, 7])
    assert hook.val_samples == [0, 7] and hook.test_samples == [0, 7]
    assert FeatmapVisHook(probe=probe_image_path, val_samples=8,
                          test_samples='all').test_samples == 'all'


def test_unreadable_probe_is_named(tmp_path):
    bad = tmp_path / 'notes.jpg'
    bad.write_text('not an image')
    with pytest.raises(ValueError, match='notes.jpg'):
        FeatmapVisHook(probe=str(bad))


def test_maps_captured_under_autocast_are_upcast(probe_image_path):
    from mmfeatvis.options import DrawOptions
    from mmfeatvis.orchestrator import FeatmapOrchestrator
    from mmfeatvis.probe import ProbeBuilder
    model = TinyTokenNet()
    probes = ProbeBuilder({}).build(probe_image_path, model)
    pipeline = FeatmapOrchestrator(['backbone', 'tokens'],
                                   DrawOptions(channel_reduction='norm'))
    # As if the hook fired inside a mixed-precision training step.
    with torch.autocast('cpu', dtype=torch.bfloat16):
        (probe, features, outputs), = pipeline.capture(model, probes)
    assert features['tokens'].dtype == torch.bfloat16
    maps = pipeline.reduce(probe, features, outputs)
    assert {item.reduced.maps.dtype for item in maps.layers} == {
        torch.float32
    }
    assert all(np.isfinite(v) for s in maps.stats.values()
               for v in s.values())
    result = pipeline.render(maps)
    assert result.layer_images['tokens'].dtype == np.uint8
    assert result.layer_images['tokens'].shape == (600, 512, 3)
    # 1 + 150x128 tokens became the 150x128 grid of the 600x512 input.
    assert tuple(maps.layers[-1].reduced.maps.shape[-2:]) == (150, 128)
