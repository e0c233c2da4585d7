"""Shared fixtures and test models: real files the tests draw on, and a
small plain mmengine model with a Runner around it.

Test modules and the worker scripts of ``tests/dist`` and
``tests/faults`` import the model from here (``from conftest import
...``); importing registers it.
"""
import os.path as osp
import re
import socket

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import mmfeatvis  # noqa: F401  (registers the hook)


@pytest.fixture(scope='session')
def probe_image_path() -> str:
    """A real photograph (512x600) that ships with matplotlib."""
    from mmfeatvis.testing import sample_photo_path
    path = sample_photo_path()
    assert osp.isfile(path)
    return path


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
        self.loss_fn = nn.CrossEntropyLoss()  # called in 'loss' mode only

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.backbone(inputs)
        # (B, N, C) tokens with a class token in front, as ViTs emit them.
        tokens = feats.flatten(2).transpose(1, 2)
        cls_token = tokens.mean(1, keepdim=True)
        tokens = self.tokens(torch.cat([cls_token, tokens], 1))
        logits = self.head(tokens[:, 0])
        if mode == 'loss':
            labels = torch.stack(data_samples).to(logits.device)
            return dict(loss=self.loss_fn(logits, labels))
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


def plain_runner(work_dir: str, hooks: list, max_iters: int = 4,
                 **runner_kwargs) -> Runner:
    """A Runner training :class:`TinyTokenNet` on :class:`RandomImages`,
    writing to the local and TensorBoard backends."""
    loader = dict(
        dataset=dict(type='RandomImages'),
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_size=2,
        num_workers=0)
    # Visualizers are singletons by name, and the Runner names them by the
    # second it starts: tests that start Runners within one second would
    # otherwise share the first one's save_dir.
    runner_kwargs.setdefault('experiment_name',
                             re.sub(r'\W', '_', osp.abspath(work_dir))[-80:])
    runner_kwargs.setdefault('randomness', dict(seed=0))
    runner_kwargs.setdefault(
        'visualizer',
        dict(type='Visualizer',
             vis_backends=[
                 dict(type='LocalVisBackend'),
                 dict(type='TensorboardVisBackend')
             ]))
    return Runner(
        model=dict(type='TinyTokenNet'),
        work_dir=work_dir,
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        custom_hooks=hooks,
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=100)),
        default_scope='mmengine',
        **runner_kwargs)


def forward_hook_count(model: nn.Module) -> int:
    """Forward hooks on ``model`` and its submodules (torch keeps them in a
    private dict and has no public count)."""
    return sum(len(m._forward_hooks) for m in model.modules())


def free_port() -> int:
    """A TCP port nothing listens on now, for a process group's rendezvous
    (a fixed one fails when another run holds it)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# -- mmyolo's YOLOv5-n from the demo config, trained on generated shapes --
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'yolov5_n_shapes.py')


def yolo_cfg(shapes: dict, work_dir: str, hooks: list, max_epochs: int = 2,
             batch_size: int = 4) -> Config:
    """The demo config, shortened, on ``shapes``, with extra hooks."""
    cfg = Config.fromfile(DEMO_CONFIG)
    root = shapes['data_root']
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = root
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = shapes[
        'val_ann']
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                         val_interval=10_000)
    cfg.default_hooks.param_scheduler.max_epochs = max_epochs
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.visualizer.vis_backends = [
        dict(type='LocalVisBackend'),
        dict(type='TensorboardVisBackend')
    ]
    # Visualizers are process-wide singletons by name; a fresh name per run
    # keeps each test's files in its own work_dir.
    cfg.visualizer.name = f'vis_{osp.basename(work_dir)}_{id(cfg)}'
    cfg.custom_imports = dict(imports=['mmfeatvis'],
                              allow_failed_imports=False)
    cfg.custom_hooks = list(cfg.custom_hooks) + hooks
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0, deterministic=False)
    return cfg


def featvis_hook(**kwargs) -> dict:
    hook = dict(type='FeatmapVisHook', target_layers=['backbone', 'neck'],
                interval=1)
    hook.update(kwargs)
    return hook
