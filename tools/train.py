"""Train a model from an mmengine config, as OpenMMLab's tools/train.py does.

Example::

    python tools/train.py configs/demo/yolov5_n_shapes_featvis.py \
        --work-dir work_dirs/demo --cfg-options custom_hooks.1.interval=20
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--resume', action='store_true',
                        help='resume from the latest checkpoint in work-dir')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings in the config, key=value pairs')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.config):
        print(f'error: config {args.config!r} does not exist',
              file=sys.stderr)
        return 2
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.resume:
        cfg.resume = True
    Runner.from_cfg(cfg).train()
    return 0


if __name__ == '__main__':
    sys.exit(main())
