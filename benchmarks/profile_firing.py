"""Where the host time of one firing goes, on any device (cProfile).

Profiles ``--calls`` plain forwards and ``--calls`` firings (capture +
reduce, as ``bench_gpu.py`` times them) of the plain-PyTorch YOLOv5-s
layout and prints the functions by own time, so that the firing's
overhead over the forward can be read off.

Example::

    python benchmarks/profile_firing.py --device cuda --calls 100
"""
import argparse
import cProfile
import os.path as osp
import pstats
import sys

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bench_gpu  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--calls', type=int, default=100)
    parser.add_argument('--top', type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = bench_gpu.PlainYOLOv5s().to(args.device).eval()
    probe = bench_gpu.letterbox_probe(bench_gpu.probe_image(), args.device)
    pipeline = bench_gpu.make_pipeline(model)

    def forward() -> None:
        with torch.no_grad():
            model(probe.data['inputs'])

    def firing() -> None:
        for item in pipeline.capture(model, [probe]):
            pipeline.reduce(*item)

    for fn in (forward, firing, firing, forward):  # warm-up, graph record
        fn()
    for name, fn in (('forward', forward), ('firing', firing)):
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.calls):
            fn()
            if args.device != 'cpu':
                torch.cuda.synchronize()
        profiler.disable()
        print(f'==== {name} x {args.calls}')
        pstats.Stats(profiler).sort_stats('tottime').print_stats(args.top)


if __name__ == '__main__':
    main()
