"""Are the hook's pictures readable at every firing? One value-range option
against another, in the two regimes users have.

For each ``--modes`` option and each regime, mmengine's Runner trains
mmyolo's YOLOv5-n (the demo config) on the generated shapes for
``--iters`` iterations with ``FeatmapVisHook`` firing every ``--interval``
(the defaults except ``alpha=1``, colormap jet, ``draw_pred=False``,
``per_layer=True`` and ``image_format='png'``, so that every pixel's
level on the colour scale can be read back exactly). Every per-layer
image is then measured (:func:`mmfeatvis.testing.readability`): the
share of pixels at either end of the scale, and the spread of levels of
the middle 90% of pixels (a flat picture has almost none).

Regimes: ``scratch`` starts from random weights (activations grow by
orders of magnitude in the first iterations); ``finetune`` loads
``--checkpoint`` (the demo's trained ``epoch_10.pth``), where the scale is
stable.

Example::

    python benchmarks/bench_readability.py \\
        --checkpoint work_dirs/demo/epoch_10.pth --json readability.json
"""
import argparse
import glob
import os.path as osp
import re
import sys
import tempfile
from collections import defaultdict
from typing import Dict, List

import cv2
import torch
from mmengine.config import Config
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from results_json import write_rows  # noqa: E402

from mmfeatvis.testing import (make_shapes_dataset, readability,  # noqa: E402
                               shapes_cfg_options)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'yolov5_n_shapes.py')
MODES = ('adaptive', 'first', 'running', 'per_image')
#: The goal: at most this share of a picture's pixels at the ends.
MAX_SATURATED = 0.15


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--modes', nargs='+', default=list(MODES))
    parser.add_argument('--regimes', nargs='+',
                        default=['scratch', 'finetune'])
    parser.add_argument('--checkpoint',
                        default='work_dirs/demo/epoch_10.pth',
                        help='Trained weights for the finetune regime.')
    parser.add_argument('--data', default=None,
                        help='Shapes data set; generated when absent.')
    parser.add_argument('--iters', type=int, default=40)
    parser.add_argument('--interval', type=int, default=10)
    parser.add_argument('--json', default=None)
    return parser.parse_args()


def train_cfg(data_root: str, work_dir: str, value_range: str,
              iters: int, interval: int, load_from: str = None) -> Config:
    """The demo config on ``data_root``, ``iters`` iterations with the
    hook set for measuring."""
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.merge_from_dict(shapes_cfg_options(data_root))
    batches = len(glob.glob(osp.join(data_root, 'train', '*'))) // (
        cfg.train_dataloader.batch_size)
    epochs = -(-iters // batches)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs,
                         val_interval=10**6)
    cfg.default_hooks.param_scheduler.max_epochs = epochs
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=10**6)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.visualizer.name = f'readability_{osp.basename(work_dir)}'
    cfg.custom_imports = dict(imports=['mmfeatvis'],
                              allow_failed_imports=False)
    cfg.custom_hooks = list(cfg.custom_hooks) + [
        dict(type='FeatmapVisHook', target_layers=['backbone', 'neck'],
             interval=interval, value_range=value_range, alpha=1.0,
             colormap='jet', draw_pred=False, image_format='png',
             per_layer=True, overview=False, with_stats=False)
    ]
    cfg.work_dir = work_dir
    cfg.load_from = load_from
    cfg.randomness = dict(seed=0)
    return cfg


def weights_only_copy(checkpoint: str, folder: str) -> str:
    """The weights of a Runner's checkpoint in a file that torch's default
    ``weights_only`` load (which mmengine's ``load_from`` uses) accepts:
    the Runner also pickles its message hub."""
    if not osp.isfile(checkpoint):
        sys.exit(f'--checkpoint {checkpoint!r} does not exist; run `make '
                 'demo` first.')
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    path = osp.join(folder, 'weights.pth')
    torch.save(dict(state_dict=state['state_dict']), path)
    return path


def measure_run(vis_image_dir: str) -> List[dict]:
    """Readability of every per-layer image a run wrote."""
    rows = []
    for path in sorted(glob.glob(osp.join(vis_image_dir, '*.png'))):
        name, step = re.match(r'(.+)_(\d+)\.png$', osp.basename(path)).groups()
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        measured = readability(image)
        rows.append(dict(image=name, step=int(step), low=measured.low,
                         high=measured.high, spread=measured.spread,
                         flat=measured.flat()))
    return rows


def summarise(rows: List[dict]) -> Dict[str, object]:
    worst = max(rows, key=lambda r: max(r['low'], r['high']))
    by_step = defaultdict(list)
    for row in rows:
        by_step[row['step']].append(max(row['low'], row['high']))
    return dict(
        images=len(rows),
        worst_end=round(max(worst['low'], worst['high']), 4),
        worst_image=f"{worst['image']}@{worst['step']}",
        failing=sum(
            max(r['low'], r['high']) > MAX_SATURATED or r['flat']
            for r in rows),
        flat=sum(r['flat'] for r in rows),
        min_spread=min(r['spread'] for r in rows),
        worst_end_by_step={s: round(max(v), 3)
                           for s, v in sorted(by_step.items())})


def main() -> None:
    args = parse_args()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = osp.join(tmp, 'data')
            make_shapes_dataset(data, num_train=128, num_val=8)
        for regime in args.regimes:
            load_from = None
            if regime == 'finetune':
                load_from = weights_only_copy(args.checkpoint, tmp)
            for mode in args.modes:
                work_dir = osp.join(tmp, f'{regime}_{mode}')
                runner = Runner.from_cfg(
                    train_cfg(data, work_dir, mode, args.iters,
                              args.interval, load_from))
                runner.train()
                rows = measure_run(
                    osp.join(runner.log_dir, 'vis_data', 'vis_image'))
                summary = dict(regime=regime, mode=mode, **summarise(rows))
                print(summary, flush=True)
                out.append(dict(summary, per_image=rows))
    print('\nregime    mode       images  worst end  failing  flat  '
          'min spread')
    for row in out:
        print(f"{row['regime']:9} {row['mode']:10} {row['images']:6}  "
              f"{row['worst_end']:9.3f}  {row['failing']:7}  "
              f"{row['flat']:4}  {row['min_spread']:10}")
    if args.json:
        write_rows(args.json, out)


if __name__ == '__main__':
    main()
