"""FeatmapVisHook on an mmdet two-stage detector and an mmseg segmentor.

Both are built from the configs shipped inside the installed packages and
trained for a few iterations by the Runner on generated data.
"""
import copy
import glob
import os.path as osp

import cv2
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmfeatvis.cli.inputs import resolve_config
from mmfeatvis.testing import (make_shapes_dataset, make_shapes_segmentation,
                               read_tensorboard)

# Runner trainings of mmdet and mmseg models.
pytestmark = pytest.mark.slow

VIS_BACKENDS = [
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend')
]


def shipped_config(package: str, relative: str) -> Config:
    return Config.fromfile(resolve_config(f'{package}::{relative}'))


def _short_iter_training(cfg: Config, work_dir: str, max_iters: int,
                         hook: dict) -> Config:
    cfg.work_dir = work_dir
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                         val_interval=10_000)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.param_scheduler = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=10_000)
    cfg.visualizer.vis_backends = VIS_BACKENDS
    # Visualizers are process-wide singletons by name; a fresh name per run
    # keeps each test's files in its own work_dir.
    cfg.visualizer.name = f'vis_{osp.basename(work_dir)}_{id(cfg)}'
    cfg.custom_imports = dict(imports=['mmfeatvis'],
                              allow_failed_imports=False)
    cfg.custom_hooks = [hook]
    cfg.randomness = dict(seed=0)
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    cfg.launcher = 'none'
    return cfg


@pytest.fixture(scope='module')
def shapes_coco(tmp_path_factory):
    return make_shapes_dataset(
        str(tmp_path_factory.mktemp('shapes')), num_train=4, num_val=2)


def faster_rcnn_cfg(shapes_coco: dict) -> Config:
    """mmdet's Faster R-CNN (ResNet-18 backbone) on the shapes."""
    cfg = shipped_config('mmdet', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.model.roi_head.bbox_head.num_classes = 3
    metainfo = dict(classes=shapes_coco['classes'])
    pipelines = {}
    for split, train in (('train', True), ('test', False)):
        pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(320, 256), keep_ratio=True),
            dict(type='PackDetInputs', meta_keys=(
                'img_id', 'img_path', 'ori_shape', 'img_shape',
                'scale_factor')),
        ]
        pipelines[split] = pipeline
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=2 if train else 1, num_workers=0,
                      persistent_workers=False)
        loader.dataset.update(
            data_root=shapes_coco['data_root'],
            ann_file=shapes_coco['train_ann' if train else 'val_ann'],
            data_prefix=dict(img=shapes_coco[
                'train_img_dir' if train else 'val_img_dir']),
            metainfo=metainfo,
            pipeline=pipeline)
    cfg.test_evaluator.ann_file = shapes_coco['val_ann']
    return cfg


def test_faster_rcnn_fpn_dataset_probe(tmp_path, shapes_coco):
    cfg = faster_rcnn_cfg(shapes_coco)
    hook = dict(
        type='FeatmapVisHook',
        probe=dict(dataset='train', index=1),
        target_layers=['backbone.layer*', 'neck', 'rpn_head.rpn_conv'],
        interval=1,
        draw_pred=True,
        score_thr=0.0,
        per_layer=True)
    cfg = _short_iter_training(cfg, str(tmp_path), 2, hook)
    runner = Runner.from_cfg(cfg)
    runner.train()
    vis_dir = osp.join(runner.log_dir, 'vis_data')
    images, scalars = read_tensorboard(vis_dir)
    probe = '000001'  # the second training image, named by its file
    for layer in ('backbone.layer1', 'backbone.layer4', 'neck_0', 'neck_4',
                  'rpn_head.rpn_conv_0', 'rpn_head.rpn_conv_4', 'overview'):
        assert images[f'featvis/{probe}/{layer}'] == [0, 1, 2], layer
    assert scalars[f'featvis/{probe}/neck_0/std'][0][0] == 0
    # Maps are drawn over the original 320x256 image, not the padded input.
    files = glob.glob(osp.join(vis_dir, 'vis_image', '*neck_2_2.jpg'))
    assert cv2.imread(files[0]).shape[:2] == (256, 320)


