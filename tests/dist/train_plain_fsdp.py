"""Worker for the FSDP test: ``torchrun --nproc_per_node 2 ...``.

mmengine's ``FlexibleRunner`` with ``FSDPStrategy`` shards the plain
model's parameters on the CPU (gloo); every rank must run the probe through
the wrapper so that the parameters are gathered, and rank 0 alone writes.
"""
import argparse
import os.path as osp
import sys

import torch
import torch.distributed as dist
from mmengine.runner import FlexibleRunner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import conftest  # noqa: E402,F401  (registers the model)

from report import train_and_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('work_dir')
    parser.add_argument('probe')
    args = parser.parse_args()
    dist.init_process_group('gloo')
    hook = dict(type='FeatmapVisHook', probe=args.probe,
                target_layers=['backbone.*', 'tokens'], interval=2,
                per_layer=True)
    runner = FlexibleRunner(
        model=dict(type='TinyTokenNet'),
        work_dir=args.work_dir,
        strategy=dict(
            type='FSDPStrategy',
            model_wrapper=dict(type='MMFullyShardedDataParallel',
                               device_id=torch.device('cpu'))),
        train_dataloader=dict(
            dataset=dict(type='RandomImages'),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=4),
        custom_hooks=[hook],
        visualizer=dict(type='Visualizer',
                        vis_backends=[dict(type='TensorboardVisBackend')]),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=100)),
        launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        default_scope='mmengine')
    train_and_report(runner)


if __name__ == '__main__':
    main()
