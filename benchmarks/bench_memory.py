"""Memory over many FeatmapVisHook firings: nothing may pile up.

The script builds YOLOv5-n at 320x320 from mmyolo's shipped config (random
weights), prepares a probe image once (as the hook does) and then fires the
hook's work ``--firings`` times in a row, in this thread: the probe pass
with capture, the reductions on the model's device, the statistics written
as scalars, rendering, and writing to a Visualizer with the local PNG and
TensorBoard backends into a temporary folder (what ``bench_hook.py`` times
as "firing" plus "writer").

It reads the process RSS (``VmRSS`` of ``/proc/self/status``) after a
warm-up and every ``--sample-every`` firings, counts the live tensors
before and after the firings, and on CUDA reads
``torch.cuda.memory_allocated`` before and after them. Goal: no growth
beyond noise, and nothing of the probe kept between firings (the same
number of live tensors and, on CUDA, the same allocated bytes).

Example::

    python benchmarks/bench_memory.py --firings 300 --json bench_memory.json
"""
import argparse
import gc
import os.path as osp
import sys
import tempfile
import warnings
from typing import Any, Callable, Dict, List, Optional

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from results_json import write_rows  # noqa: E402

MIB = 1024 * 1024
# RSS may move by a few MiB from allocator and TensorBoard buffering.
DEFAULT_RSS_NOISE_MIB = 8.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--firings', type=int, default=300,
                        help='firings after the warm-up (default 300)')
    parser.add_argument('--warmup', type=int, default=10,
                        help='firings before the first reading (default 10)')
    parser.add_argument('--sample-every', type=int, default=50,
                        help='read RSS every N firings (default 50)')
    parser.add_argument('--device', default='cpu',
                        help="'cpu' or 'cuda' (default cpu)")
    parser.add_argument('--rss-noise-mib', type=float,
                        default=DEFAULT_RSS_NOISE_MIB,
                        help='RSS growth counted as noise (default '
                        f'{DEFAULT_RSS_NOISE_MIB:g} MiB)')
    parser.add_argument('--probe', help='probe image (default: matplotlib '
                        "'s grace_hopper.jpg)")
    parser.add_argument('--json', metavar='PATH', help='write results here')
    return parser.parse_args()


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/status``."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no VmRSS in /proc/self/status')


def live_tensors() -> int:
    """Number of tensors the garbage collector can reach."""
    gc.collect()
    count = 0
    with warnings.catch_warnings():
        # isinstance() on deprecated module attributes may warn.
        warnings.simplefilter('ignore')
        for obj in gc.get_objects():
            try:
                count += isinstance(obj, torch.Tensor)
            except ReferenceError:  # a dead weak proxy
                pass
    return count


def make_visualizer(out_dir: str, name: str) -> Any:
    """A Visualizer with the local PNG and TensorBoard backends."""
    from mmengine.visualization import Visualizer
    return Visualizer(
        name=name,
        vis_backends=[dict(type='LocalVisBackend'),
                      dict(type='TensorboardVisBackend')],
        save_dir=out_dir)


def make_firing(pipeline: Any, model: torch.nn.Module, probe: Any,
                visualizer: Any) -> Callable[[], None]:
    """One whole firing of the hook's work, in this thread.

    Capture and reduce (the training thread's part), the statistics as
    scalars, then render and write (the background thread's part).
    """
    step = [0]

    def fire() -> None:
        step[0] += 1
        maps = pipeline.fire(model, [probe])
        pipeline.write(visualizer, maps, step[0])

    return fire


def _cuda(device: str) -> bool:
    return torch.device(device).type == 'cuda'


def _allocated(device: str) -> Optional[int]:
    if not _cuda(device):
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.memory_allocated(device)


