"""FeatmapVisHook on mmyolo's YOLOv5-n, trained by the Runner on shapes.

The model and pipelines come from mmyolo's shipped config (through
``configs/demo/yolov5_n_shapes.py``); the data is generated.
"""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import featvis_hook, forward_hook_count, yolo_cfg
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, VISBACKENDS
from mmengine.runner import Runner
from mmengine.visualization import BaseVisBackend

from mmfeatvis.testing import (make_shapes_dataset, read_scalar_log,
                               read_tensorboard, read_tensorboard_image)

# Runner trainings of mmyolo's YOLOv5-n.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes_dataset(
        str(tmp_path_factory.mktemp('shapes')), num_train=8, num_val=2)


def vis_dir(runner: Runner) -> str:
    return osp.join(runner.log_dir, 'vis_data')


def test_every_backend_receives_maps_at_training_iterations(
        tmp_path, shapes, probe_image_path):
    hook = featvis_hook(
        probe=[probe_image_path, dict(dataset='val', index=0)],
        interval=2,
        after_val=True,
        per_layer=True)
    cfg = yolo_cfg(shapes, str(tmp_path), [hook])
    cfg.train_cfg.val_interval = 2  # one validation, at the end
    runner = Runner.from_cfg(cfg)
    runner.train()
    images, scalars = read_tensorboard(vis_dir(runner))
    # 2 epochs x 2 iterations: baseline at 0, interval firings at 2 and 4;
    # the validation at 4 and the end of training add no duplicate.
    for probe in ('grace_hopper', '000000'):
        assert images[f'featvis/{probe}/overview'] == [0, 2, 4]
        for level in range(3):
            assert images[f'featvis/{probe}/backbone_{level}'] == [0, 2, 4]
            assert images[f'featvis/{probe}/neck_{level}'] == [0, 2, 4]
    # The steps are training iterations: they line up with the loss curve.
    loss_steps = [step for step, _ in scalars['loss']]
    assert {2, 4} <= set(loss_steps)
    assert [s for s, _ in scalars['featvis/grace_hopper/neck_0/mean']] == [
        0, 2, 4
    ]
    # Local JPEG files, one per name and step, sized as the original photo.
    photo = cv2.imread(
        osp.join(vis_dir(runner), 'vis_image',
                 'featvis_grace_hopper_backbone_2_4.jpg'))
    assert photo.shape[:2] == (600, 512)
    from_tb = read_tensorboard_image(vis_dir(runner),
                                     'featvis/grace_hopper/backbone_2', 4)
    # The image is encoded once: TensorBoard holds the same bytes.
    assert np.array_equal(from_tb, photo[..., ::-1])
    # Statistics also reach the local scalar file.
    logged = [r for r in read_scalar_log(vis_dir(runner))
              if 'featvis/000000/backbone_0/max' in r]
    assert [r['step'] for r in logged] == [0, 2, 4]
    assert all(0 <= r['featvis/000000/backbone_0/nonpos_ratio'] <= 1
               for r in logged)


def test_maps_are_aligned_with_the_letterboxed_image(
        tmp_path, shapes, probe_image_path):
    """Letterbox padding is cut away: no padding band shows on the photo."""
    hook = featvis_hook(probe=probe_image_path, target_layers=['backbone'],
                        channel_reduction='squeeze_mean', alpha=1.0,
                        before_train=True, value_range='per_image',
                        image_format='png', per_layer=True)
    cfg = yolo_cfg(shapes, str(tmp_path), [hook], max_epochs=1)
    cfg.train_cfg.max_epochs = 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    # A 600x512 photo is letterboxed to 320x320 with 22-pixel bands left
    # and right. Padding is constant grey, so its features are flat; had the
    # padded map been stretched over the photo, the outer columns would be a
    # flat band. Here every column carries the photo's structure.
    image = cv2.imread(
        osp.join(vis_dir(runner), 'vis_image',
                 'featvis_grace_hopper_backbone_0_0.png'))
    assert image.shape[:2] == (600, 512)
    column_spread = image.astype(float).std(axis=0).mean(axis=1)
    assert column_spread[:15].min() > 3 and column_spread[-15:].min() > 3


