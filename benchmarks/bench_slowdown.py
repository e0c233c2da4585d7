"""Training slowdown from FeatmapVisHook firings, measured in the loop.

``bench_hook.py`` adds up the parts of one firing, which overstates the
cost when the writer thread finds idle cores. This script measures the
slowdown itself: it runs optimiser steps (``mode='loss'`` + SGD) of a model
built from a shipped config, always on the same batch (the probe image
repeated ``--batch`` times, one box per image), and at a firing it does on
the training thread what the hook does (probe pass with capture, the
reductions with the copy to the host queued) and hands the rest to the
hook's own ``BackgroundWriter`` (wait for the copy, statistics, render,
encode, write to local files and TensorBoard), which runs beside the next
steps.

The steps come in short cycles of ``--cycle`` steps, in pairs: one cycle
fires after its first step, the other does not, and the order within a pair
alternates. A cycle's time ends when the writer is idle again, so writer
work left over is counted in full. The cost of one firing is the median,
over ``--pairs`` pairs, of (cycle with firing - cycle without): a shared
machine's drift, which moves whole minutes by several per cent, cancels in
each pair. The slowdown at interval 50 is ``cost / (50 x step)``; its error
is estimated from the spread of the pair differences.

Example::

    python benchmarks/bench_slowdown.py --models yolov5_n --batch 16 \\
        --pairs 40 --json bench_slowdown.json
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time
from functools import partial
from typing import Callable, List, Optional, Tuple

import cv2
import torch
from mmengine.optim import OptimWrapper
from mmengine.visualization import Visualizer

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from bench_hook import (MODELS_TO_RUN, _with_boxes, build_model,  # noqa: E402
                        default_probe, load_config)
from results_json import write_rows  # noqa: E402

from mmfeatvis.hooks import FeatmapVisHook  # noqa: E402
from mmfeatvis.probe import ProbeBuilder  # noqa: E402
from mmfeatvis.write import BackgroundWriter, prepare_backends  # noqa: E402

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
    parser.add_argument('--pairs', type=int, default=40,
                        help='pairs of cycles, with and without a firing '
                        '(default 40)')
    parser.add_argument('--cycle', type=int, default=5,
                        help='steps per cycle (default 5)')
    parser.add_argument('--batch', type=int, default=8,
                        help='images per step (default 8)')
    parser.add_argument('--probe', help="probe image (default: matplotlib's"
                        ' grace_hopper.jpg)')
    parser.add_argument('--write', choices=('background', 'inline'),
                        default='background',
                        help="where a firing's drawing and writing runs: the "
                        "hook's BackgroundWriter (async_write=True, the "
                        'default) or the training thread (async_write=False)')
    parser.add_argument('--value-range', default='adaptive',
                        help="the hook's value_range (default: its default)")
    parser.add_argument('--json', metavar='PATH', help='write results here')
    return parser.parse_args()


def timed_cycle(step_fn: Callable[[], None], steps: int,
                fire: Optional[Callable[[], None]],
                writer: BackgroundWriter) -> Tuple[float, float]:
    """(seconds of the whole cycle, seconds of its last step).

    ``fire`` runs after the first step, as ``after_train_iter`` would; the
    cycle ends when the writer has finished.
    """
    start = time.perf_counter()
    for step in range(steps):
        step_start = time.perf_counter()
        step_fn()  # ends in a host sync on a GPU (loss.item())
        if step == 0 and fire is not None:
            fire()
    last = time.perf_counter() - step_start
    writer.flush()
    return time.perf_counter() - start, last


def paired_cost(step_fn: Callable[[], None], fire: Callable[[], None],
                writer: BackgroundWriter, pairs: int,
                cycle: int) -> Tuple[List[float], List[float]]:
    """Differences (with - without firing) per pair, and quiet steps."""
    differences, quiet_steps = [], []
    for pair in range(pairs):
        times = {}
        # Alternate the order, so that a steady drift favours neither.
        for with_firing in ((True, False) if pair % 2 else (False, True)):
            times[with_firing], last = timed_cycle(
                step_fn, cycle, fire if with_firing else None, writer)
            if not with_firing:
                quiet_steps.append(last)
        differences.append(times[True] - times[False])
    return differences, quiet_steps


def openmmlab_setup(name: str, args: argparse.Namespace,
                    probe_path: str) -> tuple:
    """A model built from a shipped config, its probe, the hook's pipeline
    and one optimiser step on the probe batch."""
    package, relative, side = MODELS_TO_RUN[name]
    cfg = load_config(package, relative, side)
    model = build_model(cfg)
    probe = ProbeBuilder(cfg).build(probe_path, model)[0]
    pipeline = FeatmapVisHook(probe=probe_path,
                              value_range=args.value_range).orchestrator
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
    prepare_backends(visualizer)  # as the hook's before_run
    writer = BackgroundWriter()

    def write(maps: list, step: int) -> None:
        # FeatmapVisHook._write, on the writer thread.
        pipeline.write(visualizer, maps, step)

    step = [0]

    def fire() -> None:
        # FeatmapVisHook._fire, on the training thread.
        step[0] += 1
        maps = pipeline.fire(model, [probe], defer=True)
        job = partial(write, maps, step[0])
        if args.write == 'inline':
            job()
        else:
            writer.submit(job, f'firing {step[0]}')

    model.train()
    # Warm-up: the first firings measure value ranges (and, on a GPU,
    # record the reductions' graph).
    paired_cost(train_step, fire, writer, 2, args.cycle)
    differences, quiet_steps = paired_cost(train_step, fire, writer,
                                           args.pairs, args.cycle)
    cost = statistics.median(differences)
    # Standard error of a median: about 1.25 x that of the mean.
    error = 1.25 * statistics.stdev(differences) / len(differences)**0.5
    step_s = statistics.median(quiet_steps)
    slowdown = cost / (GOAL_INTERVAL * step_s)
    mean = statistics.mean(differences)
    print(f'{name} batch {args.batch}: cost/firing {cost * 1000:.1f} '
          f'+- {error * 1000:.1f} ms (mean {mean * 1000:.1f}), step '
          f'{step_s * 1000:.1f} ms', flush=True)
    return dict(model=name, device=args.device, write=args.write,
                input=tuple(probe.data['inputs'].shape[-2:]),
                batch=args.batch, step_ms=step_s * 1000,
                firing_cost_ms=cost * 1000, standard_error_ms=error * 1000,
                pairs=args.pairs, cycle=args.cycle,
                differences_ms=[d * 1000 for d in differences],
                slowdown_at_50=slowdown,
                slowdown_error=error / (GOAL_INTERVAL * step_s),
                passed=slowdown <= SLOWDOWN_GOAL)


def main() -> None:
    args = parse_args()
    # As mmengine's Runner does with the env_cfg of OpenMMLab's configs
    # (mp_cfg.opencv_num_threads=0): OpenCV runs on the calling thread.
    cv2.setNumThreads(0)
    probe_path = args.probe or default_probe()
    torch.manual_seed(0)
    rows = [measure(name, args, probe_path) for name in args.models]
    print(f'{"model":<12} {"input":>9} {"batch":>5} {"write":>10} '
          f'{"step ms":>8} {"cost/firing ms":>15} {"slowdown@50":>16} '
          f'{"goal":>6}')
    for r in rows:
        print(f'{r["model"]:<12} {"x".join(map(str, r["input"])):>9} '
              f'{r["batch"]:>5} {r["write"]:>10} {r["step_ms"]:>8.1f} '
              f'{r["firing_cost_ms"]:>8.1f} +-{r["standard_error_ms"]:>5.1f} '
              f'{r["slowdown_at_50"] * 100:>7.3f}% +-'
              f'{r["slowdown_error"] * 100:.3f} '
              f'{"PASS" if r["passed"] else "FAIL":>6}')
    print('cost/firing: median over pairs of (cycle with a firing - cycle '
          'without), +- its standard error; slowdown@50 = cost / (50 x '
          'step).')
    if args.json:
        write_rows(args.json, rows)


if __name__ == '__main__':
    main()