def measure_memory(fire: Callable[[], None], firings: int, warmup: int,
                   sample_every: int, device: str,
                   rss_noise_mib: float = DEFAULT_RSS_NOISE_MIB
                   ) -> Dict[str, Any]:
    """Fire ``warmup + firings`` times and read memory along the way.

    Returns:
        dict: RSS after warm-up and at the end (bytes), its growth, RSS
        samples, live tensors before/after, and on CUDA the allocated
        bytes before/after and the peak during the firings.
    """
    for _ in range(warmup):
        fire()
    gc.collect()
    tensors_before = live_tensors()
    allocated_before = _allocated(device)
    if _cuda(device):
        torch.cuda.reset_peak_memory_stats(device)
    rss_warm = rss_bytes()
    samples: List[Dict[str, int]] = [dict(firing=0, rss=rss_warm)]
    for index in range(1, firings + 1):
        fire()
        if index % sample_every == 0 or index == firings:
            gc.collect()
            samples.append(dict(firing=index, rss=rss_bytes()))
    gc.collect()
    rss_end = rss_bytes()
    allocated_after = _allocated(device)
    tensors_after = live_tensors()
    growth = rss_end - rss_warm
    second_half = [s['rss'] for s in samples if s['firing'] >= firings // 2]
    result = dict(
        device=device, firings=firings, warmup=warmup, rss_warm=rss_warm,
        rss_end=rss_end, rss_growth=growth,
        rss_growth_second_half=second_half[-1] - second_half[0],
        rss_samples=samples, live_tensors_before=tensors_before,
        live_tensors_after=tensors_after,
        cuda_allocated_before=allocated_before,
        cuda_allocated_after=allocated_after,
        cuda_peak_allocated=(torch.cuda.max_memory_allocated(device)
                             if _cuda(device) else None),
        rss_noise_mib=rss_noise_mib)
    result['rss_pass'] = growth <= rss_noise_mib * MIB
    result['kept_pass'] = (tensors_after <= tensors_before
                           and allocated_after == allocated_before)
    return result


def print_memory(rows: List[Dict[str, Any]]) -> None:
    """The table of :func:`measure_memory` results, one row each."""
    header = (f'{"model":<18} {"device":>6} {"firings":>7} '
              f'{"RSS warm MiB":>12} {"RSS end MiB":>11} {"growth MiB":>10} '
              f'{"tensors":>9} {"CUDA alloc MiB":>15} {"verdict":>8}')
    print(header)
    for r in rows:
        alloc = '-'
        if r['cuda_allocated_before'] is not None:
            alloc = (f'{r["cuda_allocated_before"] / MIB:.1f}->'
                     f'{r["cuda_allocated_after"] / MIB:.1f}')
        passed = r['rss_pass'] and r['kept_pass']
        print(f'{r.get("model", "?"):<18} {r["device"]:>6} '
              f'{r["firings"]:>7} {r["rss_warm"] / MIB:>12.1f} '
              f'{r["rss_end"] / MIB:>11.1f} {r["rss_growth"] / MIB:>10.1f} '
              f'{r["live_tensors_before"]:>4}->{r["live_tensors_after"]:<4} '
              f'{alloc:>15} {"PASS" if passed else "FAIL":>8}')
    for r in rows:
        trail = ', '.join(f'{s["firing"]}: {s["rss"] / MIB:.1f}'
                          for s in r['rss_samples'])
        print(f'{r.get("model", "?")}: RSS MiB by firing: {trail}')
    print('goal: RSS growth after warm-up <= noise ('
          f'{rows[0]["rss_noise_mib"]:g} MiB), the same number of live '
          'tensors and (CUDA) the same allocated bytes before and after the '
          'firings: nothing of the probe kept between firings.')


def build_yolov5_n(device: str, probe_path: str) -> tuple:
    """YOLOv5-n at 320 from mmyolo's config, its probe and pipeline."""
    from bench_hook import build_model, load_config

    from mmfeatvis.hooks import FeatmapVisHook
    from mmfeatvis.probe import ProbeBuilder
    cfg = load_config('mmyolo',
                      'yolov5/yolov5_n-v61_syncbn_fast_8xb16-300e_coco.py',
                      320)
    model = build_model(cfg).to(device).eval()
    probe = ProbeBuilder(cfg).build(probe_path, model)[0]
    hook = FeatmapVisHook(probe=probe_path,
                          target_layers=['backbone', 'neck'])
    hook.orchestrator.resolve(model)
    return model, probe, hook.orchestrator


def main() -> None:
    args = parse_args()
    from bench_hook import default_probe
    torch.manual_seed(0)
    model, probe, pipeline = build_yolov5_n(args.device, args.probe
                                            or default_probe())
    with tempfile.TemporaryDirectory(prefix='bench_memory_') as out_dir:
        visualizer = make_visualizer(out_dir, 'bench_memory')
        fire = make_firing(pipeline, model, probe, visualizer)
        row = measure_memory(fire, args.firings, args.warmup,
                             args.sample_every, args.device,
                             args.rss_noise_mib)
        visualizer.close()
    row['model'] = 'yolov5_n@320'
    print_memory([row])
    if args.json:
        write_rows(args.json, [row])


if __name__ == '__main__':
    main()
