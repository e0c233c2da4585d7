"""The faults a new user meets, tried as the user meets them: a Runner
training with the hook, or the process interrupted from outside, and the
disk full, read-only or failing under one backend."""
import glob
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import plain_runner
from mmengine.registry import VISBACKENDS
from mmengine.visualization import BaseVisBackend
from PIL import Image

from mmfeatvis.hooks import FeatmapVisHook
from mmfeatvis.testing import read_tensorboard

TESTS = osp.dirname(osp.abspath(__file__))
WORKER = osp.join(TESTS, 'faults', 'train_plain.py')


def huge_probe(folder) -> str:
    """A 6000x4000 photo-like image (smooth shapes and noise)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (40, 60, 3), np.uint8)
    image = cv2.resize(small, (6000, 4000), interpolation=cv2.INTER_CUBIC)
    path = osp.join(str(folder), 'huge.jpg')
    cv2.imwrite(path, image)
    return path


def assert_whole(folder: str) -> list:
    """Every file under ``folder`` is a complete image; no temporary file
    is left. Returns the file names."""
    names = sorted(os.listdir(folder))
    assert not [n for n in names if n.endswith('.tmp')], names
    for name in names:
        with Image.open(osp.join(folder, name)) as image:
            image.load()  # raises on a truncated file
    return names


def log_text(runner) -> str:
    return open(glob.glob(osp.join(runner.log_dir, '*.log'))[0]).read()


# -- signals, with the writer thread busy on a huge probe --
def _interrupted(tmp_path, signum: int):
    probe = huge_probe(tmp_path)
    # In a session of its own, so that the signal reaches its whole process
    # group, the hook's drawing process included, as a terminal's Ctrl-C
    # does.
    worker = subprocess.Popen(
        [sys.executable, WORKER, str(tmp_path / 'work'), probe],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    log_dir = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = worker.stdout.readline()
        if line.startswith('log_dir='):
            log_dir = line.strip().split('=', 1)[1]
            break
    assert log_dir, 'the worker did not start'
    images = osp.join(log_dir, 'vis_data', 'vis_image')
    # The first firing is written: the writer is now busy with the next.
    while time.monotonic() < deadline and not (
            osp.isdir(images) and os.listdir(images)):
        time.sleep(0.05)
    assert worker.poll() is None, worker.stderr.read()
    os.killpg(worker.pid, signum)
    try:
        _, stderr = worker.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        _, stderr = worker.communicate()
        raise AssertionError('the run did not end within 240 s of the '
                             f'signal:\n{stderr[-3000:]}')
    return worker.returncode, stderr, images


@pytest.mark.slow
def test_ctrl_c_while_the_writer_is_busy_ends_like_without_the_hook(
        tmp_path):
    code, stderr, images = _interrupted(tmp_path, signal.SIGINT)
    # Python ends an uncaught KeyboardInterrupt by SIGINT, as it would
    # without the hook; no abort from a thread left inside OpenCV.
    assert code == -signal.SIGINT, stderr[-2000:]
    assert 'KeyboardInterrupt' in stderr
    assert 'terminate called' not in stderr
    names = assert_whole(images)
    # The firing that was being written when Ctrl-C came is complete.
    steps = {int(n.rsplit('_', 1)[1].split('.')[0]) for n in names}
    for step in steps:
        assert {f'featvis_huge_{layer}_{step}.jpg'
                for layer in ('backbone', 'tokens', 'overview')} <= set(
                    names), (step, names)


@pytest.mark.slow
def test_sigterm_finishes_the_images_then_ends_like_without_the_hook(
        tmp_path):
    code, stderr, images = _interrupted(tmp_path, signal.SIGTERM)
    assert code == -signal.SIGTERM, stderr[-2000:]
    assert 'terminate called' not in stderr
    names = assert_whole(images)
    assert names


# -- size caps --
@pytest.mark.slow
def test_a_huge_probe_is_drawn_whole_but_capped_once_warned(tmp_path):
    hook = dict(type='FeatmapVisHook', probe=huge_probe(tmp_path),
                target_layers=['backbone'], interval=1, per_layer=True)
    runner = plain_runner(str(tmp_path / 'work'), [hook], max_iters=2)
    runner.train()
    folder = osp.join(runner.log_dir, 'vis_data', 'vis_image')
    for name in assert_whole(folder):
        height, width = cv2.imread(osp.join(folder, name)).shape[:2]
        if 'overview' not in name:
            # The whole 6000x4000 probe, resampled: its aspect is kept.
            assert max(height, width) == 2048, name
            assert abs(width / height - 1.5) < 0.01, name
    assert log_text(runner).count('at most 2048 px') == 1


@pytest.mark.slow
def test_a_top_k_grid_has_no_more_tiles_than_channels(
        tmp_path, probe_image_path):
    hook = dict(type='FeatmapVisHook', probe=probe_image_path,
                target_layers=['backbone'], interval=2,
                channel_reduction=None, topk=10000, arrangement=(100, 100),
                per_layer=True)
    runner = plain_runner(str(tmp_path), [hook], max_iters=2)
    runner.train()
    folder = osp.join(runner.log_dir, 'vis_data', 'vis_image')
    grid = cv2.imread(osp.join(folder, 'featvis_grace_hopper_backbone_2.jpg'))
    # 16 channels: a 4x4 grid of the 600x512 photo, capped at 2048 px.
    assert grid.shape[:2] == (2048, round(2048 * 4 * 512 / (4 * 600)))
    cell_h, cell_w = grid.shape[0] // 4, grid.shape[1] // 4
    for r in range(4):
        for c in range(4):
            cell = grid[r * cell_h + 20:(r + 1) * cell_h - 5,
                        c * cell_w + 5:(c + 1) * cell_w - 5]
            assert cell.std() > 5, (r, c)  # a drawn map, not a blank cell


# -- runs that would never draw stop before the first iteration --
@pytest.mark.parametrize('hook, message', [
    (dict(target_layers=['data_preprocessor']),
     'data preprocessor prepares a batch'),
    (dict(target_layers=['backbone', 'loss_fn']), 'it is a loss'),
    (dict(target_layers=['backbone'], channel_reduction=None, topk=0),
     'needs 1 or 3 channels'),
])
def test_layers_that_would_never_be_drawn_stop_the_run_first(
        tmp_path, probe_image_path, hook, message):
    hook = dict(type='FeatmapVisHook', probe=probe_image_path, **hook)
    runner = plain_runner(str(tmp_path), [hook])
    with pytest.raises(ValueError, match=message):
        runner.train()
    assert runner.iter == 0


def test_a_glob_that_matches_an_unused_layer_only_warns(
        tmp_path, probe_image_path):
    hook = dict(type='FeatmapVisHook', probe=probe_image_path,
                target_layers=['backbone', 'loss*'], interval=2)
    runner = plain_runner(str(tmp_path), [hook], max_iters=2)
    runner.train()
    assert runner.iter == 2
    log = log_text(runner)
    assert log.count("layer 'loss_fn' is not drawn: it was not called") == 1
    images, _ = read_tensorboard(osp.join(runner.log_dir, 'vis_data'))
    assert images['featvis/grace_hopper/overview'] == [0, 2]


def test_by_epoch_with_an_iteration_loop_is_refused(tmp_path,
                                                    probe_image_path):
    hook = dict(type='FeatmapVisHook', probe=probe_image_path,
                by_epoch=True, interval=1)
    runner = plain_runner(str(tmp_path), [hook])
    with pytest.raises(ValueError, match='IterBasedTrainLoop.*by_epoch=False'):
        runner.train()
    assert runner.iter == 0


@pytest.mark.parametrize('kwargs, message', [
    (dict(interval=True), 'interval must be a positive integer'),
    (dict(probe='http://127.0.0.1:9/dog.jpg'),
     "cannot read the probe image 'http://127.0.0.1:9/dog.jpg'"),
    (dict(max_image_side=8), 'max_image_side'),
])
def test_more_bad_configuration_is_named(kwargs, message, probe_image_path):
    kwargs.setdefault('probe', probe_image_path)
    with pytest.raises((ValueError, OSError), match=message):
        FeatmapVisHook(**kwargs)


def test_a_tiny_probe_keeps_its_titles_apart(tmp_path):
    probe = str(tmp_path / 'tiny.png')
    cv2.imwrite(probe, np.random.default_rng(0).integers(
        0, 255, (8, 8, 3), np.uint8))
    hook = dict(type='FeatmapVisHook', probe=probe, interval=2,
                target_layers=['backbone.0', 'backbone.2', 'tokens'],
                per_layer=False)
    runner = plain_runner(str(tmp_path / 'work'), [hook], max_iters=2)
    runner.train()
    overview = cv2.imread(osp.join(runner.log_dir, 'vis_data', 'vis_image',
                                   'featvis_tiny_overview_2.jpg'))
    # Two tiles a row (3 layers), each enlarged to 200 px: the white gap
    # between the two columns of the title band holds no text.
    assert overview.shape[1] == 2 * (200 + 4) + 4
    gap = overview[:30, 200 + 4:200 + 8]
    assert gap.min() > 200


# -- disk faults --
@VISBACKENDS.register_module(force=True)
class BrokenVisBackend(BaseVisBackend):
    """A backend whose every image write fails, as on a full disk."""

    def _init_env(self):
        pass

    @property
    def experiment(self):
        return self

    def add_image(self, name, image, step=0, **kwargs):
        raise OSError(28, 'No space left on device')


def _run_with_backends(tmp_path, probe, backends, max_iters=3):
    hook = dict(type='FeatmapVisHook', probe=probe,
                target_layers=['backbone', 'tokens'], interval=1,
                per_layer=True)
    runner = plain_runner(str(tmp_path / 'work'), [hook],
                          max_iters=max_iters,
                          visualizer=dict(type='Visualizer',
                                          vis_backends=backends))
    runner.train()
    assert runner.iter == max_iters  # training went on
    return runner


def _mount(*args) -> None:
    done = subprocess.run(['mount', *args], capture_output=True, text=True)
    assert done.returncode == 0, (
        f'mount {" ".join(args)} failed ({done.stderr.strip()}): these '
        'tests need root with the right to mount, as in CI')


def test_a_failing_backend_does_not_keep_images_from_the_others(
        tmp_path, probe_image_path):
    runner = _run_with_backends(tmp_path, probe_image_path, [
        dict(type='BrokenVisBackend'),
        dict(type='LocalVisBackend'),
        dict(type='TensorboardVisBackend')
    ])
    vis_data = osp.join(runner.log_dir, 'vis_data')
    images, _ = read_tensorboard(vis_data)
    assert images['featvis/grace_hopper/tokens'] == [0, 1, 2, 3]
    assert len(assert_whole(osp.join(vis_data, 'vis_image'))) == 3 * 4
    log = log_text(runner)
    # Named once, with what was skipped, then counted.
    assert log.count('BrokenVisBackend could not write') == 1
    assert 'No space left on device' in log
    assert 'BrokenVisBackend (OSError28): 12' in log  # every write


def test_a_read_only_local_folder_keeps_tensorboards_images(
        tmp_path, probe_image_path):
    source, read_only = tmp_path / 'source', tmp_path / 'read_only'
    source.mkdir()
    read_only.mkdir()
    _mount('--bind', str(source), str(read_only))
    try:
        _mount('-o', 'remount,ro,bind', str(read_only))
        runner = _run_with_backends(tmp_path, probe_image_path, [
            dict(type='LocalVisBackend', save_dir=str(read_only)),
            dict(type='TensorboardVisBackend',
                 save_dir=str(tmp_path / 'tb'))
        ])
    finally:
        subprocess.run(['umount', str(read_only)], check=True)
    images, _ = read_tensorboard(str(tmp_path / 'tb'))
    assert images['featvis/grace_hopper/overview'] == [0, 1, 2, 3]
    log = log_text(runner)
    assert log.count('LocalVisBackend could not write') == 1
    assert 'Read-only file system' in log
    assert str(read_only) in log  # the warning names where


def test_a_full_disk_leaves_no_truncated_image(tmp_path, probe_image_path):
    disk = tmp_path / 'disk'
    disk.mkdir()
    _mount('-t', 'tmpfs', '-o', 'size=400k', 'tmpfs', str(disk))
    try:
        runner = _run_with_backends(tmp_path, probe_image_path, [
            dict(type='LocalVisBackend', save_dir=str(disk))
        ], max_iters=8)
        names = assert_whole(osp.join(str(disk), 'vis_image'))
        # Some images fitted, the rest failed whole.
        assert 0 < len(names) < 3 * 9
        assert all(osp.getsize(osp.join(str(disk), 'vis_image', n)) > 1000
                   for n in names)
    finally:
        subprocess.run(['umount', str(disk)], check=True)
    log = log_text(runner)
    assert log.count('LocalVisBackend could not write') == 1
    assert 'No space left on device' in log
