"""Bytes copied from the device to the host per firing, against the maps.

The script builds a model from an installed package's shipped config
(random weights), prepares a probe image once and fires the training
thread's part of the hook (capture, then ``FeatmapOrchestrator.reduce``). It
counts, from what the pipeline returns and without patching the library:

- captured: the bytes of the tensors that ``capture()`` returned (the
  full-size layer outputs, on the model's device);
- to host: the bytes of what ``reduce`` moved to the host: the reduced
  maps and channel indices of every ``ProbeMaps.layers[i].reduced``, the
  prediction's tensors, and 4 bytes (a float32 on the device) per value
  range bound and statistic.

On CUDA it also records one firing with ``torch.profiler`` and counts the
``Memcpy DtoH`` events and their bytes, and counts the host
synchronisations of capture + reduce with
``torch.cuda.set_sync_debug_mode('warn')``, grouped by source line.

Example::

    python benchmarks/bench_transfer.py --models yolov5_n --json t.json
"""
import argparse
import collections
import json
import linecache
import os
import os.path as osp
import sys
import tempfile
import warnings
from typing import Any, Callable, Dict, List

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from results_json import write_rows  # noqa: E402

FLOAT_BYTES = 4  # ranges and statistics are float32 on the device


def parse_args() -> argparse.Namespace:
    from bench_hook import MODELS_TO_RUN
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['yolov5_n'],
                        choices=sorted(MODELS_TO_RUN),
                        help='models to measure (default yolov5_n)')
    parser.add_argument('--device', default='cpu',
                        help="'cpu' or 'cuda' (default cpu)")
    parser.add_argument('--probe', help='probe image (default: matplotlib '
                        "'s grace_hopper.jpg)")
    parser.add_argument('--json', metavar='PATH', help='write results here')
    return parser.parse_args()


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in ``obj`` (tensors, containers, data
    samples and instance data)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    if hasattr(obj, 'all_items'):  # mmengine BaseDataElement
        return sum(tensor_bytes(v) for _, v in obj.all_items())
    return 0


def transfer_bytes(pipeline: Any, model: torch.nn.Module,
                   probe: Any) -> Dict[str, Any]:
    """Captured bytes against bytes moved to the host, per layer output.

    Runs one capture + reduce. Returns a dict with ``layers`` (one row per
    map), ``captured``, ``to_host`` and the ``ratio`` between them.
    """
    captured = pipeline.capture(model, [probe])
    rows: List[Dict[str, Any]] = []
    total_captured = total_host = 0
    prediction_bytes = 0
    for item in captured:
        features = item[1]
        sizes = {name: tensor_bytes(value)
                 for name, value in features.items()}
        shapes = {name: tuple(value.shape) for name, value in features.items()
                  if isinstance(value, torch.Tensor)}
        maps = pipeline.reduce(*item)
        for layer in maps.layers:
            reduced = layer.reduced
            host = tensor_bytes(reduced.maps) + tensor_bytes(
                reduced.channels)
            floats = (2 if layer.norm_range is not None else 0) + len(
                layer.stats or {})
            rows.append(dict(
                layer=layer.layer, shape=shapes.get(layer.layer),
                captured=sizes.get(layer.layer, 0),
                reduced_shape=tuple(reduced.maps.shape),
                maps_device=str(reduced.maps.device),
                to_host=host + floats * FLOAT_BYTES,
                floats=floats))
        total_captured += sum(sizes.values())
        prediction_bytes += tensor_bytes(maps.prediction)
    total_host = sum(r['to_host'] for r in rows) + prediction_bytes
    del captured
    return dict(layers=rows, captured=total_captured, to_host=total_host,
                prediction=prediction_bytes,
                ratio=total_host / max(total_captured, 1))


def count_syncs(fn: Callable[[], Any]) -> Dict[str, Any]:
    """Host synchronisations of ``fn`` on CUDA, grouped by source line.

    Uses ``torch.cuda.set_sync_debug_mode('warn')``: every synchronising
    CUDA call (``.item()``, ``.tolist()``, ``.cpu()``, ``bool(t)``, ...)
    warns once, from the Python line that made it.
    """
    torch.cuda.synchronize()
    where: collections.Counter = collections.Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode('default')
    for warning in caught:
        if 'synchroniz' in str(warning.message):
            code = linecache.getline(warning.filename, warning.lineno)
            where[f'{osp.relpath(warning.filename)}:{warning.lineno}: '
                  f'{code.strip()}'] += 1
    return dict(total=sum(where.values()), where=dict(where.most_common()))


