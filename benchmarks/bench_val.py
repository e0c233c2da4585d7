"""Cost of ``val_samples``: a validation with N chosen samples drawn,
against the same validation without the option.

mmyolo's YOLOv5-n (the demo config, random weights) validates on a
generated shapes set of ``--num-val`` images at batch 1. Two Runners are
built, both with FeatmapVisHook, one with ``val_samples=--samples``; the
script alternates their validation loops ``--repeats`` times. By default
it waits for the drawing after each, so the time is all the option
costs, as in a validation-only run (``runner.val()``, which waits for its
images at the end): capture, reduction, rendering, encoding and writing.
``--writer between`` times the loops as validations inside a training
run, where the hook does not wait for the samples' drawing: it lets the
drawing finish between the timed loops, untimed, as it finishes during
the training iterations that follow a validation (the hook's drawing
process runs at idle priority, on what training leaves idle; ``--draw
thread`` draws on the writer thread instead, ``draw_process=False``). The
loop then pays the capture and the reduction.
Medians are reported; the ratio comes from one run on one machine.

Example::

    python benchmarks/bench_val.py --samples 8 --repeats 5
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time

from mmengine.hooks import Hook
from mmengine.runner import Runner

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..',
                            'tests'))
from conftest import featvis_hook, yolo_cfg  # noqa: E402
from results_json import write_rows  # noqa: E402
from timing import alternate  # noqa: E402

from mmfeatvis.testing import make_shapes_dataset  # noqa: E402

GOAL = 1.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--samples', type=int, default=8)
    parser.add_argument('--num-val', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--per-layer', choices=('on', 'off'), default='off',
                        help='also write one image per layer (default: off, '
                        'the overviews only, as the hook does by default)')
    parser.add_argument('--draw', choices=('process', 'thread'),
                        default='process',
                        help="the hook's drawing process (default) or its "
                        'writer thread')
    parser.add_argument('--writer', choices=('wait', 'between'),
                        default='wait',
                        help='count the drawing (wait for it after each '
                        'loop: a validation-only run) or let it finish '
                        'between the loops (a validation in training)')
    parser.add_argument('--json', help='write the result rows here')
    return parser.parse_args()


class LoopTimer(Hook):
    """Notes when a validation loop starts and ends, by runner."""

    def __init__(self, seconds: dict) -> None:
        self.seconds = seconds
        self._start = {}

    def before_val_epoch(self, runner) -> None:
        self._start[runner] = time.perf_counter()

    def after_val(self, runner) -> None:
        self.seconds[runner] = time.perf_counter() - self._start[runner]


def build(shapes: dict, root: str, name: str, **options) -> Runner:
    cfg = yolo_cfg(shapes, osp.join(root, name),
                   [featvis_hook(interval=10_000, **options)])
    cfg.val_dataloader.batch_size = 1
    runner = Runner.from_cfg(cfg)
    runner.call_hook('before_run')  # what runner.val() does first
    return runner


def main() -> None:
    args = parse_args()
    root = tempfile.mkdtemp(prefix='bench_val_')
    shapes = make_shapes_dataset(osp.join(root, 'shapes'), num_train=2,
                                 num_val=args.num_val)
    per_layer = args.per_layer == 'on'
    draw_process = args.draw == 'process'
    plain = build(shapes, root, 'plain', per_layer=per_layer,
                  draw_process=draw_process)
    drawn = build(shapes, root, 'samples', per_layer=per_layer,
                  draw_process=draw_process, val_samples=args.samples)
    hooks = {
        runner: next(h for h in runner.hooks
                     if type(h).__name__ == 'FeatmapVisHook')
        for runner in (plain, drawn)
    }

    def validate(runner: Runner):

        def run() -> float:
            start = time.perf_counter()
            runner.val_loop.run()
            hooks[runner]._flush()
            if args.writer == 'wait':
                return time.perf_counter() - start  # the drawing counts
            return loop_seconds[runner]

        return run

    loop_seconds = {}
    for runner in (plain, drawn):
        # The loop's own time, as it ends, before any wait for drawing.
        runner.register_hook(LoopTimer(loop_seconds), priority='LOWEST')
        if args.writer == 'between':
            runner.train_loop  # built: a validation inside training

    times = alternate(
        dict(plain=validate(plain), samples=validate(drawn)), args.repeats)
    plain_s = statistics.median(times['plain'])
    samples_s = statistics.median(times['samples'])
    ratio = samples_s / plain_s
    print(f'validation of {args.num_val} images, batch 1, YOLOv5-n at '
          f'320x256 (random weights), per_layer={per_layer}, writer '
          f'{args.writer}, drawing on the {args.draw}')
    print(f'{"without val_samples":<24} {plain_s * 1000:9.0f} ms')
    print(f'{f"val_samples={args.samples}":<24} {samples_s * 1000:9.0f} ms')
    print(f'ratio {ratio:.3f}  goal <= {GOAL}  '
          f'{"PASS" if ratio <= GOAL else "FAIL"}')
    if args.json:
        write_rows(args.json, [
            dict(samples=args.samples, num_val=args.num_val,
                 per_layer=per_layer, writer=args.writer, draw=args.draw,
                 plain_ms=plain_s * 1000, samples_ms=samples_s * 1000,
                 ratio=ratio)
        ])


if __name__ == '__main__':
    main()
