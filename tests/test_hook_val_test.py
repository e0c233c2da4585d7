"""FeatmapVisHook in validation and test: chosen samples drawn from the
loop's own forward, and the probe in ``runner.val()``/``runner.test()``
runs, on mmyolo's YOLOv5-n trained by the Runner on generated shapes."""
import glob
import os.path as osp

import cv2
import pytest
import torch
from conftest import featvis_hook, forward_hook_count, yolo_cfg
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from mmfeatvis.engine_internals import built_loop
from mmfeatvis.testing import make_shapes_dataset, read_tensorboard

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes_dataset(
        str(tmp_path_factory.mktemp('shapes')), num_train=8, num_val=4)


@HOOKS.register_module(force=True)
class ValForwardWatch(Hook):
    """Runs after FeatmapVisHook: counts the model's forward passes in
    each validation iteration and the forward hooks on it then."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.forwards = 0
        self.hooks_per_iter = []
        self.hooks_after_val = []
        self._handle = None

    def before_val_epoch(self, runner) -> None:
        model = runner.model

        def count(module, args) -> None:
            self.forwards += 1

        self._handle = model.backbone.register_forward_pre_hook(count)

    def before_val_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.hooks_per_iter.append(self._attached(runner))

    def after_val(self, runner) -> None:
        self._handle.remove()
        self.hooks_after_val.append(self._attached(runner))

    @staticmethod
    def _attached(runner) -> int:
        return forward_hook_count(runner.model)


def _val_cfg(shapes, work_dir, **hook_options):
    watch = dict(type='ValForwardWatch')
    cfg = yolo_cfg(
        shapes, work_dir,
        [featvis_hook(interval=1000, async_write=False, per_layer=True,
                      **hook_options),
         watch], max_epochs=2)
    cfg.train_cfg.val_interval = 1
    cfg.val_dataloader.batch_size = 1
    return cfg


def _watch(runner) -> ValForwardWatch:
    return next(h for h in runner.hooks if isinstance(h, ValForwardWatch))


def test_val_samples_come_from_the_loops_own_forward(tmp_path, shapes):
    runner = Runner.from_cfg(_val_cfg(shapes, str(tmp_path),
                                      val_samples=[0, 3]))
    runner.train()
    watch = _watch(runner)
    # Two validations of 4 batches: one forward each, none added.
    assert watch.forwards == 8
    # Hooks only while a batch holding sample 0 or 3 runs, gone after.
    attached = [n > 0 for n in watch.hooks_per_iter]
    assert attached == [True, False, False, True] * 2
    assert watch.hooks_after_val == [0, 0]
    vis_dir = osp.join(runner.log_dir, 'vis_data')
    images, _ = read_tensorboard(vis_dir)
    steps = [2, 4]  # 8 images at batch 4: 2 iterations an epoch
    for sample in ('val_0', 'val_3'):
        assert images[f'featvis/{sample}/overview'] == steps
        assert images[f'featvis/{sample}/neck_2'] == steps
    assert not any(tag.startswith('featvis/val_1') for tag in images)
    # Over the original 320x256 image, with the errors drawn on it.
    full = cv2.imread(
        glob.glob(osp.join(vis_dir, 'vis_image',
                           'featvis_val_3_neck_0_4.jpg'))[0])
    assert full.shape[:2] == (256, 320)
    # The caption's dark band, top left, holds the image's metric.
    assert full[1:8, 2:120].mean() < full.mean()


def test_val_samples_count_is_spread_evenly_and_checked(tmp_path, shapes):
    from mmfeatvis.orchestrator import check_sample_spec, chosen_indices
    assert chosen_indices('val_samples', 3, 10) == [0, 4, 9]
    assert chosen_indices('val_samples', 20, 4) == [0, 1, 2, 3]
    assert chosen_indices('val_samples', 'all', 3) == [0, 1, 2]
    for bad in (0, -1, True, [1.5], ['a'], 'some', []):
        with pytest.raises(ValueError, match='val_samples'):
            check_sample_spec('val_samples', bad)
    # An index beyond the validation set stops the run before training.
    runner = Runner.from_cfg(_val_cfg(shapes, str(tmp_path),
                                      val_samples=[1, 9]))
    with pytest.raises(ValueError, match=r'4 samples .*no sample 9'):
        runner.train()
    assert runner.iter == 0


@pytest.fixture(scope='module')
def trained(tmp_path_factory, shapes):
    """A checkpoint of two short epochs (iteration 4)."""
    work_dir = str(tmp_path_factory.mktemp('trained'))
    cfg = yolo_cfg(shapes, work_dir, [], max_epochs=2)
    Runner.from_cfg(cfg).train()
    checkpoint = osp.join(work_dir, 'epoch_2.pth')
    assert torch.load(checkpoint, weights_only=False)['meta']['iter'] == 4
    return checkpoint


def _eval_runner(shapes, work_dir, checkpoint, **hook_options) -> Runner:
    # mmengine 0.10 loads load_from with torch.load's default, which torch
    # >= 2.6 makes weights_only; a Runner's own checkpoints need the full
    # unpickler (README: troubleshooting).
    cfg = yolo_cfg(shapes, work_dir,
                   [featvis_hook(interval=1, **hook_options)])
    cfg.load_from = checkpoint
    return Runner.from_cfg(cfg)


def test_test_run_draws_the_probe_and_every_sample(tmp_path, shapes,
                                                   trained, monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    runner = _eval_runner(shapes, str(tmp_path), trained,
                          test_samples='all',
                          cam=dict(method='hirescam', score_thr=0.0))
    runner.test()
    images, _ = read_tensorboard(osp.join(runner.log_dir, 'vis_data'))
    probe = [t for t in images if t.endswith('/overview')
             and not t.startswith('featvis/test_')]
    # The probe once, at the checkpoint's iteration, with its CAMs (the
    # test loop's no_grad does not reach them).
    assert len(probe) == 1 and images[probe[0]] == [4]
    cam = probe[0].replace('/overview', '/cam/hirescam')
    assert images[cam] == [4]
    for index in range(4):
        assert images[f'featvis/test_{index}/overview'] == [4]
    # A test run never builds the training loop (its data set).
    assert built_loop(runner, 'train') is None


def test_validation_run_draws_the_probe_once(tmp_path, shapes, trained,
                                             monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    runner = _eval_runner(shapes, str(tmp_path), trained)
    runner.val()
    images, _ = read_tensorboard(osp.join(runner.log_dir, 'vis_data'))
    overviews = [t for t in images if t.endswith('/overview')]
    assert len(overviews) == 1 and images[overviews[0]] == [4]
    assert built_loop(runner, 'train') is None
