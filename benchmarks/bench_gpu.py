"""One firing against one forward on a GPU, with a plain-PyTorch YOLOv5-s.

Meant for a machine with CUDA but without mmcv, mmdet or mmyolo (only
mmengine, OpenCV and PyTorch). The model is NOT mmyolo's: it is a
plain-PyTorch re-implementation of YOLOv5-s's layout (CSP-Darknet
backbone with C3 blocks and SPPF, PAFPN neck, 1x1 head convolutions) with
random weights, whose backbone and neck give 128x80x80, 256x40x40 and
512x20x20 maps at 640x640 input, as mmyolo's YOLOv5-s does.

The probe goes through ``mmfeatvis.orchestrator.FeatmapOrchestrator`` with the
hook's defaults (``select_max``, percentile (1, 99), statistics) and
``--value-range`` (default: the hook's, ``'adaptive'``), in tensor mode.
Alternating, medians over ``--repeats``, each call between
``torch.cuda.synchronize()``:

- forward: ``model(inputs)`` in eval mode without gradients;
- capture: the probe pass with the forward hooks, no reduction;
- firing: capture + reduce as the hook runs them: the reductions (a
  replayed CUDA graph once the ranges are frozen) and the copy of the
  finished maps to the host are queued; the closing synchronize waits for
  them, so the device's work is timed too;
- background: waiting for that copy, render + write to LocalVisBackend
  and TensorboardVisBackend (the hook's writer thread; timed apart).

It also counts host synchronisations in capture + reduce
(``torch.cuda.set_sync_debug_mode``), the profiler's DtoH copies, the
bytes moved against the bytes captured (``bench_transfer.py``), and
memory over ``--firings`` firings (``bench_memory.py``). With
``--ablation`` it also times capture + reduce with the statistics and/or
the kept value ranges switched off, to show what their reductions and
host syncs cost.

Example::

    python benchmarks/bench_gpu.py --repeats 50 --firings 300 --json g.json
"""
import argparse
import json
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time
import types
from typing import Any, Callable, Dict, List, Tuple

import cv2
import numpy as np
import torch
from torch import nn

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

try:
    import mmcv  # noqa: F401
    MMCV_STUBBED = False
except ImportError:
    # mmfeatvis/__init__ imports the hook, hence probe.py, which imports
    # mmcv at module level but only calls it to decode image files; this
    # script builds its probe from an array, so an empty module will do.
    sys.modules['mmcv'] = types.ModuleType('mmcv')
    MMCV_STUBBED = True

from bench_memory import (make_visualizer, measure_memory,  # noqa: E402
                          print_memory)
from bench_transfer import measure_pipeline, print_transfer  # noqa: E402
from timing import alternate  # noqa: E402

from mmfeatvis.options import DrawOptions  # noqa: E402
from mmfeatvis.orchestrator import FeatmapOrchestrator  # noqa: E402
from mmfeatvis.probe import Probe  # noqa: E402
from mmfeatvis.reduce.ranges import ValueRangeTracker  # noqa: E402
from mmfeatvis.testing import sample_photo_path  # noqa: E402

FIRING_GOAL = 1.25
SIDE = 640


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=50,
                        help='timed calls of each (default 50)')
    parser.add_argument('--rounds', type=int, default=2,
                        help='rounds of --repeats alternating calls, each '
                        'reported on its own to show the spread (default 2)')
    parser.add_argument('--firings', type=int, default=300,
                        help='firings of the memory run; 0 skips it '
                        '(default 300)')
    parser.add_argument('--ablation', action='store_true',
                        help='also time firings with statistics and/or '
                        'value ranges switched off, to show what their '
                        'reductions and syncs cost')
    parser.add_argument('--device', default='cuda',
                        help="'cuda' or 'cpu' (default cuda)")
    parser.add_argument('--model', choices=('plain', 'mmyolo'),
                        default='plain',
                        help="'plain': the plain-PyTorch YOLOv5-s layout "
                        "(needs no mmcv); 'mmyolo': mmyolo's YOLOv5-s from "
                        'its shipped config, probe prepared by its test '
                        'pipeline, tensor mode (needs mmcv, mmdet, mmyolo)')
    parser.add_argument('--value-range', default='adaptive',
                        help="the hook's value_range (default: its default, "
                        "'adaptive')")
    parser.add_argument('--json', metavar='PATH', help='write results here')
    return parser.parse_args()


