"""The write stage: one encoding per image for every Visualizer backend."""
import os
import os.path as osp
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import VISBACKENDS
from mmengine.visualization import BaseVisBackend, LocalVisBackend, Visualizer
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import \
    masked_crc32c as python_masked_crc32c

from mmfeatvis.engine_internals import (local_image_dir, masked_crc32c,
                                        use_compiled_crc32c)
from mmfeatvis.hooks import FeatmapVisHook
from mmfeatvis.testing import (read_scalar_log, read_tensorboard,
                               read_tensorboard_image)
from mmfeatvis.write import (BackgroundWriter, add_image, check_image_format,
                             write_scalars)


@VISBACKENDS.register_module(force=True)
class KeepingVisBackend(BaseVisBackend):
    """A third-party style backend: it keeps what it is given."""

    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir)
        self.images = {}

    @property
    def experiment(self):
        return self

    def _init_env(self) -> None:
        pass

    def add_image(self, name, image, step=0, **kwargs) -> None:
        self.images[(name, step)] = image.copy()


@VISBACKENDS.register_module(force=True)
class BmpLocalVisBackend(LocalVisBackend):
    """A user's subclass with its own add_image: it must be called."""

    def add_image(self, name, image, step=0, **kwargs) -> None:
        folder = local_image_dir(self)
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(
            osp.join(folder, f'{name}_{step}.bmp'),
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def heat_image() -> np.ndarray:
    noise = np.random.default_rng(0).integers(0, 255, (120, 160), np.uint8)
    smooth = cv2.GaussianBlur(noise, (21, 21), 0)
    return cv2.cvtColor(cv2.applyColorMap(smooth, cv2.COLORMAP_JET),
                        cv2.COLOR_BGR2RGB)


def make_visualizer(tmp_path, backends: list) -> Visualizer:
    return Visualizer(
        name=f'write_{tmp_path.name}',
        vis_backends=backends,
        save_dir=str(tmp_path))


def test_compiled_crc32c_gives_tensorboards_checksums():
    rng = np.random.default_rng(1)
    for size in (0, 1, 7, 4096, 70_001):
        data = rng.integers(0, 256, size, np.uint8).tobytes()
        assert masked_crc32c(data) == python_masked_crc32c(data), size
    assert use_compiled_crc32c()


@pytest.mark.parametrize('image_format', ['jpg', 'png'])
def test_one_encoding_reaches_local_files_and_tensorboard(
        tmp_path, image_format):
    image = heat_image()
    visualizer = make_visualizer(tmp_path, [
        dict(type='LocalVisBackend'),
        dict(type='TensorboardVisBackend'),
        dict(type='KeepingVisBackend'),
        dict(type='BmpLocalVisBackend', img_save_dir='bmp'),
    ])
    for step in (3, 4):
        add_image(visualizer, 'featvis/dog/neck_0', image, step, image_format)
    visualizer.get_backend('TensorboardVisBackend').close()

    vis_data = str(tmp_path / 'vis_data')  # the Visualizer's sub-folder
    path = osp.join(vis_data, 'vis_image',
                    f'featvis_dog_neck_0_4.{image_format}')
    local = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    # EventAccumulator checks every record's CRC while reading.
    images, _ = read_tensorboard(vis_data)
    assert images['featvis/dog/neck_0'] == [3, 4]
    from_tb = read_tensorboard_image(vis_data, 'featvis/dog/neck_0', 4)
    assert np.array_equal(from_tb, local)
    error = np.abs(local.astype(int) - image.astype(int))
    if image_format == 'png':
        assert error.max() == 0
    else:
        assert 0 < error.mean() < 3
        assert os.path.getsize(path) < image.nbytes / 4
    # Other backends get the tag; a local subclass, a safe file name.
    keeping = visualizer.get_backend('KeepingVisBackend')
    assert np.array_equal(keeping.images[('featvis/dog/neck_0', 4)], image)
    bmp = cv2.imread(osp.join(vis_data, 'bmp', 'featvis_dog_neck_0_4.bmp'))
    assert np.array_equal(bmp[..., ::-1], image)


def test_statistics_reach_tensorboard_and_the_scalar_file(tmp_path):
    visualizer = make_visualizer(tmp_path, [
        dict(type='LocalVisBackend'),
        dict(type='TensorboardVisBackend'),
    ])
    for step in (0, 5):
        write_scalars(visualizer, {
            f'featvis/dog/{layer}/{stat}': step + index / 10
            for index, (layer, stat) in enumerate(
                (layer, stat) for layer in ('neck_0', 'neck_1')
                for stat in ('mean', 'max'))
        }, step)
    visualizer.get_backend('TensorboardVisBackend').close()
    vis_data = str(tmp_path / 'vis_data')
    _, scalars = read_tensorboard(vis_data)
    assert scalars['featvis/dog/neck_1/max'] == [(0, pytest.approx(0.3)),
                                                 (5, pytest.approx(5.3))]
    assert scalars['featvis/dog/neck_0/mean'] == [(0, 0.0), (5, 5.0)]
    # One short line per layer and step in scalars.json.
    lines = read_scalar_log(vis_data)
    assert [sorted(line) for line in lines[:2]] == [
        ['featvis/dog/neck_0/max', 'featvis/dog/neck_0/mean', 'step'],
        ['featvis/dog/neck_1/max', 'featvis/dog/neck_1/mean', 'step'],
    ]
    assert [line['step'] for line in lines] == [0, 0, 5, 5]


def test_unknown_image_format_is_a_configuration_error(probe_image_path):
    with pytest.raises(ValueError, match=r"'gif'.*\('jpg', 'png'\)"):
        check_image_format('gif')
    with pytest.raises(ValueError, match='image_format'):
        FeatmapVisHook(probe=probe_image_path, image_format='gif')


def test_background_writer_reports_failures_and_closes():
    writer = BackgroundWriter()
    done = []
    writer.submit(lambda: done.append(1), 'job 1')

    def fail():
        raise OSError(28, 'No space left on device')

    writer.submit(fail, 'FeatmapVisHook: drawing at step 2')
    writer.submit(lambda: done.append(3), 'job 3')
    assert writer.flush(timeout=30)
    assert done == [1, 3]  # a failed job does not stop the worker
    assert writer.failures == [
        'FeatmapVisHook: drawing at step 2: OSError: [Errno 28] No space '
        'left on device'
    ]
    writer.close()
    assert not writer.alive
    # Closed: a late job runs on the caller's thread, not lost.
    writer.submit(lambda: done.append(4), 'job 4')
    assert done == [1, 3, 4]


def test_background_writer_never_hangs_the_caller():
    writer = BackgroundWriter(max_pending=1, submit_timeout=0.2)
    release = threading.Event()
    writer.submit(lambda: release.wait(10), 'slow job')
    time.sleep(0.1)  # the worker took it
    writer.submit(lambda: None, 'queued job')
    start = time.monotonic()
    writer.submit(lambda: None, 'one too many')  # the queue is full
    assert time.monotonic() - start < 2
    assert writer.failures and 'was dropped' in writer.failures[-1]
    assert not writer.flush(timeout=0.2)  # still busy: no endless wait
    release.set()
    writer.close(timeout=10)
    assert not writer.alive


def test_a_dead_writer_thread_never_hangs_training():
    writer = BackgroundWriter()

    def dies():
        raise SystemExit('the worker thread ends here')

    writer.submit(dies, 'a job that kills the worker')
    deadline = time.monotonic() + 10
    while writer.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not writer.alive
    start = time.monotonic()
    writer.flush(timeout=30)
    assert time.monotonic() - start < 5  # nothing waits for a dead thread
    done = []
    writer.submit(lambda: done.append(1), 'the next firing')
    assert done == [1]  # drawn on the caller's thread instead
    writer.close()


def test_the_writer_thread_leaves_torchs_thread_count_alone():
    from mmfeatvis.reduce.threads import one_intraop_thread
    seen = {}

    @one_intraop_thread
    def small_tensor_work(where):
        seen[where] = torch.get_num_threads()

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small_tensor_work('main')
        worker = threading.Thread(target=small_tensor_work, args=('writer', ))
        worker.start()
        worker.join()
        # One thread for the main thread's small ops; the writer thread
        # changes nothing process-wide (it sees the count as it is).
        assert seen == {'main': 1, 'writer': 2}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(
    'OpenMP' not in torch.__config__.parallel_info(),
    reason='torch built without OpenMP')
def test_one_intraop_thread_changes_only_the_openmp_count():
    """Where torch's intra-op threads are OpenMP's, the small ops' one
    thread is set in the OpenMP runtime itself: ``torch.set_num_threads``
    would also clear oneDNN's convolution cache, which the next training
    step would rebuild. Restored also when the work raises."""
    from mmfeatvis.reduce.threads import _openmp_runtime, one_intraop_thread
    seen = []

    @one_intraop_thread
    def failing_work():
        seen.append(torch.get_num_threads())
        raise RuntimeError('the work failed')

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runtime = _openmp_runtime()
        assert runtime is not None and 'omp' in runtime._name
        with pytest.raises(RuntimeError, match='the work failed'):
            failing_work()
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_scalar_lines_are_those_of_the_local_backend(tmp_path):
    """The drawing process appends the local backend's statistics lines
    itself: they read as mmengine's own ``add_scalars`` writes them."""
    from mmfeatvis.write.images import append_scalar_lines
    scalars = {
        'featvis/dog/neck_0/mean': 0.25,
        'featvis/dog/neck_0/std': 1.5,
        'featvis/dog/neck_1/mean': -3.0,
    }
    backend = LocalVisBackend(str(tmp_path / 'mmengine'))
    for layer in ('neck_0', 'neck_1'):
        backend.add_scalars(
            {k: v for k, v in scalars.items() if f'/{layer}/' in k}, step=7)
    ours = tmp_path / 'ours.json'
    append_scalar_lines(str(ours), scalars, 7)
    theirs = (tmp_path / 'mmengine' / 'scalars.json').read_text()
    assert ours.read_text() == theirs and theirs.count('\n') == 2


def test_a_pure_python_tensorboard_checksum_is_named_once(tmp_path):
    # Without google-crc32c (made unimportable), TensorBoard's writer
    # checksums each event in Python, holding the interpreter lock.
    script = (
        'import sys\n'
        "if sys.argv[2] == 'missing':\n"
        "    sys.modules['google_crc32c'] = None\n"
        'from mmengine.visualization import Visualizer\n'
        'from mmfeatvis.write import prepare_backends\n'
        "v = Visualizer(name='v', save_dir=sys.argv[1],\n"
        "               vis_backends=[dict(type='TensorboardVisBackend')])\n"
        'prepare_backends(v)\n'
        'prepare_backends(v)\n')
    said = {}
    for case in ('missing', 'installed'):
        done = subprocess.run(
            [sys.executable, '-c', script, str(tmp_path / case), case],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        said[case] = done.stdout + done.stderr
    assert said['missing'].count('checksums each event in pure Python') == 1
    assert 'pip install google-crc32c' in said['missing']
    assert 'pure Python' not in said['installed']
