"""The drawing process: rendering and encoding outside the training process,
with the same pictures, nothing lost when it dies, and Ctrl-C ignored."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import TinyTokenNet, plain_runner
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from mmengine.visualization import Visualizer
from test_write import KeepingVisBackend  # noqa: F401 (registers it)

from mmfeatvis.hooks import FeatmapVisHook
from mmfeatvis.orchestrator import drawing
from mmfeatvis.probe import ProbeBuilder
from mmfeatvis.testing import (read_scalar_log, read_tensorboard,
                               read_tensorboard_image)
from mmfeatvis.write import DrawingProcess, DrawingProcessGone, decode_image


@pytest.fixture
def process():
    drawing = DrawingProcess()
    yield drawing
    drawing.close()


def test_calls_run_in_another_process_at_idle_priority(process):
    child = int(process.call(os.readlink, '/proc/self'))
    assert child == process.pid != os.getpid()
    if hasattr(os, 'SCHED_IDLE'):
        assert os.sched_getscheduler(child) == os.SCHED_IDLE
    # It ignores Ctrl-C, which reaches the whole process group: the
    # training process still needs it to draw what is queued.
    os.kill(child, signal.SIGINT)
    time.sleep(0.2)
    assert process.call(os.readlink, '/proc/self') == str(child)


def test_an_error_there_names_itself_and_the_process_goes_on(process):
    with pytest.raises(RuntimeError, match="ValueError: invalid literal"):
        process.call(int, 'seven')
    assert process.call(int, '7') == 7


def test_a_dead_process_says_so(process):
    process.start()
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(DrawingProcessGone, match='exit status -9'):
        process.call(int, '7')
    assert not process.alive
    with pytest.raises(DrawingProcessGone):
        process.call(int, '7')


def _visualizer(tmp_path, name: str) -> Visualizer:
    return Visualizer(
        name=name,
        vis_backends=[
            dict(type='LocalVisBackend'),
            dict(type='TensorboardVisBackend'),
            dict(type='KeepingVisBackend'),
        ],
        save_dir=str(tmp_path / name))


def _fired(probe_image_path):
    model = TinyTokenNet()
    hook = FeatmapVisHook(probe=probe_image_path, target_layers=['backbone'])
    orchestrator = hook.orchestrator
    orchestrator.resolve(model)
    probe = ProbeBuilder({}).build(probe_image_path, model)[0]
    return orchestrator, orchestrator.fire(model, [probe])


class RecordingProcess(DrawingProcess):
    """A real drawing process that notes, for each firing it is asked to
    draw, which probes came with their image."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_images = []

    def call(self, fn, argument):
        if isinstance(argument, drawing.DrawRequest):
            self.sent_images.append(
                [maps.probe.image is not None for maps in argument.maps])
        return super().call(fn, argument)


def _local_files(tmp_path, name: str) -> dict:
    folder = tmp_path / name / 'vis_data' / 'vis_image'
    return {
        file: (folder / file).read_bytes()
        for file in sorted(os.listdir(folder))
    }


def test_the_process_draws_the_same_bytes_as_the_writer_thread(
        tmp_path, probe_image_path, process):
    orchestrator, maps = _fired(probe_image_path)
    here, there = (_visualizer(tmp_path, name) for name in ('here', 'there'))
    tags = orchestrator.write(here, maps, 3, per_layer=True)
    assert orchestrator.write(
        there, maps, 3, per_layer=True, process=process) == tags
    assert tags == [
        'featvis/grace_hopper/overview', 'featvis/grace_hopper/backbone'
    ]
    local = _local_files(tmp_path, 'there')
    assert local == _local_files(tmp_path, 'here') and len(local) == 2
    # The backend that takes arrays got the pixels from the process.
    kept = here.get_backend('KeepingVisBackend').images
    assert kept.keys() == there.get_backend('KeepingVisBackend').images.keys()
    for visualizer in (here, there):
        visualizer.get_backend('TensorboardVisBackend').close()
    for tag in tags:
        # TensorBoard got the same pictures through the training process.
        theirs = read_tensorboard_image(
            str(tmp_path / 'there' / 'vis_data'), tag, 3)
        assert (theirs == read_tensorboard_image(
            str(tmp_path / 'here' / 'vis_data'), tag, 3)).all()
    overview = decode_image(local['featvis_grace_hopper_overview_3.jpg'])
    assert overview.std() > 20  # a picture, not a blank canvas


def test_the_process_is_sent_each_probe_image_once(
        tmp_path, probe_image_path):
    orchestrator, maps = _fired(probe_image_path)
    process = RecordingProcess()
    here, there = (_visualizer(tmp_path, name) for name in ('here', 'there'))
    try:
        for step in (3, 4, 5):
            orchestrator.write(here, maps, step, per_layer=True)
            orchestrator.write(
                there, maps, step, per_layer=True, process=process)
        assert process.sent_images == [[True], [False], [False]]
        # Drawn on the image it held, the pictures are the same.
        assert _local_files(tmp_path, 'there') == _local_files(
            tmp_path, 'here')
        token = maps[0].probe.token
        assert token in drawing._SENT_IMAGES[process]

        # Where the bookkeeping of the two sides has parted, the process
        # says which image it lacks, and it is sent again.
        model = TinyTokenNet()
        other = orchestrator.fire(
            model, ProbeBuilder({}).build(probe_image_path, model))
        assert other[0].probe.token != token
        drawing._SENT_IMAGES[process].put(other[0].probe.token, True)
        orchestrator.write(here, other, 6, per_layer=False)
        orchestrator.write(there, other, 6, per_layer=False, process=process)
        assert process.sent_images[3:] == [[False], [True]]
        assert _local_files(tmp_path, 'there') == _local_files(
            tmp_path, 'here')
    finally:
        process.close()
        for visualizer in (here, there):
            visualizer.get_backend('TensorboardVisBackend').close()