@HOOKS.register_module(force=True)
class NoForeignHooksCheck(Hook):
    """Asserts, around every iteration, that no forward hook is attached."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.checked = 0

    def _check(self, runner) -> None:
        model = runner.model
        attached = forward_hook_count(model)
        assert attached == 0, f'{attached} forward hooks left on the model'
        self.checked += 1

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._check(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self._check(runner)


def _train_weights(shapes, work_dir, hooks) -> dict:
    cfg = yolo_cfg(shapes, work_dir, hooks, max_epochs=2)
    runner = Runner.from_cfg(cfg)
    runner.train()
    state = {f'model.{k}': v.clone() for k, v in runner.model.state_dict()
             .items()}
    for hook in runner.hooks:
        if hasattr(hook, 'ema_model'):
            state.update({f'ema.{k}': v.clone()
                          for k, v in hook.ema_model.state_dict().items()})
    return state


def test_training_is_bitwise_identical_with_the_hook(tmp_path, shapes,
                                                     probe_image_path):
    without = _train_weights(shapes, str(tmp_path / 'plain'), [])
    hooks = [
        featvis_hook(probe=probe_image_path, interval=1,
                     channel_reduction='pca', draw_pred=True),
        dict(type='NoForeignHooksCheck')
    ]
    with_hook = _train_weights(shapes, str(tmp_path / 'featvis'), hooks)
    assert without.keys() == with_hook.keys()
    assert any('running_mean' in k for k in without)
    different = [k for k in without if not torch.equal(without[k],
                                                       with_hook[k])]
    assert different == []


@VISBACKENDS.register_module(force=True)
class FullDiskVisBackend(BaseVisBackend):
    """A backend whose disk is full: every image write fails."""

    @property
    def experiment(self):
        return self

    def _init_env(self):
        pass

    def add_image(self, name, image, step=0, **kwargs):
        raise OSError(28, 'No space left on device')


def test_write_failures_become_warnings(tmp_path, shapes, probe_image_path):
    hook = featvis_hook(probe=probe_image_path, interval=1)
    cfg = yolo_cfg(shapes, str(tmp_path), [hook], max_epochs=1)
    cfg.visualizer.vis_backends = [dict(type='FullDiskVisBackend',
                                        save_dir=str(tmp_path))]
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2  # training finished
    log = open(glob.glob(osp.join(runner.log_dir, '*.log'))[0]).read()
    # Named once, with what was skipped; the rest counted at the end.
    assert log.count('FullDiskVisBackend could not write') == 1
    assert "image 'featvis/grace_hopper/" in log
    assert 'No space left on device' in log
    assert 'image writes that failed: FullDiskVisBackend (OSError28)' in log


def test_by_epoch_and_resume_continue_the_numbering(tmp_path, shapes,
                                                    probe_image_path,
                                                    monkeypatch):
    # mmengine 0.10.7 resumes with a bare torch.load, which torch >= 2.6
    # restricts to weights; its resume checkpoints hold more (README).
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    # 'first' keeps its ranges for good, so the resumed run must draw on
    # exactly the saved ones.
    hook = featvis_hook(probe=probe_image_path, interval=1, by_epoch=True,
                        target_layers=['backbone.stage4'],
                        value_range='first')
    cfg = yolo_cfg(shapes, str(tmp_path), [hook], max_epochs=2)
    runner = Runner.from_cfg(cfg)
    runner.train()
    images, _ = read_tensorboard(vis_dir(runner))
    assert images['featvis/grace_hopper/overview'] == [0, 2, 4]
    checkpoint = torch.load(osp.join(str(tmp_path), 'epoch_2.pth'),
                            weights_only=False)
    saved_ranges = checkpoint['meta']['featvis_value_ranges']
    assert saved_ranges

    cfg = yolo_cfg(shapes, str(tmp_path), [hook], max_epochs=3)
    cfg.resume = True
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    images, _ = read_tensorboard(vis_dir(resumed))
    # The resumed run starts at iteration 4 and goes on from there.
    assert images['featvis/grace_hopper/overview'] == [4, 6]
    featvis = [h for h in resumed.hooks if type(h).__name__ ==
               'FeatmapVisHook'][0]
    assert featvis.range_tracker.state_dict() == saved_ranges
