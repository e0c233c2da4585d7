"""Cost of ``val_samples``: a validation with N chosen samples drawn,
against the same validation without the option.

mmyolo's YOLOv5-n (the demo config, random weights) validates on a
generated shapes set of ``--num-val`` images at batch 1. Two Runners are
built, both with FeatmapVisHook, one with ``val_samples=--samples``; the
script alternates their validation loops ``--repeats`` times. By default
it waits for the writer thread after each, so the time is all the option
costs: capture, reduction, rendering, encoding and writing.
``--writer async`` leaves the writer to work on while the next loop runs,
as the hook does in training: the loop then pays capture and reduction,
and the writer's share only where it competes for the same cores.
Medians are reported; the ratio comes from one run on one machine.

Example::

    python benchmarks/bench_val.py --samples 8 --repeats 5
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile

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
    parser.add_argument('--per-layer', choices=('on', 'off'), default='on',
                        help='write one image per layer, or only overviews')
    parser.add_argument('--writer', choices=('wait', 'async'),
                        default='wait',
                        help='wait for the writer thread after each loop')
    parser.add_argument('--json', help='write the result rows here')
    return parser.parse_args()


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
    plain = build(shapes, root, 'plain', per_layer=per_layer)
    drawn = build(shapes, root, 'samples', per_layer=per_layer,
                  val_samples=args.samples)
    hooks = {
        runner: next(h for h in runner.hooks
                     if type(h).__name__ == 'FeatmapVisHook')
        for runner in (plain, drawn)
    }

    def validate(runner: Runner):

        def run() -> None:
            runner.val_loop.run()
            if args.writer == 'wait':
                hooks[runner]._flush()  # the writer's work counts too

        return run

    times = alternate(
        dict(plain=validate(plain), samples=validate(drawn)), args.repeats)
    plain_s = statistics.median(times['plain'])
    samples_s = statistics.median(times['samples'])
    ratio = samples_s / plain_s
    print(f'validation of {args.num_val} images, batch 1, YOLOv5-n at '
          f'320x256 (random weights), per_layer={per_layer}, writer '
          f'{args.writer}')
    print(f'{"without val_samples":<24} {plain_s * 1000:9.0f} ms')
    print(f'{f"val_samples={args.samples}":<24} {samples_s * 1000:9.0f} ms')
    print(f'ratio {ratio:.3f}  goal <= {GOAL}  '
          f'{"PASS" if ratio <= GOAL else "FAIL"}')
    if args.json:
        write_rows(args.json, [
            dict(samples=args.samples, num_val=args.num_val,
                 per_layer=per_layer, writer=args.writer,
                 plain_ms=plain_s * 1000, samples_ms=samples_s * 1000,
                 ratio=ratio)
        ])


if __name__ == '__main__':
    main()
