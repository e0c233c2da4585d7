"""DDP with two CPU processes (gloo): rank 0 alone probes and writes."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
from conftest import free_port

from mmfeatvis.testing import make_shapes_dataset, read_tensorboard

# torchrun with two processes per test.
pytestmark = pytest.mark.slow

DIST = osp.join(osp.dirname(osp.abspath(__file__)), 'dist')


def _torchrun(worker: str, *args: str) -> list:
    return [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={free_port()}',
        osp.join(DIST, worker), *args
    ]


def test_ddp_two_processes_no_hang_rank0_writes(tmp_path, probe_image_path):
    shapes = make_shapes_dataset(str(tmp_path / 'data'), num_train=8,
                                 num_val=2)
    work_dir = str(tmp_path / 'work')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    # A hang would be a failure, not a stuck CI: the timeout turns it into
    # an exception.
    done = subprocess.run(
        _torchrun('train_yolo_ddp.py', shapes['data_root'], work_dir,
                  probe_image_path),
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for rank in (0, 1):
        assert (f'rank {rank} finished at iteration 2 with '
                'MMDistributedDataParallel') in done.stdout
    vis_dirs = glob.glob(osp.join(work_dir, '*', 'vis_data'))
    assert len(vis_dirs) == 1
    # One writer: a single event file, each step once.
    assert len(glob.glob(osp.join(vis_dirs[0], 'events.out.*'))) == 1
    images, _ = read_tensorboard(vis_dirs[0])
    assert images['featvis/grace_hopper/overview'] == [0, 1, 2]
    assert images['featvis/grace_hopper/cam/layercam'] == [0, 1, 2]
    files = glob.glob(
        osp.join(vis_dirs[0], 'vis_image', '*grace_hopper_overview*.jpg'))
    assert len(files) == 3
    # The validation samples lie on both ranks (one each); rank 0 gathers
    # them at the end of the validation and writes both.
    assert images['featvis/val_0/overview'] == [2]
    assert images['featvis/val_1/overview'] == [2]


def test_fsdp_all_ranks_probe_rank0_writes(tmp_path, probe_image_path):
    """Sharded parameters: every rank joins the probe pass (else a hang)."""
    work_dir = str(tmp_path / 'work')
    done = subprocess.run(
        _torchrun('train_plain_fsdp.py', work_dir, probe_image_path),
        env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for rank in (0, 1):
        assert (f'rank {rank} finished at iteration 4 with '
                'MMFullyShardedDataParallel') in done.stdout
    vis_dirs = glob.glob(osp.join(work_dir, '*', 'vis_data'))
    assert len(glob.glob(osp.join(vis_dirs[0], 'events.out.*'))) == 1
    images, _ = read_tensorboard(vis_dirs[0])
    assert images['featvis/grace_hopper/tokens'] == [0, 2, 4]
    assert images['featvis/grace_hopper/backbone.0'] == [0, 2, 4]
