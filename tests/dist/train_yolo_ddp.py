"""Worker for the DDP test: ``torchrun --nproc_per_node 2 train_yolo_ddp.py``.

mmengine's own ``init_dist`` asks for a CUDA device, so the gloo process
group is started here, before the Runner is built; the Runner then finds it
and wraps the model in ``MMDistributedDataParallel`` on the CPU.
"""
import argparse
import os
import os.path as osp
import sys

import torch.distributed as dist
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from conftest import featvis_hook, yolo_cfg  # noqa: E402

from report import train_and_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('data_root')
    parser.add_argument('work_dir')
    parser.add_argument('probe')
    args = parser.parse_args()
    dist.init_process_group('gloo')
    shapes = dict(
        data_root=args.data_root,
        val_ann=osp.join(args.data_root, 'annotations', 'val.json'))
    # Both validation samples: under DDP each rank holds one of them. The
    # CAMs take gradients on rank 0 alone, outside DDP's reducer.
    hook = featvis_hook(probe=args.probe, interval=1, val_samples='all',
                        cam=dict(method='layercam', score_thr=0.0, topk=2))
    cfg = yolo_cfg(shapes, args.work_dir, [hook], max_epochs=1,
                   batch_size=2)
    cfg.train_cfg.val_interval = 1
    cfg.val_dataloader.batch_size = 1
    cfg.launcher = 'pytorch'
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel',
                                 device_ids=None)
    cfg.env_cfg = dict(dist_cfg=dict(backend='gloo'))
    train_and_report(Runner.from_cfg(cfg))


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    main()
