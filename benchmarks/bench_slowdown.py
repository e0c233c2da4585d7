"""Training slowdown from FeatmapVisHook firings, measured in the loop.

``bench_hook.py`` adds up the parts of one firing, which overstates the
cost when the writer thread finds idle cores; ``bench_train.py`` times whole
Runner runs, whose data loading makes iterations vary by more than a
firing costs. This script measures the slowdown directly, with little
noise: it runs optimiser steps (``mode='loss'`` + SGD) of a model built
from a shipped config, always on the same batch (the probe image repeated
``--batch`` times, one box per image), and every ``--interval`` steps it
does on the training thread what the hook does at a firing (probe pass
with capture, the reductions with the copy to the host queued) and hands
the rest to the hook's own ``BackgroundWriter`` (wait for the copy,
statistics, render, encode, write to local files and TensorBoard), which
runs beside the next steps.

Every step is timed. The steps are lined up by their position after the
firing; the median duration at each position minus the quiet steps (the
second half of the cycle), summed over the cycle, is the cost of one
firing, the writer's competition for the cores included. A run of the
same loop without firings gives the noise floor. The slowdown at interval
50 is ``cost / (50 x step)``.

Example::

    python benchmarks/bench_slowdown.py --models yolov5_n --steps 150 \\
        --json bench_slowdown.json
"""
import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from typing import Callable, List, Optional, Tuple

import torch
from mmengine.optim import OptimWrapper
from mmengine.visualization import Visualizer

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from bench_hook import (MODELS_TO_RUN, _with_boxes, build_model,  # noqa: E402
                        default_probe, load_config)

from mmfeatvis.hooks import FeatmapVisHook  # noqa: E402
from mmfeatvis.probe import ProbeBuilder  # noqa: E402
from mmfeatvis.write import (BackgroundWriter, stat_scalars,  # noqa: E402
                             write_results, write_scalars)

SLOWDOWN_GOAL = 0.0025
GOAL_INTERVAL = 50


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['yolov5_n'],
                        choices=sorted(MODELS_TO_RUN) + ['plain_yolov5s'],
                        help='shipped configs, or plain_yolov5s: '
                        "bench_gpu.py's plain-PyTorch model (no mmcv needed)")
    parser.add_argument('--device', default='cpu',
                        help='device of plain_yolov5s (default cpu)')
    parser.add_argument('--steps', type=int, default=150,
                        help='timed steps per loop (default 150)')
    parser.add_argument('--interval', type=int, default=10,
                        help='steps per firing cycle (default 10)')
    parser.add_argument('--batch', type=int, default=8,
                        help='images per step (default 8)')
    parser.add_argument('--probe', help="probe image (default: matplotlib's"
                        ' grace_hopper.jpg)')
    parser.add_argument('--json', metavar='PATH', help='write results here')
    return parser.parse_args()


