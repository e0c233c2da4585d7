"""One CAM firing against one inference.

The goal (issue 16) is at most 3x: a forward and a backward. Alternating,
medians over ``--repeats``, each call between device synchronisations:

- inference: the probe through the model in eval mode without gradients
  (``mode='predict'`` for mmyolo's detector, its boxes and NMS included);
- cam: :meth:`CamOrchestrator.fire` as the hook calls it on the training
  thread: the forward with gradients, the targets (a detector's kept
  boxes tied to their priors), one batched backward pass for up to 16
  targets down to the target layers, every layer's maps of all targets
  computed at once and fused, and the small result copied to the host;
- render: drawing that result (the hook's writer thread; timed apart).

Models:

- ``--model demo`` (needs mmcv, mmdet, mmyolo): the demo's YOLOv5-n at
  320 from ``configs/demo/yolov5_n_shapes.py``, with ``--checkpoint`` (e.g.
  ``work_dirs/demo/epoch_10.pth`` after ``make demo``) or random weights;
  the probe is the demo's first validation image, or the photo.
- ``--model plain`` (needs only mmengine, OpenCV and PyTorch; for a GPU
  machine): ``bench_gpu.py``'s plain-PyTorch YOLOv5-s layout at 640 with
  random weights; its targets are the ``--topk`` best priors' objectness
  plus class logits (a callable target, as a user would give), without
  NMS.

Example::

    python benchmarks/bench_cam.py --model demo \\
        --checkpoint work_dirs/demo/epoch_10.pth --json cam.json
"""
import argparse
import json
import os.path as osp
import platform
import statistics
import sys
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from bench_gpu import (PlainYOLOv5s, letterbox_probe,  # noqa: E402
                       probe_image, synced)
from timing import alternate  # noqa: E402

from mmfeatvis.capture import isolated_inference  # noqa: E402
from mmfeatvis.options import CamOptions  # noqa: E402
from mmfeatvis.orchestrator.cam import CamOrchestrator  # noqa: E402
from mmfeatvis.probe import Probe  # noqa: E402

CAM_GOAL = 3.0
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', choices=('demo', 'plain'),
                        default='demo')
    parser.add_argument('--checkpoint', default=None,
                        help='weights of the demo model (default: random)')
    parser.add_argument('--device', default=None,
                        help='default: cuda when available, else cpu')
    parser.add_argument('--methods', nargs='+',
                        default=['layercam', 'gradcam', 'eigencam'])
    parser.add_argument('--topk', type=int, default=3,
                        help='targets per firing (default 3)')
    parser.add_argument('--target-layers', nargs='+', default=None,
                        help="default: the neck (a backward through the "
                        "head only); 'backbone' backpropagates through the "
                        'neck too')
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--json', metavar='PATH', help='write results here')
    return parser.parse_args()


def top_priors(k: int):
    """A callable target for the plain model: its ``k`` best priors'
    objectness plus best class logit, one score each."""

    def target(outputs: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        scores = []
        for level in outputs:
            grid = level[0].reshape(3, 85, *level.shape[-2:])
            scores.append((grid[:, 4] + grid[:, 5:].amax(1)).flatten())
        flat = torch.cat(scores)
        best = flat.detach().topk(k).indices
        return {f'prior {int(i)}': flat[i] for i in best}

    return target


def build(args: argparse.Namespace,
          device: str) -> Tuple[nn.Module, Probe, CamOptions, str]:
    """The model, its probe, CAM options without the method, and the
    inference mode."""
    if args.model == 'plain':
        torch.manual_seed(0)
        model = PlainYOLOv5s().to(device).eval()
        probe = letterbox_probe(probe_image(), device)
        options = dict(target_layers=args.target_layers or ['neck'],
                       topk=args.topk, target=top_priors(args.topk))
        return model, probe, options, 'tensor'
    from mmfeatvis.cli.model import build_model, load_config, load_weights
    from mmfeatvis.probe import ProbeBuilder
    from mmfeatvis.testing import sample_photo_path, shapes_cfg_options
    data = osp.join(REPO, 'work_dirs', 'demo', 'data')
    cfg = load_config(
        osp.join(REPO, 'configs', 'demo', 'yolov5_n_shapes.py'),
        shapes_cfg_options(data) if osp.isdir(data) else None)
    model = build_model(cfg, device)
    if args.checkpoint:
        load_weights(model, args.checkpoint)
    image = osp.join(data, 'val', '000000.jpg')
    if not osp.isfile(image):
        image = sample_photo_path()
    probe, = ProbeBuilder(cfg).build(image, model)
    # Random weights score every box low: explain the best ones anyway.
    options = dict(target_layers=args.target_layers, topk=args.topk,
                   score_thr=0.3 if args.checkpoint else 0.0)
    return model, probe, options, 'predict'


def autocast_check(cam: CamOrchestrator, model: nn.Module, probe: Probe,
                   reference: list, device: str) -> Dict[str, Any]:
    """The same firing under autocast (float16 on a GPU, bfloat16 on the
    CPU), as an AMP training's hook would see: the maps' dtype and range,
    and how far they are from float32's where the targets are the same
    (half precision may order near-equal priors otherwise)."""
    kind = torch.device(device).type
    dtype = torch.float16 if kind == 'cuda' else torch.bfloat16
    with torch.autocast(kind, dtype=dtype):
        fired = cam.fire(model, [probe])
    panels = fired[0].panels
    same = [
        float(abs(a.cam - b.cam).max())
        for a, b in zip(panels, reference[0].panels) if a.title == b.title
    ]
    return dict(
        dtype=str(dtype),
        map_dtype=str(panels[0].cam.dtype) if panels else None,
        in_0_1=all(0 <= p.cam.min() and p.cam.max() <= 1 for p in panels),
        same_targets=len(same),
        max_abs_diff=max(same) if same else None)


def main() -> None:
    args = parse_args()
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model, probe, options, mode = build(args, device)

    def inference() -> Any:
        with isolated_inference(model):
            return model(**probe.model_kwargs(), mode=mode)

    results: Dict[str, Any] = dict(
        model=args.model, device=device, checkpoint=args.checkpoint,
        topk=args.topk, repeats=args.repeats, torch=torch.__version__,
        machine=(torch.cuda.get_device_name() if device.startswith('cuda')
                 else platform.processor() or platform.machine()),
        threads=torch.get_num_threads(), methods={})
    print(f'{args.model} on {results["machine"]} ({device}), '
          f'{args.topk} targets, medians of {args.repeats}')
    for method in args.methods:
        cam = CamOrchestrator(CamOptions(method=method, **options))
        cam.check(model, [probe])
        fired = cam.fire(model, [probe])
        targets = len(fired[0].panels)
        times = alternate(
            {
                'inference': synced(inference, device),
                'cam': synced(lambda: cam.fire(model, [probe]), device),
                'render': lambda: cam.render(fired[0]),
            },
            args.repeats,
            warmups=2)
        median = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        ratio = median['cam'] / median['inference']
        results['methods'][method] = dict(
            median_ms=median, ratio=ratio, targets=targets,
            autocast=autocast_check(cam, model, probe, fired, device))
        print(f'  {method:9s} targets {targets}: inference '
              f'{median["inference"]:7.1f} ms, CAM firing '
              f'{median["cam"]:7.1f} ms = {ratio:.2f}x (goal <= '
              f'{CAM_GOAL}x: {"met" if ratio <= CAM_GOAL else "NOT met"}),'
              f' render {median["render"]:.1f} ms (writer thread); under '
              f'{results["methods"][method]["autocast"]}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
