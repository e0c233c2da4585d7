"""Time mmengine's Visualizer.draw_featmap against mmfeatvis.draw_featmap.

Both draw the same three YOLOv5-s backbone outputs of a 640x640 input
(128x80x80, 256x40x40, 512x20x20) over a 640x640 RGB image. Calls of the
two implementations alternate, and medians are reported.

Example::

    python benchmarks/bench_draw.py --repeats 5 --json bench.json
"""
import argparse
import json
import platform
import statistics
import time
import warnings
from typing import Callable, Dict, List

import cv2
import numpy as np
import torch
from mmengine.visualization import Visualizer
from timing import alternate

from mmfeatvis import draw_featmap
from mmfeatvis.testing import sample_photo_path

SHAPES = [(128, 80, 80), (256, 40, 40), (512, 20, 20)]
# (name, channel_reduction, topk, goal as mmengine time / ours)
MODES = [('squeeze_mean', 'squeeze_mean', 20, 100.0),
         ('select_max', 'select_max', 20, 100.0), ('topk20', None, 20, 40.0)]
OURS_ONLY = ['pca', 'norm', 'std']
YOLO_CFG = 'mmyolo::yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--repeats', type=int, default=5,
        help='timed calls per implementation, map and mode (default 5)')
    parser.add_argument('--json', metavar='PATH', help='write results here')
    parser.add_argument(
        '--source', choices=['auto', 'random', 'yolov5'], default='auto',
        help='maps: relu(randn) with a seed, or real outputs of a randomly '
        'initialised mmyolo YOLOv5-s backbone on a photo; auto uses '
        'yolov5 if mmyolo is installed (default auto)')
    return parser.parse_args()


def photo_640() -> np.ndarray:
    """A 640x640 RGB photo (matplotlib's sample), or noise without it."""
    try:
        return cv2.cvtColor(
            cv2.resize(cv2.imread(sample_photo_path()), (640, 640)),
            cv2.COLOR_BGR2RGB)
    except (ImportError, cv2.error):
        return np.random.default_rng(0).integers(0, 256, (640, 640, 3),
                                                 np.uint8)


def random_maps() -> List[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=gen).relu() for s in SHAPES]


def yolov5_maps(image: np.ndarray) -> List[torch.Tensor]:
    """Backbone outputs of YOLOv5-s (random init: no weights offline)."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmyolo.registry import MODELS
    from mmyolo.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    from mmfeatvis.cli.inputs import resolve_config
    cfg = Config.fromfile(resolve_config(YOLO_CFG))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmyolo'):
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        return [f[0].contiguous() for f in model.backbone(x)]


def median_time(fn: Callable, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args: argparse.Namespace) -> Dict:
    image = photo_640()
    source = args.source
    if source == 'auto':
        try:
            import mmyolo  # noqa: F401
            source = 'yolov5'
        except ImportError:
            source = 'random'
    maps = yolov5_maps(image) if source == 'yolov5' else random_maps()
    rows = []
    for name, reduction, topk, goal in MODES:
        for featmap in maps:

            def mm():
                return Visualizer.draw_featmap(
                    featmap, image, reduction, topk=topk)

            def ours():
                return draw_featmap(featmap, image, reduction, topk=topk)

            times = alternate(dict(mm=mm, ours=ours), args.repeats)
            t_mm, t_ours = times['mm'], times['ours']
            diff = float(np.abs(mm().astype(float) - ours()).mean())
            rows.append(
                dict(
                    mode=name,
                    shape=list(featmap.shape),
                    mmengine_s=statistics.median(t_mm),
                    ours_s=statistics.median(t_ours),
                    mean_abs_diff=diff,
                    goal=goal))
    extra = []
    for reduction in OURS_ONLY:
        for featmap in maps:
            extra.append(
                dict(
                    mode=reduction,
                    shape=list(featmap.shape),
                    ours_s=median_time(
                        lambda: draw_featmap(featmap, image, reduction),
                        args.repeats)))
    summary = []
    for name, _, _, goal in MODES:
        sel = [r for r in rows if r['mode'] == name]
        total_mm = sum(r['mmengine_s'] for r in sel)
        total_ours = sum(r['ours_s'] for r in sel)
        ratio = total_mm / total_ours
        summary.append(
            dict(
                mode=name,
                mmengine_s=total_mm,
                ours_s=total_ours,
                ratio=ratio,
                min_map_ratio=min(r['mmengine_s'] / r['ours_s'] for r in sel),
                goal=goal,
                passed=ratio >= goal))
    return dict(
        source=source,
        repeats=args.repeats,
        image_hw=[640, 640],
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        opencv=cv2.__version__,
        machine=platform.processor() or platform.machine(),
        per_map=rows,
        per_mode=summary,
        ours_only=extra)


def print_tables(res: Dict) -> None:
    print(f'maps: {res["source"]}, image 640x640, median of '
          f'{res["repeats"]}, torch threads {res["torch_threads"]}')
    head = (f'{"mode":<13}{"featmap":<14}{"mmengine ms":>12}'
            f'{"ours ms":>10}{"ratio":>9}{"mean|diff|":>11}')
    print(head)
    for r in res['per_map']:
        shape = 'x'.join(str(s) for s in r['shape'])
        print(f'{r["mode"]:<13}{shape:<14}{r["mmengine_s"] * 1e3:>12.1f}'
              f'{r["ours_s"] * 1e3:>10.2f}'
              f'{r["mmengine_s"] / r["ours_s"]:>8.0f}x'
              f'{r["mean_abs_diff"]:>11.3f}')
    print()
    print(f'{"mode (3 maps)":<16}{"mmengine ms":>12}{"ours ms":>10}'
          f'{"ratio":>9}{"worst map":>11}{"goal":>7}  result')
    for s in res['per_mode']:
        print(f'{s["mode"]:<16}{s["mmengine_s"] * 1e3:>12.1f}'
              f'{s["ours_s"] * 1e3:>10.2f}{s["ratio"]:>8.0f}x'
              f'{s["min_map_ratio"]:>10.0f}x{s["goal"]:>6.0f}x  '
              f'{"PASS" if s["passed"] else "FAIL"}')
    print()
    print('ours only: ' + ', '.join(
        f'{r["mode"]} {"x".join(map(str, r["shape"]))} '
        f'{r["ours_s"] * 1e3:.2f} ms' for r in res['ours_only']))


def main() -> None:
    args = parse_args()
    if args.repeats < 1:
        raise SystemExit('--repeats must be >= 1')
    with warnings.catch_warnings():
        # mmengine warns on every call that the sizes differ.
        warnings.simplefilter('ignore')
        res = run(args)
    print_tables(res)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(res, f, indent=2)
        print(f'wrote {args.json}')


if __name__ == '__main__':
    main()
