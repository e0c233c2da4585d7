"""FeatmapVisHook with a plain mmengine BaseModel and the Runner."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import mmfeatvis  # noqa: F401  (registers the hook)
from mmfeatvis.hooks import FeatmapVisHook
from mmfeatvis.testing import read_scalar_log, read_tensorboard


@MODELS.register_module(force=True)
class TinyTokenNet(BaseModel):
    """A small CNN followed by a transformer-style token layer."""

    def __init__(self) -> None:
        super().__init__(data_preprocessor=dict(
            type='ImgDataPreprocessor',
            mean=[127.5] * 3,
            std=[127.5] * 3,
            pad_size_divisor=8))
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.tokens = nn.Linear(16, 16)
        self.head = nn.Linear(16, 2)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.backbone(inputs)
        # (B, N, C) tokens with a class token in front, as ViTs emit them.
        tokens = feats.flatten(2).transpose(1, 2)
        cls_token = tokens.mean(1, keepdim=True)
        tokens = self.tokens(torch.cat([cls_token, tokens], 1))
        logits = self.head(tokens[:, 0])
        if mode == 'loss':
            labels = torch.stack(data_samples).to(logits.device)
            return dict(loss=nn.functional.cross_entropy(logits, labels))
        return logits


@DATASETS.register_module(force=True)
class RandomImages(Dataset):
    """Random uint8 images with binary labels, already packed."""

    def __init__(self, size: int = 8) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randint(
            0, 255, (size, 3, 60, 84), generator=generator,
            dtype=torch.uint8)
        self.labels = torch.randint(0, 2, (size, ), generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return dict(inputs=self.images[index],
                    data_samples=self.labels[index])


def _runner(work_dir: str, hooks: list, max_iters: int = 4,
            **runner_kwargs) -> Runner:
    loader = dict(
        dataset=dict(type='RandomImages'),
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_size=2,
        num_workers=0)
    # Visualizers are singletons by name, and the Runner names them by the
    # second it starts: tests that start Runners within one second would
    # otherwise share the first one's save_dir.
    runner_kwargs.setdefault('experiment_name', osp.basename(work_dir))
    runner_kwargs.setdefault('randomness', dict(seed=0))
    return Runner(
        model=dict(type='TinyTokenNet'),
        work_dir=work_dir,
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        custom_hooks=hooks,
        visualizer=dict(
            type='Visualizer',
            vis_backends=[
                dict(type='LocalVisBackend'),
                dict(type='TensorboardVisBackend')
            ]),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=100)),
        default_scope='mmengine',
        **runner_kwargs)


def test_plain_model_conv_and_token_layers(tmp_path, probe_image_path):
    hook = dict(
        type='FeatmapVisHook',
        probe=probe_image_path,
        target_layers=['backbone', 'tokens'],
        interval=2,
        channel_reduction='squeeze_mean')
    runner = _runner(str(tmp_path), [hook])
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
    runner = _runner(str(tmp_path), [hook])
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


def test_unreadable_probe_is_named(tmp_path):
    bad = tmp_path / 'notes.jpg'
    bad.write_text('not an image')
    with pytest.raises(ValueError, match='notes.jpg'):
        FeatmapVisHook(probe=str(bad))


def test_maps_captured_under_autocast_are_upcast(probe_image_path):
    from mmfeatvis.pipeline import DrawOptions, FeatmapPipeline
    from mmfeatvis.probe import ProbeBuilder
    model = TinyTokenNet()
    probes = ProbeBuilder({}).build(probe_image_path, model)
    pipeline = FeatmapPipeline(['backbone', 'tokens'],
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
