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

The same run times one inference (``test_step`` of one probe image, or
the plain model's forward) and the training thread's own share of a
firing (the probe pass and the queued reductions, between device
synchronisations), alternating, and gives the cost against each: the
goals are a cost of at most 1.25x one inference on a CPU and 1.25x the
training thread's share on a GPU.

``--paired-inference`` adds a third cycle to each pair, with one
inference after its first step instead of a firing, and reports what an
inference costs the loop measured the same way: on a CPU more than its
own time where glibc's allocator hands memory back after the inference
and training faults it in again (RESULTS.md), which a firing pays too.

``--outside ROUNDS`` measures the cost from outside instead: each round
runs two fresh processes of ``--iterations`` optimiser steps, one firing
after every step and one never, each timed from its first step until its
writer has finished (after a warm-up that starts the drawing process and
fires once); the cost of a firing is the median over the rounds of the
difference over the steps. With ``--paired-inference`` each round adds a
third process, with one inference after every step instead: what an
inference costs the loop, measured from outside the same way.

Example::

    python benchmarks/bench_slowdown.py --models yolov5_n --batch 16 \\
        --pairs 40 --json bench_slowdown.json
    python benchmarks/bench_slowdown.py --models yolov5_n --batch 8 \\
        --outside 10
"""
import argparse
import json
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import torch
from mmengine.optim import OptimWrapper
from mmengine.visualization import Visualizer

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from bench_hook import (MODELS_TO_RUN, _with_boxes, build_model,  # noqa: E402
                        default_probe, load_config)
from results_json import write_rows  # noqa: E402
from timing import alternate  # noqa: E402

from mmfeatvis.hooks import FeatmapVisHook  # noqa: E402
from mmfeatvis.probe import ProbeBuilder  # noqa: E402
from mmfeatvis.write import (BackgroundWriter, drawing_process,  # noqa: E402
                             prepare_backends)

SLOWDOWN_GOAL = 0.0025
GOAL_INTERVAL = 50
#: A firing's cost against one inference (CPU) or against the training
#: thread's own share of it (GPU).
COST_GOAL = 1.25


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
    parser.add_argument('--draw', choices=('process', 'thread', 'inline'),
                        default='process',
                        help="where a firing's drawing runs: the hook's "
                        'drawing process (the default), its writer thread '
                        '(draw_process=False) or the training thread '
                        '(async_write=False)')
    parser.add_argument('--per-layer', action='store_true',
                        help='also write one image per layer (per_layer=True)')
    parser.add_argument('--repeats', type=int, default=30,
                        help='alternating timings of one inference and of '
                        "the training thread's share (default 30)")
    parser.add_argument('--paired-inference', action='store_true',
                        help='also time what one inference after a step '
                        'costs the loop, paired as the firing is (a third '
                        'cycle per round; with --outside, a third process)')
    parser.add_argument('--outside', type=int, default=0, metavar='ROUNDS',
                        help='measure from outside: ROUNDS pairs of fresh '
                        'processes (default 0: measure in the loop)')
    parser.add_argument('--iterations', type=int, default=12,
                        help='steps of each --outside process (default 12)')
    parser.add_argument('--child', choices=('fire', 'infer', 'quiet'),
                        help=argparse.SUPPRESS)
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


def paired_cost(step_fn: Callable[[], None],
                calls: Dict[str, Callable[[], None]],
                writer: BackgroundWriter, pairs: int,
                cycle: int) -> Tuple[Dict[str, List[float]], List[float]]:
    """Per call, the differences (cycle with it - the round's cycle
    without) over ``pairs`` rounds, and the quiet cycles' last steps.

    A round has one quiet cycle and one cycle per call, in an order that
    rotates from round to round, so that a steady drift favours none.
    """
    differences: Dict[str, List[float]] = {name: [] for name in calls}
    quiet_steps = []
    arms: List[Optional[str]] = [None, *calls]
    for pair in range(pairs):
        shift = pair % len(arms)
        times = {}
        for arm in arms[shift:] + arms[:shift]:
            times[arm], last = timed_cycle(
                step_fn, cycle, None if arm is None else calls[arm], writer)
            if arm is None:
                quiet_steps.append(last)
        for name in calls:
            differences[name].append(times[name] - times[None])
    return differences, quiet_steps


def openmmlab_setup(name: str, args: argparse.Namespace,
                    probe_path: str) -> tuple:
    """A model built from a shipped config, its probe, the hook's pipeline,
    one optimiser step on the probe batch and one inference."""
    from mmengine.dataset import Compose, pseudo_collate

    from mmfeatvis.probe import find_test_pipeline, without_annotation_loading
    package, relative, side = MODELS_TO_RUN[name]
    cfg = load_config(package, relative, side)
    model = build_model(cfg)
    probe = ProbeBuilder(cfg).build(probe_path, model)[0]
    pipeline = make_hook(args, probe_path).orchestrator
    pipeline.resolve(model)
    inputs = probe.data['inputs'].repeat(args.batch, 1, 1, 1)
    samples = _with_boxes(probe.model_kwargs()['data_samples'] * args.batch)
    optimizer = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-6))
    # The batch a test dataloader would give, before the preprocessor.
    transforms = without_annotation_loading(find_test_pipeline(cfg))
    test_batch = pseudo_collate(
        [Compose(transforms)(dict(img_path=probe_path, img_id=0))])

    def train_step() -> None:
        losses = model(inputs, samples, mode='loss')
        optimizer.update_params(model.parse_losses(losses)[0])

    def inference() -> None:
        model.eval()
        model.test_step(test_batch)  # preprocessor + predict, no grad
        model.train()

    return model, probe, pipeline, train_step, inference


def make_hook(args: argparse.Namespace, probe_path: str) -> FeatmapVisHook:
    return FeatmapVisHook(
        probe=probe_path,
        value_range=args.value_range,
        per_layer=args.per_layer)


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

    def inference() -> None:
        model.eval()
        with torch.no_grad():
            model(probe.data['inputs'])
        model.train()
        synchronize(args.device)

    return model, probe, pipeline, train_step, inference


def synchronize(device: str) -> None:
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


class Firing:
    """What the hook does at a firing: the probe pass and queued reductions
    on the training thread (:meth:`__call__`), the rest on its writer
    thread, in its drawing process unless ``--draw`` says otherwise. The
    writer thread's CPU time per firing is summed in ``writer_cpu``."""

    def __init__(self, model, probe, pipeline,
                 args: argparse.Namespace) -> None:
        self.model, self.probe, self.pipeline = model, probe, pipeline
        self.args = args
        self.visualizer = Visualizer(
            name=f'bench_slowdown_{id(self)}',
            vis_backends=[dict(type='LocalVisBackend'),
                          dict(type='TensorboardVisBackend')],
            save_dir=tempfile.mkdtemp(prefix='bench_slowdown_'))
        prepare_backends(self.visualizer)  # as the hook's before_run
        self.writer = BackgroundWriter()
        self.process = None
        if args.draw == 'process':
            self.process = drawing_process()
            self.process.start()
        self.step = 0
        self.writer_cpu: List[float] = []

    def _write(self, maps: list, step: int) -> None:
        # FeatmapVisHook._write, on the writer thread.
        start = time.thread_time()
        self.pipeline.write(self.visualizer, maps, step,
                            per_layer=self.args.per_layer,
                            process=self.process)
        self.writer_cpu.append(time.thread_time() - start)

    def __call__(self) -> None:
        # FeatmapVisHook._fire, on the training thread.
        self.step += 1
        maps = self.pipeline.fire(self.model, [self.probe], defer=True)
        job = partial(self._write, maps, self.step)
        if self.args.draw == 'inline':
            job()
        else:
            self.writer.submit(job, f'firing {self.step}')

    def share(self) -> float:
        """Seconds of one firing on the training thread, between device
        synchronisations (its writer work is waited for afterwards)."""
        synchronize(self.args.device)
        start = time.perf_counter()
        self()
        synchronize(self.args.device)
        elapsed = time.perf_counter() - start
        self.writer.flush()
        return elapsed


def setup(name: str, args: argparse.Namespace, probe_path: str) -> tuple:
    if name == 'plain_yolov5s':
        return plain_gpu_setup(args)
    return openmmlab_setup(name, args, probe_path)


def measure(name: str, args: argparse.Namespace, probe_path: str) -> dict:
    model, probe, pipeline, train_step, inference = setup(
        name, args, probe_path)
    fire = Firing(model, probe, pipeline, args)
    model.train()
    calls = dict(firing=fire)
    if args.paired_inference:
        calls['inference'] = inference
    # Warm-up: the first firings measure value ranges (and, on a GPU,
    # record the reductions' graph).
    paired_cost(train_step, calls, fire.writer, 2, args.cycle)
    fire.writer_cpu.clear()
    paired, quiet_steps = paired_cost(train_step, calls, fire.writer,
                                      args.pairs, args.cycle)
    differences = paired['firing']
    writer_cpu_ms = statistics.median(fire.writer_cpu) * 1000
    own = alternate(dict(inference=inference, share=fire.share),
                    args.repeats)
    inference_ms = statistics.median(own['inference']) * 1000
    share_ms = statistics.median(own['share']) * 1000
    cost = statistics.median(differences)
    error = _median_error(differences)
    step_s = statistics.median(quiet_steps)
    slowdown = cost / (GOAL_INTERVAL * step_s)
    mean = statistics.mean(differences)
    print(f'{name} batch {args.batch}: cost/firing {cost * 1000:.1f} '
          f'+- {error * 1000:.1f} ms (mean {mean * 1000:.1f}), step '
          f'{step_s * 1000:.1f} ms, inference {inference_ms:.1f} ms, '
          f'training thread share {share_ms:.1f} ms, writer thread CPU '
          f'{writer_cpu_ms:.1f} ms', flush=True)
    extra = {}
    if args.paired_inference:
        inference_cost = statistics.median(paired['inference'])
        extra = dict(
            inference_cost_ms=inference_cost * 1000,
            inference_cost_error_ms=1000 * _median_error(
                paired['inference']),
            inference_differences_ms=[d * 1000 for d in paired['inference']],
            cost_ratio_paired=cost / inference_cost)
        print(f'{name}: one inference costs the loop '
              f'{inference_cost * 1000:.1f} +- '
              f'{extra["inference_cost_error_ms"]:.1f} ms (paired as the '
              f'firing): firing/inference {cost / inference_cost:.2f}x',
              flush=True)
    return dict(model=name, device=args.device, draw=args.draw,
                per_layer=args.per_layer,
                input=tuple(probe.data['inputs'].shape[-2:]),
                batch=args.batch, step_ms=step_s * 1000,
                firing_cost_ms=cost * 1000, standard_error_ms=error * 1000,
                inference_ms=inference_ms, share_ms=share_ms,
                writer_cpu_ms=writer_cpu_ms,
                pairs=args.pairs, cycle=args.cycle,
                differences_ms=[d * 1000 for d in differences],
                slowdown_at_50=slowdown,
                slowdown_error=error / (GOAL_INTERVAL * step_s),
                passed=slowdown <= SLOWDOWN_GOAL,
                **extra,
                **cost_verdict(args.device, cost * 1000, inference_ms,
                               share_ms))


def _median_error(samples: List[float]) -> float:
    """Standard error of a median: about 1.25 x that of the mean."""
    return 1.25 * statistics.stdev(samples) / len(samples)**0.5


def cost_verdict(device: str, cost_ms: float, inference_ms: float,
                 share_ms: float) -> Dict[str, object]:
    """The cost goal: against one inference on a CPU, against the training
    thread's share on a GPU."""
    on_gpu = str(device).startswith('cuda')
    anchor = share_ms if on_gpu else inference_ms
    return dict(cost_anchor='share' if on_gpu else 'inference',
                cost_ratio=cost_ms / anchor,
                cost_passed=cost_ms <= COST_GOAL * anchor)


def run_child(args: argparse.Namespace, probe_path: str) -> None:
    """One --outside process: warm up, then time --iterations steps (and
    firings) until the writer is idle; print the result as JSON."""
    name = args.models[0]
    model, probe, pipeline, train_step, inference = setup(
        name, args, probe_path)
    fire = Firing(model, probe, pipeline, args)
    model.train()
    for _ in range(3):
        train_step()
    fire()  # starts the drawing process's work, measures value ranges
    fire.writer.flush()
    inference_ms = statistics.median(
        alternate(dict(inference=inference), 10)['inference']) * 1000
    start = time.perf_counter()
    for _ in range(args.iterations):
        train_step()
        if args.child == 'fire':
            fire()
        elif args.child == 'infer':
            inference()
    fire.writer.flush()
    seconds = time.perf_counter() - start
    fire.writer.close()
    print('RESULT ' + json.dumps(
        dict(seconds=seconds, inference_ms=inference_ms)), flush=True)


def measure_outside(name: str, args: argparse.Namespace) -> dict:
    """Rounds of fresh processes: with a firing at every step, without, and
    (``--paired-inference``) with an inference at every step."""
    base = [sys.executable, osp.abspath(__file__), '--models', name,
            '--device', args.device, '--batch', str(args.batch),
            '--draw', args.draw, '--value-range', args.value_range,
            '--iterations', str(args.iterations)]
    if args.per_layer:
        base.append('--per-layer')
    if args.probe:
        base += ['--probe', args.probe]
    modes = ['quiet', 'fire'] + (['infer'] if args.paired_inference else [])
    differences: Dict[str, List[float]] = {mode: [] for mode in modes[1:]}
    inferences, quiet = [], []
    for round_index in range(args.outside):
        seconds = {}
        shift = round_index % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            result = _child_result(base + ['--child', mode])
            seconds[mode] = result['seconds']
            inferences.append(result['inference_ms'])
            if mode == 'quiet':
                quiet.append(result['seconds'] / args.iterations)
        for mode in differences:
            differences[mode].append(
                (seconds[mode] - seconds['quiet']) / args.iterations)
        print(f'round {round_index}: ' + ', '.join(
            f'{differences[mode][-1] * 1000:.1f} ms per {mode}'
            for mode in differences), flush=True)
    costs = {mode: statistics.median(d) * 1000
             for mode, d in differences.items()}
    errors = {mode: 1000 * _median_error(d) if len(d) > 1 else float('nan')
              for mode, d in differences.items()}
    cost_ms, error_ms = costs['fire'], errors['fire']
    inference_ms = statistics.median(inferences)
    print(f'{name} batch {args.batch}, from outside: cost/firing '
          f'{cost_ms:.1f} +- {error_ms:.1f} ms, inference '
          f'{inference_ms:.1f} ms, ratio {cost_ms / inference_ms:.2f}',
          flush=True)
    extra = {}
    if 'infer' in costs:
        extra = dict(inference_cost_ms=costs['infer'],
                     inference_cost_error_ms=errors['infer'],
                     inference_differences_ms=[
                         d * 1000 for d in differences['infer']],
                     cost_ratio_paired=cost_ms / costs['infer'])
        print(f'{name}: from outside, one inference costs the loop '
              f'{costs["infer"]:.1f} +- {errors["infer"]:.1f} ms: '
              f'firing/inference {extra["cost_ratio_paired"]:.2f}x',
              flush=True)
    return dict(model=name, device=args.device, draw=args.draw,
                per_layer=args.per_layer, batch=args.batch,
                method='outside', rounds=args.outside,
                iterations=args.iterations,
                step_ms=statistics.median(quiet) * 1000,
                firing_cost_ms=cost_ms, standard_error_ms=error_ms,
                inference_ms=inference_ms,
                differences_ms=[d * 1000 for d in differences['fire']],
                cost_ratio=cost_ms / inference_ms,
                cost_passed=cost_ms <= COST_GOAL * inference_ms,
                **extra)


def _child_result(command: List[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    raise RuntimeError(f'{" ".join(command)} failed:\n{done.stderr[-3000:]}')


def main() -> None:
    args = parse_args()
    # As mmengine's Runner does with the env_cfg of OpenMMLab's configs
    # (mp_cfg.opencv_num_threads=0): OpenCV runs on the calling thread.
    cv2.setNumThreads(0)
    probe_path = args.probe or default_probe()
    torch.manual_seed(0)
    if args.child:
        run_child(args, probe_path)
        return
    if args.outside:
        rows = [measure_outside(name, args) for name in args.models]
        for r in rows:
            print(f'{r["model"]:<14} batch {r["batch"]:>3} {r["draw"]:>8}: '
                  f'{r["firing_cost_ms"]:.1f} +- {r["standard_error_ms"]:.1f}'
                  f' ms per firing = {r["cost_ratio"]:.2f}x one inference '
                  f'({r["inference_ms"]:.1f} ms) '
                  f'{"PASS" if r["cost_passed"] else "FAIL"}')
    else:
        rows = [measure(name, args, probe_path) for name in args.models]
        print(f'{"model":<14} {"batch":>5} {"draw":>8} {"step ms":>8} '
              f'{"cost/firing ms":>15} {"anchor ms":>10} {"ratio":>6} '
              f'{"goal":>5} {"slowdown@50":>16} {"goal":>5}')
        for r in rows:
            anchor = r['share_ms' if r['cost_anchor'] == 'share' else
                       'inference_ms']
            print(f'{r["model"]:<14} {r["batch"]:>5} {r["draw"]:>8} '
                  f'{r["step_ms"]:>8.1f} {r["firing_cost_ms"]:>8.1f} +-'
                  f'{r["standard_error_ms"]:>5.1f} {anchor:>10.1f} '
                  f'{r["cost_ratio"]:>6.2f} '
                  f'{"PASS" if r["cost_passed"] else "FAIL":>5} '
                  f'{r["slowdown_at_50"] * 100:>7.3f}% +-'
                  f'{r["slowdown_error"] * 100:.3f} '
                  f'{"PASS" if r["passed"] else "FAIL":>5}')
        print('cost/firing: median over pairs of (cycle with a firing - '
              'cycle without), +- its standard error; anchor: one '
              "inference (CPU) or the training thread's share (GPU); goal: "
              'cost <= 1.25x anchor; slowdown@50 = cost / (50 x step).')
    if args.json:
        write_rows(args.json, rows)


if __name__ == '__main__':
    main()