def cycle_cost(durations: List[float],
               interval: int) -> Tuple[float, float, List[float]]:
    """(extra seconds per cycle, quiet step seconds, median by position).

    ``durations[i]`` is step ``i``; a firing ends steps ``interval - 1``,
    ``2 * interval - 1``, ..., position 0 of their cycle. The first cycle
    is left out (warm-up).
    """
    by_position: List[List[float]] = [[] for _ in range(interval)]
    for step, seconds in enumerate(durations[interval:], start=interval):
        by_position[(step + 1) % interval].append(seconds)
    medians = [statistics.median(values) for values in by_position]
    quiet = statistics.median(
        [s for values in by_position[interval // 2:] for s in values])
    return sum(medians) - interval * quiet, quiet, medians


def train_loop(step_fn: Callable[[], None], steps: int, interval: int,
               fire: Optional[Callable[[int], None]]) -> List[float]:
    durations = []
    for step in range(steps):
        start = time.perf_counter()
        step_fn()  # ends in a host sync on a GPU (loss.item())
        if fire is not None and (step + 1) % interval == 0:
            fire(step + 1)
        durations.append(time.perf_counter() - start)
    return durations


def openmmlab_setup(name: str, args: argparse.Namespace,
                    probe_path: str) -> tuple:
    """A model built from a shipped config, its probe, the hook's pipeline
    and one optimiser step on the probe batch."""
    package, relative, side = MODELS_TO_RUN[name]
    cfg = load_config(package, relative, side)
    model = build_model(cfg)
    probe = ProbeBuilder(cfg).build(probe_path, model)[0]
    pipeline = FeatmapVisHook(probe=probe_path).pipeline
    pipeline.resolve(model)
    inputs = probe.data['inputs'].repeat(args.batch, 1, 1, 1)
    samples = _with_boxes(probe.model_kwargs()['data_samples'] * args.batch)
    optimizer = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-6))

    def train_step() -> None:
        losses = model(inputs, samples, mode='loss')
        optimizer.update_params(model.parse_losses(losses)[0])

    return model, probe, pipeline, train_step


def plain_gpu_setup(args: argparse.Namespace) -> tuple:
    """``bench_gpu.py``'s plain-PyTorch YOLOv5-s layout (for a GPU machine
    without mmcv): SGD steps on a synthetic loss of its head outputs."""
    import bench_gpu
    model = bench_gpu.PlainYOLOv5s().to(args.device)
    probe = bench_gpu.letterbox_probe(bench_gpu.probe_image(), args.device)
    pipeline = bench_gpu.make_pipeline(model)
    inputs = probe.data['inputs'].repeat(args.batch, 1, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def train_step() -> None:
        outputs = model(inputs)
        loss = sum(out.float().square().mean() for out in outputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # A real loop reads its loss for the logger: one sync per step.
        loss.item()

    return model, probe, pipeline, train_step


def measure(name: str, args: argparse.Namespace, probe_path: str) -> dict:
    if name == 'plain_yolov5s':
        model, probe, pipeline, train_step = plain_gpu_setup(args)
    else:
        model, probe, pipeline, train_step = openmmlab_setup(
            name, args, probe_path)
    visualizer = Visualizer(
        name=f'bench_slowdown_{name}',
        vis_backends=[dict(type='LocalVisBackend'),
                      dict(type='TensorboardVisBackend')],
        save_dir=tempfile.mkdtemp(prefix='bench_slowdown_'))
    writer = BackgroundWriter()

    def write(maps: list, step: int) -> None:
        # FeatmapVisHook._render_and_write, on the writer thread.
        write_scalars(visualizer, stat_scalars(maps), step)
        write_results(visualizer, [pipeline.render(m) for m in maps], step,
                      stats=False)

    def fire(step: int) -> None:
        # FeatmapVisHook._fire, on the training thread.
        captured = pipeline.capture(model, [probe])
        maps = [pipeline.reduce(*item, defer=True) for item in captured]
        del captured
        writer.submit(partial(write, maps, step), f'firing at {step}')

    model.train()
    rows: dict = {}
    # hook, plain, hook, plain: both see the same minutes of the machine.
    for run, with_hook in enumerate((True, False, True, False)):
        durations = train_loop(train_step, args.steps, args.interval,
                               fire if with_hook else None)
        writer.flush()
        cost, quiet, medians = cycle_cost(durations, args.interval)
        key = 'hook' if with_hook else 'plain'
        rows.setdefault(key, []).append((cost, quiet, medians))
        print(f'{name} run {run} {key:<5} cost/cycle {cost * 1000:+7.1f} ms,'
              f' quiet step {quiet * 1000:.1f} ms; median ms by position: '
              + ' '.join(f'{m * 1000:.0f}' for m in medians), flush=True)
    cost = statistics.mean(c for c, _, _ in rows['hook'])
    noise = statistics.mean(c for c, _, _ in rows['plain'])
    step_s = statistics.median(q for _, q, _ in rows['plain'])
    slowdown = cost / (GOAL_INTERVAL * step_s)
    return dict(model=name, device=args.device,
                input=tuple(probe.data['inputs'].shape[-2:]),
                batch=args.batch, step_ms=step_s * 1000,
                firing_cost_ms=cost * 1000, plain_cycle_ms=noise * 1000,
                runs_ms=dict((k, [c * 1000 for c, _, _ in v])
                             for k, v in rows.items()),
                slowdown_at_50=slowdown,
                passed=slowdown <= SLOWDOWN_GOAL)


def main() -> None:
    args = parse_args()
    probe_path = args.probe or default_probe()
    torch.manual_seed(0)
    rows = [measure(name, args, probe_path) for name in args.models]
    print(f'{"model":<12} {"input":>9} {"step ms":>8} {"cost/firing ms":>15}'
          f' {"plain ms":>9} {"slowdown@50":>12} {"goal":>6}')
    for r in rows:
        print(f'{r["model"]:<12} {"x".join(map(str, r["input"])):>9} '
              f'{r["step_ms"]:>8.1f} {r["firing_cost_ms"]:>15.1f} '
              f'{r["plain_cycle_ms"]:>9.1f} {r["slowdown_at_50"] * 100:>11.3f}'
              f'% {"PASS" if r["passed"] else "FAIL":>6}')
    print('cost/firing: extra time per firing cycle (mean of 2 runs); plain:'
          ' the same sum without firings (noise floor); slowdown@50 = '
          'cost / (50 x quiet step).')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(machine=platform.platform(),
                           processor=platform.processor(),
                           torch=torch.__version__, rows=rows), f, indent=2)


if __name__ == '__main__':
    main()
