"""The shipped example configs train with the hook as a user runs them."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmfeatvis.testing import make_shapes_dataset, read_tensorboard

# Runner trainings from the shipped example configs.
pytestmark = pytest.mark.slow

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes_dataset(
        str(tmp_path_factory.mktemp('shapes')), num_train=2, num_val=1)


def _on_shapes(cfg: Config, shapes: dict, work_dir: str) -> Config:
    """Point the config's COCO data at the generated set, one short epoch."""
    for split, ann, img in (('train', 'train_ann', 'train_img_dir'),
                            ('val', 'val_ann', 'val_img_dir'),
                            ('test', 'val_ann', 'val_img_dir')):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=2 if split == 'train' else 1, num_workers=0,
                      persistent_workers=False)
        loader.dataset.update(
            data_root=shapes['data_root'], ann_file=shapes[ann],
            data_prefix=dict(img=shapes[img]),
            metainfo=dict(classes=shapes['classes']))
    cfg.val_evaluator.ann_file = shapes['val_ann']
    cfg.test_evaluator.ann_file = shapes['val_ann']
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=10)
    cfg.work_dir = work_dir
    cfg.visualizer.name = f'vis_{id(cfg)}'
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10)
    cfg.custom_hooks[-1].interval = 1
    return cfg


def test_yolov5_s_example_config_uses_the_first_val_image(tmp_path, shapes):
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'featvis',
        'yolov5_s-v61_syncbn_fast_8xb16-300e_coco_featvis.py'))
    assert cfg.custom_hooks[0].type == 'EMAHook'
    assert cfg.custom_hooks[1].probe is None
    cfg = _on_shapes(cfg, shapes, str(tmp_path))
    cfg.model.use_syncbn = False  # no process group on a CPU
    cfg.train_dataloader.dataset.pipeline = cfg.test_pipeline[:-1] + [
        cfg.train_pipeline[-1]]
    cfg.train_dataloader.collate_fn = dict(type='yolov5_collate')
    cfg.val_dataloader.dataset.pop('batch_shapes_cfg', None)
    runner = Runner.from_cfg(cfg)
    runner.train()
    images, scalars = read_tensorboard(
        osp.join(runner.log_dir, 'vis_data'))
    # The first validation image is the probe, named by its file.
    assert images['featvis/000000/overview'] == [0, 1]
    assert 'featvis/000000/neck_2' not in images  # per_layer=False
    assert 'featvis/000000/neck_2/mean' in scalars
    assert 'featvis/000000/backbone_0/mean' in scalars


def test_faster_rcnn_example_config_builds_and_resolves(tmp_path, shapes):
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'featvis', 'faster-rcnn_r50_fpn_1x_coco_featvis.py'))
    cfg = _on_shapes(cfg, shapes, str(tmp_path))
    cfg.model.backbone.init_cfg = None  # no download of ImageNet weights
    runner = Runner.from_cfg(cfg)
    hook = [h for h in runner.hooks
            if type(h).__name__ == 'FeatmapVisHook'][0]
    hook.before_run(runner)
    assert hook.orchestrator.layer_names == [
        'backbone.layer1', 'backbone.layer2', 'backbone.layer3',
        'backbone.layer4', 'neck', 'rpn_head.rpn_conv'
    ]
    assert hook.probes[0].name == '000000'
    assert hook.probes[0].image.shape == (256, 320, 3)
