"""Cost of one FeatmapVisHook firing against one plain inference.

For each model, built from the installed packages' shipped configs with
random weights, the script prepares a probe image once (as the hook does)
and then alternates, ``--repeats`` times:

- A, plain inference: ``data_preprocessor`` + ``model(mode='predict')`` on
  the same probe input, in eval mode without gradients (what one
  ``model.test_step`` costs);
- B, one firing: what ``FeatmapVisHook`` does at an interval: the probe pass
  with capture, reductions, rendering and writing to a Visualizer with the
  local file and TensorBoard backends.

It also times training iterations (``train_step`` on a batch of the
model's own input size) for an upper bound of the slowdown at
``--interval``: ``(firing + writer) / (interval * iteration)``, as if the
writer thread's work took its whole time from training
(``bench_slowdown.py`` measures the slowdown itself). Medians are
reported; ratios come from one run on one machine.

Example::

    python benchmarks/bench_hook.py --models yolov5_n --repeats 10 \
        --json bench_hook.json
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import List

import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from mmengine.visualization import Visualizer

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from results_json import write_rows  # noqa: E402
from timing import alternate  # noqa: E402

from mmfeatvis.cli.inputs import resolve_config  # noqa: E402
from mmfeatvis.hooks import FeatmapVisHook  # noqa: E402
from mmfeatvis.probe import (ProbeBuilder, find_test_pipeline,  # noqa: E402
                             without_annotation_loading)
from mmfeatvis.testing import sample_photo_path  # noqa: E402

# name: (package, config, input side, firing goal as firing / inference)
MODELS_TO_RUN = {
    'yolov5_n':
    ('mmyolo', 'yolov5/yolov5_n-v61_syncbn_fast_8xb16-300e_coco.py', 320),
    'yolov5_s':
    ('mmyolo', 'yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py', 640),
    'faster_rcnn': ('mmdet', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                    None),
}
FIRING_GOAL = 1.25
SLOWDOWN_GOAL = 0.0025


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['yolov5_n'],
                        choices=sorted(MODELS_TO_RUN),
                        help='models to measure (default yolov5_n)')
    parser.add_argument('--repeats', type=int, default=10,
                        help='timed calls of A and B each (default 10)')
    parser.add_argument('--interval', type=int, default=50,
                        help='firing interval for the slowdown (default 50)')
    parser.add_argument('--train-batch', type=int, default=8,
                        help='batch size of the timed train_step (default 8)')
    parser.add_argument('--probe', help='probe image (default: matplotlib '
                        "'s grace_hopper.jpg)")
    parser.add_argument('--value-range', default='adaptive',
                        help="the hook's value_range (default: its default)")
    parser.add_argument('--json', metavar='PATH', help='write results here')
    return parser.parse_args()


def default_probe() -> str:
    return sample_photo_path()


def load_config(package: str, relative: str, side: int) -> Config:
    cfg = Config.fromfile(resolve_config(f'{package}::{relative}'))
    if side is not None:
        # Rebuild the test pipeline's sizes for the requested input side.
        for transform in cfg.test_dataloader.dataset.pipeline:
            if 'scale' in transform:
                transform['scale'] = (side, side)
        cfg.test_dataloader.dataset.pop('batch_shapes_cfg', None)
    return cfg


def build_model(cfg: Config) -> torch.nn.Module:
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model_cfg = cfg.model.copy()
    if model_cfg.get('backbone', {}).get('init_cfg'):
        model_cfg.backbone.init_cfg = None
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    model.init_weights()
    return model


def median_ms(samples: List[float]) -> float:
    return statistics.median(samples) * 1000


def measure(name: str, args: argparse.Namespace, probe_path: str) -> dict:
    package, relative, side = MODELS_TO_RUN[name]
    cfg = load_config(package, relative, side)
    model = build_model(cfg)
    probe = ProbeBuilder(cfg).build(probe_path, model)[0]
    # The batch a test dataloader would give, before the preprocessor.
    transforms = without_annotation_loading(find_test_pipeline(cfg))
    batch = pseudo_collate(
        [Compose(transforms)(dict(img_path=probe_path, img_id=0))])
    hook = FeatmapVisHook(probe=probe_path,
                          target_layers=['backbone', 'neck'],
                          value_range=args.value_range)
    hook.orchestrator.resolve(model)
    hook.probes = [probe]
    out_dir = tempfile.mkdtemp(prefix='bench_hook_')
    visualizer = Visualizer(
        name=f'bench_{name}',
        vis_backends=[dict(type='LocalVisBackend'),
                      dict(type='TensorboardVisBackend')],
        save_dir=out_dir)
    step = [0]

    def inference() -> None:
        model.eval()
        model.test_step(batch)  # preprocessor + predict, no grad

    pending = []

    def firing() -> None:
        # What the training thread pays: the probe pass and the reductions
        # (their copy to the host queued, as the hook does).
        step[0] += 1
        maps = hook.orchestrator.fire(model, [probe], defer=True)
        pending.append((maps, step[0]))

    def background() -> None:
        # What the writer thread does for that firing: wait for the maps,
        # statistics, render and write.
        maps, at = pending.pop()
        hook.orchestrator.write(visualizer, maps, at)

    times = alternate(
        dict(inference=inference, firing=firing, background=background),
        args.repeats)
    train_ms = time_train_step(model, probe, args)
    inference_ms = median_ms(times['inference'])
    firing_ms = median_ms(times['firing'])
    background_ms = median_ms(times['background'])
    # On a CPU the writer thread takes cores from training, so its work is
    # counted too; on a GPU it overlaps with the device's work.
    slowdown = (firing_ms + background_ms) / (args.interval * train_ms)
    return dict(
        model=name, input=tuple(probe.data['inputs'].shape[-2:]),
        inference_ms=inference_ms, firing_ms=firing_ms,
        background_ms=background_ms,
        ratio=firing_ms / inference_ms, train_iter_ms=train_ms,
        interval=args.interval, slowdown=slowdown,
        ratio_pass=firing_ms / inference_ms <= FIRING_GOAL,
        slowdown_pass=slowdown <= SLOWDOWN_GOAL)


def time_train_step(model: torch.nn.Module, probe,
                    args: argparse.Namespace) -> float:
    """Median time of one optimiser step on a batch of the probe input."""
    from mmengine.optim import OptimWrapper
    inputs = probe.data['inputs'].repeat(args.train_batch, 1, 1, 1)
    samples = probe.model_kwargs()['data_samples'] * args.train_batch
    optimizer = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-6))
    model.train()
    durations = []
    for index in range(4):
        start = time.perf_counter()
        losses = model(inputs, _with_boxes(samples), mode='loss')
        loss, _ = model.parse_losses(losses)
        optimizer.update_params(loss)
        if index:  # the first step warms up
            durations.append(time.perf_counter() - start)
    model.eval()
    return median_ms(durations)


def _with_boxes(samples: list) -> list:
    """Give each sample one ground-truth box so detection losses run."""
    from mmengine.structures import InstanceData
    out = []
    for sample in samples:
        sample = sample.clone()
        height, width = sample.metainfo['img_shape'][:2]
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[width * .25, height * .25, width * .6,
                                  height * .7]]),
            labels=torch.tensor([0]))
        # Two-stage assigners also read the (empty) ignored boxes.
        sample.ignored_instances = InstanceData(
            bboxes=torch.zeros((0, 4)), labels=torch.zeros((0, ),
                                                           dtype=torch.long))
        out.append(sample)
    return out


def verdict(passed: bool) -> str:
    return 'PASS' if passed else 'FAIL'


def main() -> None:
    args = parse_args()
    probe_path = args.probe or default_probe()
    torch.manual_seed(0)
    rows = [measure(name, args, probe_path) for name in args.models]
    header = (f'{"model":<12} {"input":>9} {"infer ms":>9} {"firing ms":>10}'
              f' {"ratio":>6} {"goal":>6} {"writer ms":>10} {"iter ms":>8} '
              f'{"slowdown@" + str(args.interval):>13} {"goal":>6}')
    print(header)
    for r in rows:
        print(f'{r["model"]:<12} {"x".join(map(str, r["input"])):>9} '
              f'{r["inference_ms"]:>9.1f} {r["firing_ms"]:>10.1f} '
              f'{r["ratio"]:>6.2f} {verdict(r["ratio_pass"]):>6}'
              f' {r["background_ms"]:>10.1f} {r["train_iter_ms"]:>8.0f} '
              f'{r["slowdown"] * 100:>12.3f}% '
              f'{verdict(r["slowdown_pass"]):>6}')
    print(f'goals: firing <= {FIRING_GOAL}x inference; slowdown <= '
          f'{SLOWDOWN_GOAL * 100:.2f}% at interval {args.interval}\n'
          'firing: training-thread time (probe pass, reductions, scalars); '
          'writer: render + encode + write on the background thread; '
          'slowdown = (firing + writer) / (interval x iteration), an upper '
          'bound (bench_slowdown.py measures it).')
    if args.json:
        write_rows(args.json, rows)


if __name__ == '__main__':
    main()