def build_mmyolo(device: str) -> Tuple[nn.Module, Probe]:
    """mmyolo's YOLOv5-s (random init) and its probe, as the hook builds
    them, on ``device``."""
    from bench_hook import build_model, default_probe, load_config

    from mmfeatvis.probe import ProbeBuilder
    cfg = load_config('mmyolo',
                      'yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py',
                      SIDE)
    model = build_model(cfg).to(device).eval()
    return model, ProbeBuilder(cfg).build(default_probe(), model)[0]


class ConvBN(nn.Sequential):
    """Conv2d + BatchNorm + SiLU, as YOLOv5's ConvModule."""

    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1,
                 p: int = None) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p,
                      bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Bottleneck(nn.Module):
    """1x1 then 3x3 conv, with an optional residual."""

    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1, self.cv2 = ConvBN(c, c, 1), ConvBN(c, c, 3)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.shortcut else y


class C3(nn.Module):
    """YOLOv5's CSP layer with ``n`` bottlenecks."""

    def __init__(self, cin: int, cout: int, n: int,
                 shortcut: bool = True) -> None:
        super().__init__()
        mid = cout // 2
        self.cv1, self.cv2 = ConvBN(cin, mid), ConvBN(cin, mid)
        self.m = nn.Sequential(*[Bottleneck(mid, shortcut)
                                 for _ in range(n)])
        self.cv3 = ConvBN(2 * mid, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast (three chained 5x5 max pools)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1, self.cv2 = ConvBN(c, c // 2), ConvBN(c * 2, c)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], 1))


class Backbone(nn.Module):
    """CSP-Darknet of YOLOv5-s (widen 0.5, deepen 0.33)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(3, 32, 6, 2, 2)
        self.stage1 = nn.Sequential(ConvBN(32, 64, 3, 2), C3(64, 64, 1))
        self.stage2 = nn.Sequential(ConvBN(64, 128, 3, 2), C3(128, 128, 2))
        self.stage3 = nn.Sequential(ConvBN(128, 256, 3, 2), C3(256, 256, 3))
        self.stage4 = nn.Sequential(ConvBN(256, 512, 3, 2), C3(512, 512, 1),
                                    SPPF(512))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        c3 = self.stage2(self.stage1(self.stem(x)))
        c4 = self.stage3(c3)
        return c3, c4, self.stage4(c4)


class Neck(nn.Module):
    """YOLOv5's PAFPN: top-down, then bottom-up."""

    def __init__(self) -> None:
        super().__init__()
        self.reduce5, self.top4 = ConvBN(512, 256), C3(512, 256, 1, False)
        self.reduce4, self.top3 = ConvBN(256, 128), C3(256, 128, 1, False)
        self.down3 = ConvBN(128, 128, 3, 2)
        self.bottom4 = C3(256, 256, 1, False)
        self.down4 = ConvBN(256, 256, 3, 2)
        self.bottom5 = C3(512, 512, 1, False)
        self.up = nn.Upsample(scale_factor=2, mode='nearest')

    def forward(self, feats: Tuple[torch.Tensor, ...]
                ) -> Tuple[torch.Tensor, ...]:
        c3, c4, c5 = feats
        p5 = self.reduce5(c5)
        p4 = self.reduce4(self.top4(torch.cat([self.up(p5), c4], 1)))
        out3 = self.top3(torch.cat([self.up(p4), c3], 1))
        out4 = self.bottom4(torch.cat([self.down3(out3), p4], 1))
        out5 = self.bottom5(torch.cat([self.down4(out4), p5], 1))
        return out3, out4, out5


class PlainYOLOv5s(nn.Module):
    """Backbone, neck and 1x1 head convs (3 anchors x 85 outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone, self.neck = Backbone(), Neck()
        self.head = nn.ModuleList(nn.Conv2d(c, 255, 1)
                                  for c in (128, 256, 512))

    def forward(self, inputs: torch.Tensor, data_samples: Any = None,
                mode: str = 'tensor') -> List[torch.Tensor]:
        feats = self.neck(self.backbone(inputs))
        return [conv(f) for conv, f in zip(self.head, feats)]


def probe_image() -> np.ndarray:
    """matplotlib's grace_hopper.jpg (RGB), or seeded noise without it."""
    try:
        image = cv2.imread(sample_photo_path())
        if image is not None:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    except ImportError:
        pass
    return np.random.default_rng(0).integers(0, 256, (600, 512, 3), np.uint8)


def letterbox_probe(image: np.ndarray, device: str) -> Probe:
    """Resize keeping the ratio, pad to SIDE x SIDE (YOLOv5's letterbox),
    normalise to [0, 1], as a :class:`Probe` on ``device``."""
    h, w = image.shape[:2]
    scale = min(SIDE / h, SIDE / w)
    nh, nw = round(h * scale), round(w * scale)
    top, left = (SIDE - nh) // 2, (SIDE - nw) // 2
    canvas = np.full((SIDE, SIDE, 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh))
    inputs = torch.from_numpy(canvas).permute(2, 0, 1)[None].float() / 255
    # mmyolo's convention: img_shape includes the letterbox padding.
    meta = dict(ori_shape=(h, w), img_shape=(SIDE, SIDE),
                scale_factor=(nw / w, nh / h),
                pad_param=np.array([top, SIDE - nh - top, left,
                                    SIDE - nw - left], np.float32),
                batch_input_shape=(SIDE, SIDE), pad_shape=(SIDE, SIDE))
    return Probe('probe', image, dict(inputs=inputs.to(device)), meta,
                 'grace_hopper.jpg')


def synced(fn: Callable[[], Any], device: str) -> Callable[[], float]:
    """``fn`` timed between two device synchronisations, in seconds."""
    cuda = torch.device(device).type == 'cuda'

    def timed() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return timed


def make_pipeline(model: nn.Module, stats: bool = True,
                  ranges: bool = True,
                  value_range: str = 'adaptive') -> FeatmapOrchestrator:
    """A pipeline with the hook's defaults, resolved on ``model``.

    Args:
        stats (bool): Compute activation statistics (``with_stats``).
        ranges (bool): Keep value ranges (``value_range``); without, each
            map is drawn on its own range (``'per_image'``, which keeps
            nothing).
        value_range (str): The hook's option. Defaults to its default.
    """
    pipeline = FeatmapOrchestrator(
        ['backbone', 'neck'],
        DrawOptions(channel_reduction='select_max', topk=4,
                    percentile=(1, 99), draw_pred=False),
        ValueRangeTracker(value_range if ranges else 'per_image'),
        with_stats=stats)
    pipeline.resolve(model)
    return pipeline


def ablation(model: nn.Module, probe: Probe, device: str, repeats: int,
             forward: Callable[[], float],
             value_range: str = 'adaptive') -> List[Dict[str, Any]]:
    """Time capture + reduce with parts of the reduction switched off,
    alternating with the plain forward; count each variant's syncs."""
    from bench_transfer import count_syncs
    variants = dict(default=make_pipeline(model, value_range=value_range),
                    no_stats=make_pipeline(model, stats=False),
                    no_ranges=make_pipeline(model, ranges=False),
                    neither=make_pipeline(model, False, False))
    fns: Dict[str, Callable[[], float]] = dict(forward=forward)
    calls: Dict[str, Callable[[], None]] = {}
    for name, pipe in variants.items():

        def call(pipe: FeatmapOrchestrator = pipe) -> None:
            pipe.fire(model, [probe])

        calls[name] = call
        fns[name] = synced(call, device)
    times = alternate(fns, repeats, warmups=2)
    base = statistics.median(times['forward'])
    rows = []
    for name in fns:
        median = statistics.median(times[name])
        syncs = (count_syncs(calls[name])['total']
                 if name in calls and torch.device(device).type == 'cuda'
                 else None)
        rows.append(dict(variant=name, median_ms=median * 1000,
                         ratio=median / base, syncs=syncs))
    print(f'{"ablation":<12} {"median ms":>10} {"/ forward":>10} '
          f'{"syncs":>6}')
    for r in rows:
        print(f'{r["variant"]:<12} {r["median_ms"]:>10.2f} '
              f'{r["ratio"]:>10.2f} '
              f'{"-" if r["syncs"] is None else r["syncs"]:>6}')
    print('variants of capture + reduce: no_stats: with_stats=False; '
          'no_ranges: no value range kept (no range measured on the '
          'device); neither: both off.')
    return rows


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    device = args.device
    if args.model == 'mmyolo':
        model, probe = build_mmyolo(device)
        label, kwargs = 'mmyolo_yolov5s@640', dict(mode='tensor')
        description = "mmyolo's YOLOv5-s (random init), tensor mode"
    else:
        model = PlainYOLOv5s().to(device).eval()
        probe = letterbox_probe(probe_image(), device)
        label, kwargs = 'plain_yolov5s@640', {}
        description = ('plain-PyTorch YOLOv5-s layout (not mmyolo; random '
                       'init)')
    pipeline = make_pipeline(model, value_range=args.value_range)
    out_dir = tempfile.mkdtemp(prefix='bench_gpu_')
    visualizer = make_visualizer(out_dir, 'bench_gpu')
    pending: List[Any] = []
    step = [0]

    def forward() -> None:
        with torch.no_grad():
            model(probe.data['inputs'], **kwargs)

    def capture() -> None:
        pipeline.capture(model, [probe])

    def firing() -> None:
        # As the hook does: the copy to the host is queued, not awaited.
        step[0] += 1
        pending.append((pipeline.fire(model, [probe], defer=True), step[0]))

    def background() -> None:
        maps, at = pending.pop()
        pipeline.write(visualizer, maps, at)

    fns = dict(forward=synced(forward, device),
               capture=synced(capture, device),
               firing=synced(firing, device),
               background=synced(background, device))
    rounds = [
        alternate(fns, args.repeats, warmups=2) for _ in range(args.rounds)
    ]
    times = {k: [t for r in rounds for t in r[k]] for k in fns}
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    spread = {k: (min(v) * 1000, max(v) * 1000) for k, v in times.items()}
    round_ms = [{k: statistics.median(v) * 1000 for k, v in r.items()}
                for r in rounds]
    ratio = ms['firing'] / ms['forward']
    transfer = measure_pipeline(pipeline, model, probe, device,
                                label)
    training_thread_syncs = None
    if torch.device(device).type == 'cuda':
        from bench_transfer import count_syncs
        training_thread_syncs = count_syncs(firing)
        background()
        print(f'host syncs on the training thread in one firing (reduce '
              f'deferred, as the hook does): '
              f'{training_thread_syncs["total"]}; '
              f'{training_thread_syncs["where"]}')
    memory = None
    if args.firings:

        def whole_firing() -> None:
            firing()
            background()

        memory = measure_memory(whole_firing, args.firings, 10, 50, device)
        memory['model'] = label
    name = (torch.cuda.get_device_name() if torch.device(device).type ==
            'cuda' else platform.processor() or platform.machine())
    print(f'device: {name}; torch {torch.__version__}; model: '
          f'{description}, 640x640, batch 1, fp32; mmcv stubbed: '
          f'{MMCV_STUBBED}')
    print(f'{"":<12} {"median ms":>10} {"min ms":>8} {"max ms":>8} '
          + ' '.join(f'{"round " + str(i + 1):>8}'
                     for i in range(len(rounds))))
    for key in ms:
        print(f'{key:<12} {ms[key]:>10.2f} {spread[key][0]:>8.2f} '
              f'{spread[key][1]:>8.2f} '
              + ' '.join(f'{r[key]:>8.2f}' for r in round_ms))
    print(f'firing / forward = {ratio:.2f} (goal <= {FIRING_GOAL}: '
          f'{"PASS" if ratio <= FIRING_GOAL else "FAIL"}); '
          f'{args.rounds} x {args.repeats} alternating repeats; capture: '
          'the probe pass with hooks only; firing: capture + queued reduce + '
          'copies to host; background: render + write')
    print()
    print_transfer([transfer])
    if memory:
        print()
        print_memory([memory])
    ablated = None
    if args.ablation:
        print()
        ablated = ablation(model, probe, device, args.repeats,
                           synced(forward, device), args.value_range)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(device=name, torch=torch.__version__,
                           mmcv_stubbed=MMCV_STUBBED, median_ms=ms,
                           min_max_ms=spread, round_median_ms=round_ms,
                           ratio=ratio,
                           ratio_pass=ratio <= FIRING_GOAL,
                           repeats=args.repeats, transfer=transfer,
                           memory=memory, ablation=ablated,
                           training_thread_syncs=training_thread_syncs),
                      f, indent=2,
                      default=str)


if __name__ == '__main__':
    main()