def fcn_cfg(data: dict) -> Config:
    """mmseg's FCN (ResNet-18) on a generated segmentation set."""
    cfg = shipped_config('mmseg',
                         'fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    cfg.model.pop('pretrained', None)
    cfg.norm_cfg = dict(type='BN', requires_grad=True)
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        cfg.model[part].norm_cfg = cfg.norm_cfg
    cfg.model.decode_head.num_classes = 3
    cfg.model.auxiliary_head.num_classes = 3
    cfg.model.data_preprocessor.size = (128, 160)
    for split, train in (('train', True), ('test', False)):
        pipeline = [dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations')]
        if not train:
            # mmseg loads annotations after resizing at test time.
            pipeline = [dict(type='LoadImageFromFile'),
                        dict(type='Resize', scale=(160, 128),
                             keep_ratio=True),
                        dict(type='LoadAnnotations')]
        pipeline.append(dict(type='PackSegInputs'))
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset = dict(
            type='BaseSegDataset',
            data_root=data['data_root'],
            data_prefix=dict(img_path=f'img_dir/{"train" if train else "val"}',
                             seg_map_path=f'ann_dir/'
                             f'{"train" if train else "val"}'),
            img_suffix='.jpg',
            seg_map_suffix='.png',
            metainfo=dict(classes=data['classes'], palette=data['palette']),
            pipeline=pipeline)
    return cfg


def test_fcn_segmentor_path_probe(tmp_path):
    data = make_shapes_segmentation(str(tmp_path / 'seg'))
    cfg = fcn_cfg(data)
    probe = osp.join(data['data_root'], 'img_dir', 'val', 'val_0000.jpg')
    hook = dict(
        type='FeatmapVisHook',
        probe=probe,
        target_layers=['backbone.layer4', 'decode_head', 'decode_head.convs'],
        interval=2,
        channel_reduction='pca',
        per_layer=True)
    # EncoderDecoder calls decode_head.forward() directly, which skips
    # forward hooks: the probe pass before training finds it, and the run
    # stops there with the fix.
    failing = _short_iter_training(copy.deepcopy(cfg), str(tmp_path / 'no'),
                                   2, hook)
    runner = Runner.from_cfg(failing)
    with pytest.raises(ValueError, match="'decode_head': it was not called"
                       '.*target one of its submodules'):
        runner.train()
    assert runner.iter == 0
    hook['target_layers'] = ['backbone.layer4', 'decode_head.convs']
    cfg = _short_iter_training(cfg, str(tmp_path / 'work'), 2, hook)
    runner = Runner.from_cfg(cfg)
    runner.train()
    images, scalars = read_tensorboard(osp.join(runner.log_dir, 'vis_data'))
    assert images['featvis/val_0000/decode_head.convs'] == [0, 2]
    assert images['featvis/val_0000/backbone.layer4'] == [0, 2]
    assert 'featvis/val_0000/decode_head.convs/mean' in scalars


def _test_run(cfg: Config, work_dir: str, **hook_options) -> Runner:
    """``tools/test.py`` with the hook: ``runner.test()`` of ``cfg``."""
    hook = dict(type='FeatmapVisHook', interval=1, per_layer=True,
                **hook_options)
    cfg = _short_iter_training(cfg, work_dir, 1, hook)
    runner = Runner.from_cfg(cfg)
    runner.test()
    return runner


def test_faster_rcnn_test_run_draws_its_samples(tmp_path, shapes_coco):
    runner = _test_run(faster_rcnn_cfg(shapes_coco), str(tmp_path),
                       probe=dict(dataset='test', index=0),
                       target_layers=['neck'], test_samples='all',
                       score_thr=0.0)
    vis_dir = osp.join(runner.log_dir, 'vis_data')
    images, _ = read_tensorboard(vis_dir)
    for index in (0, 1):
        assert images[f'featvis/test_{index}/neck_0'] == [0]
        assert images[f'featvis/test_{index}/overview'] == [0]
    picture = cv2.imread(glob.glob(
        osp.join(vis_dir, 'vis_image', 'featvis_test_1_neck_0_0.jpg'))[0])
    assert picture.shape[:2] == (256, 320)  # the original image


def test_fcn_test_run_draws_mask_outlines(tmp_path):
    data = make_shapes_segmentation(str(tmp_path / 'seg'))
    runner = _test_run(fcn_cfg(data), str(tmp_path / 'work'),
                       probe=osp.join(data['data_root'], 'img_dir', 'val',
                                      'val_0000.jpg'),
                       target_layers=['backbone.layer4'], test_samples=[1],
                       image_format='png')
    vis_dir = osp.join(runner.log_dir, 'vis_data')
    images, _ = read_tensorboard(vis_dir)
    assert images['featvis/test_1/backbone.layer4'] == [0]
    assert not any(tag.startswith('featvis/test_0') for tag in images)
    picture = cv2.imread(glob.glob(osp.join(
        vis_dir, 'vis_image', 'featvis_test_1_backbone.layer4_0.png'))[0])
    # Under the map: the image with its mask outlines and, top left, the
    # image's mean IoU on a dark band.
    assert picture[1:8, 2:100].mean() < picture.mean()


def _train_and_validate(cfg: Config, work_dir: str, **hook_options) -> Runner:
    """Two training iterations and a validation after each, on the test
    split, with the hook drawing chosen validation samples."""
    hook = dict(type='FeatmapVisHook', interval=1000, per_layer=True,
                **hook_options)
    cfg = _short_iter_training(cfg, work_dir, 2, hook)
    cfg.train_cfg.val_interval = 1
    cfg.val_dataloader = copy.deepcopy(cfg.test_dataloader)
    cfg.val_cfg = dict(type='ValLoop')
    cfg.val_evaluator = copy.deepcopy(cfg.test_evaluator)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_faster_rcnn_validation_draws_its_samples(tmp_path, shapes_coco):
    runner = _train_and_validate(
        faster_rcnn_cfg(shapes_coco), str(tmp_path),
        probe=dict(dataset='test', index=0), target_layers=['neck'],
        val_samples=[1], before_train=False)
    images, _ = read_tensorboard(osp.join(runner.log_dir, 'vis_data'))
    assert images['featvis/val_1/neck_0'] == [1, 2]
    assert images['featvis/val_1/overview'] == [1, 2]
    assert not any(tag.startswith('featvis/val_0') for tag in images)


def test_fcn_validation_draws_its_samples(tmp_path):
    data = make_shapes_segmentation(str(tmp_path / 'seg'))
    runner = _train_and_validate(
        fcn_cfg(data), str(tmp_path / 'work'),
        probe=osp.join(data['data_root'], 'img_dir', 'val', 'val_0000.jpg'),
        target_layers=['backbone.layer4'], val_samples=2, before_train=False)
    images, _ = read_tensorboard(osp.join(runner.log_dir, 'vis_data'))
    size = len(runner.val_dataloader.dataset)
    last = size - 1  # two samples, evenly spaced: the first and the last
    for index in (0, last):
        assert images[f'featvis/val_{index}/backbone.layer4'] == [1, 2]
