"""FeatmapVisHook's CAMs in real Runner trainings of mmyolo's YOLOv5-n:
written beside the maps at every firing, and training is left bitwise as
it would be without them, also with gradients pending between
accumulation steps."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import featvis_hook, yolo_cfg
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from mmfeatvis.testing import (make_shapes_dataset, read_tensorboard,
                               read_tensorboard_image)

# Runner trainings of mmyolo's YOLOv5-n.
pytestmark = pytest.mark.slow

CAM = dict(method='layercam', score_thr=0.0, topk=2)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes_dataset(
        str(tmp_path_factory.mktemp('shapes')), num_train=8, num_val=2)


def test_cams_are_written_beside_the_maps(tmp_path, shapes,
                                          probe_image_path):
    hook = featvis_hook(probe=probe_image_path, interval=2, cam=CAM)
    runner = Runner.from_cfg(yolo_cfg(shapes, str(tmp_path), [hook]))
    runner.train()
    vis_dir = osp.join(runner.log_dir, 'vis_data')
    images, _ = read_tensorboard(vis_dir)
    tag = 'featvis/grace_hopper/cam/layercam'
    assert images[tag] == images['featvis/grace_hopper/overview'] == [0, 2, 4]
    files = sorted(
        glob.glob(
            osp.join(vis_dir, 'vis_image',
                     'featvis_grace_hopper_cam_layercam_*.jpg')))
    assert len(files) == 3
    picture = cv2.imread(files[-1])
    assert np.array_equal(
        read_tensorboard_image(vis_dir, tag, 4).shape, picture.shape)
    # Two titled panels side by side above the colour bar, each at most
    # the probe's size (600x512).
    height, width = picture.shape[:2]
    assert 2 * 512 < width < 2 * 512 + 40 and 600 < height < 700


@HOOKS.register_module(force=True)
class PendingGradsCheck(Hook):
    """Around FeatmapVisHook's after_train_iter (priority LOW): the
    parameters' gradients are snapshotted before and compared after."""

    priority = 'BELOW_NORMAL'  # before FeatmapVisHook

    def __init__(self) -> None:
        self.snapshot = None
        self.compared = 0
        self.pending = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.snapshot = {
            name: None if p.grad is None else p.grad.clone()
            for name, p in runner.model.named_parameters()
        }


@HOOKS.register_module(force=True)
class PendingGradsCompare(Hook):
    priority = 'VERY_LOW'  # after FeatmapVisHook

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        check = next(h for h in runner.hooks
                     if isinstance(h, PendingGradsCheck))
        for name, param in runner.model.named_parameters():
            before = check.snapshot[name]
            if before is None:
                assert param.grad is None, name
            else:
                assert torch.equal(param.grad, before), name
        check.compared += 1
        check.pending += any(
            g is not None and bool(g.abs().sum() > 0)
            for g in check.snapshot.values())


def _trained(shapes, work_dir, hooks):
    cfg = yolo_cfg(shapes, work_dir, hooks, max_epochs=2, batch_size=2)
    # Gradients of odd iterations wait for the next one's step.
    cfg.optim_wrapper.accumulative_counts = 2
    runner = Runner.from_cfg(cfg)
    runner.train()
    state = {k: v.clone() for k, v in runner.model.state_dict().items()}
    for hook in runner.hooks:
        if hasattr(hook, 'ema_model'):
            state.update({
                f'ema.{k}': v.clone()
                for k, v in hook.ema_model.state_dict().items()
            })
    return runner, state


def test_training_with_cams_at_every_iteration_is_bitwise_unchanged(
        tmp_path, shapes, probe_image_path):
    _, without = _trained(shapes, str(tmp_path / 'plain'), [])
    hooks = [
        featvis_hook(probe=probe_image_path, interval=1,
                     cam=dict(CAM, method='gradcam++')),
        dict(type='PendingGradsCheck'),
        dict(type='PendingGradsCompare')
    ]
    runner, with_cams = _trained(shapes, str(tmp_path / 'cam'), hooks)
    check = next(h for h in runner.hooks if isinstance(h, PendingGradsCheck))
    # 8 iterations, a firing after each; half of them with gradients
    # pending for the next step, unchanged by the firing.
    assert check.compared == runner.iter == 8
    assert check.pending >= 4
    images, _ = read_tensorboard(osp.join(runner.log_dir, 'vis_data'))
    assert images['featvis/grace_hopper/cam/gradcampp'] == list(range(9))
    assert without.keys() == with_cams.keys()
    different = [
        k for k in without if not torch.equal(without[k], with_cams[k])
    ]
    assert different == []


def test_bad_cam_options_stop_the_run_before_training(tmp_path, shapes,
                                                      probe_image_path):
    hook = featvis_hook(probe=probe_image_path, cam=dict(method='scorecam'))
    with pytest.raises(ValueError, match="Unknown CAM method 'scorecam'"):
        Runner.from_cfg(yolo_cfg(shapes, str(tmp_path / 'a'), [hook]))
    # A layer the forward pass never runs: named before iteration 0.
    hook = featvis_hook(
        probe=probe_image_path,
        cam=dict(target_layers=['bbox_head.loss_cls']))
    runner = Runner.from_cfg(yolo_cfg(shapes, str(tmp_path / 'b'), [hook]))
    with pytest.raises(ValueError,
                       match='FeatmapVisHook: cam: none of the target'):
        runner.train()
    assert runner.iter == 0