def test_held_images_keep_each_firings_probes_and_the_latest_others():
    held = drawing.HeldImages(capacity=2)
    for token in 'abc':
        held.put(token, token.upper())
    held.keep_recent(['a'])
    assert 'a' in held and 'c' in held and 'b' not in held
    # A firing of more probes than the capacity keeps them all.
    for token in 'xyz':
        held.put(token, token)
    held.keep_recent(list('xyz'))
    assert len(held) == 3 and held.get('x') == 'x' and held.get('a') is None


def test_the_process_keeps_freed_memory_for_the_next_firing(process):
    # Handed back to the system, a firing's arrays fault in their pages
    # again at the next one.
    assert process.call(os.getenv, 'MALLOC_MMAP_THRESHOLD_') == str(
        64 << 20)
    assert process.call(os.getenv, 'MALLOC_TRIM_THRESHOLD_')


def test_a_dead_process_loses_no_image(tmp_path, probe_image_path,
                                       process):
    orchestrator, maps = _fired(probe_image_path)
    visualizer = _visualizer(tmp_path, 'after_death')
    process.start()
    os.kill(process.pid, signal.SIGKILL)
    tags = orchestrator.write(visualizer, maps, 5, per_layer=False,
                              process=process)
    assert tags == ['featvis/grace_hopper/overview']
    assert list(_local_files(tmp_path, 'after_death')) == [
        'featvis_grace_hopper_overview_5.jpg'
    ]
    # Later firings are drawn in the training process straight away.
    assert orchestrator.write(
        visualizer, maps, 6, per_layer=False, process=process) == tags
    assert len(_local_files(tmp_path, 'after_death')) == 2


def test_a_run_draws_through_the_process_by_default(tmp_path,
                                                    probe_image_path):
    runner = plain_runner(
        str(tmp_path),
        [dict(type='FeatmapVisHook', probe=probe_image_path, interval=1)],
        max_iters=4,
        visualizer=dict(
            type='Visualizer',
            vis_backends=[
                dict(type='LocalVisBackend'),
                dict(type='TensorboardVisBackend'),
                dict(type='KeepingVisBackend')
            ]))
    runner.train()
    # Every backend got every firing's image, in step order.
    kept = runner.visualizer.get_backend('KeepingVisBackend').images
    assert list(kept) == [('featvis/grace_hopper/overview', step)
                          for step in range(5)]
    hook = next(h for h in runner.hooks if isinstance(h, FeatmapVisHook))
    assert hook.draw_process
    images, scalars = read_tensorboard(osp.join(runner.log_dir, 'vis_data'))
    # The overview alone: per-layer images are opt-in.
    assert images == {'featvis/grace_hopper/overview': [0, 1, 2, 3, 4]}
    assert [step for step, _ in scalars['featvis/grace_hopper/backbone/mean']
            ] == [0, 1, 2, 3, 4]
    # The local scalars.json got each firing's statistics once, from the
    # drawing process, beside the Runner's own lines.
    lines = read_scalar_log(osp.join(runner.log_dir, 'vis_data'))
    assert [line['step'] for line in lines
            if 'featvis/grace_hopper/backbone/mean' in line] == [0, 1, 2, 3, 4]
    assert any('loss' in line for line in lines)


def test_it_ends_with_the_training_process():
    """Even in the middle of a call: it holds the training process's
    standard output, which whoever started training may read to the
    end."""
    script = ('import os, sys, threading\n'
              'from mmfeatvis.write import DrawingProcess\n'
              'process = DrawingProcess()\n'
              "process.call(int, '1')\n"
              'print(process.pid, flush=True)\n'
              "threading.Thread(target=process.call, args=(time_sleep, 60),"
              ' daemon=True).start()\n'
              'os._exit(0)\n').replace(
                  'time_sleep', '__import__("time").sleep')
    start = time.monotonic()
    # The output is read to its end: the drawing process holds it too.
    done = subprocess.run([sys.executable, '-c', script],
                          capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 40, 'it outlived its parent'
    child = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and osp.exists(f'/proc/{child}'):
        time.sleep(0.1)
    assert not osp.exists(f'/proc/{child}')


def test_a_detectors_boxes_are_drawn_there_as_here(tmp_path,
                                                   probe_image_path, process):
    orchestrator, maps = _fired(probe_image_path)
    prediction = DetDataSample()
    prediction.pred_instances = InstanceData(
        bboxes=torch.tensor([[40., 60., 300., 420.], [10., 10., 50., 50.]]),
        scores=torch.tensor([0.9, 0.1]),
        labels=torch.tensor([1, 0]))
    maps[0].prediction = prediction

    here, there = (_visualizer(tmp_path, name) for name in ('here', 'there'))
    orchestrator.write(here, maps, 1, per_layer=False)
    orchestrator.write(there, maps, 1, per_layer=False, process=process)
    files = _local_files(tmp_path, 'there')
    assert files == _local_files(tmp_path, 'here') and len(files) == 1
    # The box above the threshold is drawn under the maps.
    boxed = decode_image(next(iter(files.values())))
    maps[0].prediction = None
    orchestrator.write(_visualizer(tmp_path, 'bare'), maps, 1, per_layer=False)
    bare = decode_image(next(iter(_local_files(tmp_path, 'bare').values())))
    changed = np.abs(boxed.astype(int) - bare.astype(int)).sum(-1) > 60
    assert 0.002 < changed.mean() < 0.2