def profile_copies(fn: Callable[[], Any]) -> Dict[str, Any]:
    """Memcpy events of one call of ``fn`` on CUDA, from the profiler's
    trace: count and bytes per direction."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU,
                             ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    handle, path = tempfile.mkstemp(suffix='.json')
    os.close(handle)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            trace = json.load(f)
    finally:
        os.remove(path)
    copies: Dict[str, Dict[str, int]] = {}
    for event in trace.get('traceEvents', []):
        name = str(event.get('name', ''))
        if event.get('cat') != 'gpu_memcpy':  # not cudaMemcpyAsync calls
            continue
        kind = ('DtoH' if 'DtoH' in name else
                'HtoD' if 'HtoD' in name else 'DtoD' if 'DtoD' in name
                else name)
        entry = copies.setdefault(kind, dict(count=0, bytes=0))
        entry['count'] += 1
        entry['bytes'] += int(event.get('args', {}).get('bytes', 0))
    return copies


def print_transfer(rows: List[Dict[str, Any]]) -> None:
    """The per-layer and total tables of :func:`transfer_bytes` rows."""
    print(f'{"model":<18} {"layer":<16} {"captured":>18} {"KiB":>9} '
          f'{"reduced to":>14} {"to host B":>10} {"share":>7}')
    for r in rows:
        for layer in r['layers']:
            shape = 'x'.join(map(str, layer['shape'] or ()))
            print(f'{r["model"]:<18} {layer["layer"]:<16} {shape:>18} '
                  f'{layer["captured"] / 1024:>9.1f} '
                  f'{"x".join(map(str, layer["reduced_shape"])):>14} '
                  f'{layer["to_host"]:>10} '
                  f'{layer["to_host"] / max(layer["captured"], 1):>7.2%}')
    print()
    print(f'{"model":<18} {"device":>6} {"captured KiB":>12} '
          f'{"to host KiB":>11} {"share":>7} {"DtoH (prof)":>16} '
          f'{"syncs":>6}')
    for r in rows:
        dtoh = r.get('profiler', {}).get('DtoH')
        prof = (f'{dtoh["count"]} / {dtoh["bytes"] / 1024:.1f}K'
                if dtoh else '-')
        syncs = r.get('syncs', {}).get('total', '-')
        print(f'{r["model"]:<18} {r["device"]:>6} '
              f'{r["captured"] / 1024:>12.1f} {r["to_host"] / 1024:>11.1f} '
              f'{r["ratio"]:>7.2%} {prof:>16} {syncs:>6}')
    for r in rows:
        for line, count in r.get('syncs', {}).get('where', {}).items():
            print(f'{r["model"]}: sync x{count} at {line}')
    print('to host: reduced maps + channel indices + predictions + 4 bytes '
          'per range bound and statistic, from what reduce() returned; '
          'DtoH (prof): profiler Memcpy DtoH events / bytes in one firing '
          '(CUDA only); syncs: set_sync_debug_mode warnings in capture + '
          'reduce (CUDA only).')


def measure(name: str, device: str, probe_path: str) -> Dict[str, Any]:
    """Transfer counts for one model of ``bench_hook.MODELS_TO_RUN``."""
    from bench_hook import MODELS_TO_RUN, build_model, load_config

    from mmfeatvis.hooks import FeatmapVisHook
    from mmfeatvis.probe import ProbeBuilder
    package, relative, side = MODELS_TO_RUN[name]
    cfg = load_config(package, relative, side)
    model = build_model(cfg).to(device).eval()
    probe = ProbeBuilder(cfg).build(probe_path, model)[0]
    pipeline = FeatmapVisHook(probe=probe_path,
                              target_layers=['backbone', 'neck']).orchestrator
    pipeline.resolve(model)
    return measure_pipeline(pipeline, model, probe, device,
                            f'{name}@{probe.data["inputs"].shape[-1]}')


def measure_pipeline(pipeline: Any, model: torch.nn.Module, probe: Any,
                     device: str, label: str) -> Dict[str, Any]:
    """Byte counts, and on CUDA profiler copies and syncs, for a pipeline
    that is ready to capture ``probe`` on ``model``."""
    def firing() -> None:
        pipeline.fire(model, [probe])

    firing()  # warm-up; the first firing also fixes the value ranges
    row = transfer_bytes(pipeline, model, probe)
    row.update(model=label, device=device)
    if torch.device(device).type == 'cuda':
        firing()
        row['profiler'] = profile_copies(firing)
        row['syncs'] = count_syncs(firing)
    return row


def main() -> None:
    args = parse_args()
    from bench_hook import default_probe
    torch.manual_seed(0)
    probe_path = args.probe or default_probe()
    rows = [measure(name, args.device, probe_path) for name in args.models]
    print_transfer(rows)
    if args.json:
        write_rows(args.json, rows)


if __name__ == '__main__':
    main()
