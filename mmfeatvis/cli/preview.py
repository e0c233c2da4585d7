"""``--preview-model``: every targetable layer and the shape of its output.

One forward pass of the first image records only output *shapes* (keeping
every layer's output of a large detector would take gigabytes), named the
way :func:`~mmfeatvis.capture.flatten_output` names captured maps, so that
what is listed is exactly what ``--target-layers`` accepts and draws.
"""
from collections import OrderedDict
from typing import Any, Dict, List, TextIO, Tuple

import torch
from torch import nn

from ..capture import flatten_output, named_layers
from ..isolation import isolated_inference
from ..probe import Probe


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f'({", ".join(str(d) for d in value.shape)})'
    return type(value).__name__


def record_output_shapes(model: nn.Module, probe: Probe
                         ) -> 'OrderedDict[str, List[Tuple[str, str]]]':
    """Run ``probe`` through ``model`` and note each module's outputs.

    Args:
        model (nn.Module): The unwrapped model.
        probe (Probe): A prepared image.

    Returns:
        OrderedDict[str, list[tuple[str, str]]]: For each module name (in
        model order), its flattened outputs as ``(name, shape)``; empty
        for modules the forward pass did not call.
    """
    layers = named_layers(model)
    calls: Dict[str, List[Any]] = {name: [] for name in layers}
    handles = []

    def make_hook(name: str):

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            calls[name].append([(leaf, _describe(value))
                                for leaf, value in flatten_output('', output)])

        return hook

    try:
        for name, module in layers.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        with isolated_inference(model):
            model(**probe.model_kwargs(), mode='tensor')
    finally:
        for handle in handles:
            handle.remove()
    shapes: 'OrderedDict[str, List[Tuple[str, str]]]' = OrderedDict()
    for name, outputs in calls.items():
        entries = []
        for index, leaves in enumerate(outputs):
            call = name if len(outputs) == 1 else f'{name}#{index}'
            entries.extend((call + leaf, shape) for leaf, shape in leaves)
        shapes[name] = entries
    return shapes


def print_preview(model: nn.Module, probe: Probe, stream: TextIO) -> int:
    """Print the layers of ``model`` with their output shapes for ``probe``.

    Args:
        model (nn.Module): The unwrapped model.
        probe (Probe): The first image, prepared.
        stream (TextIO): Where to print.

    Returns:
        int: The number of modules listed.
    """
    shapes = record_output_shapes(model, probe)
    layers = named_layers(model)
    inputs = probe.data['inputs']
    size = (_describe(inputs) if isinstance(inputs, torch.Tensor) else
            type(inputs).__name__)
    print(f'Layers of {type(model).__name__} that --target-layers can '
          f'name, with their output shapes for {probe.source} (network '
          f'input {size}):', file=stream)
    width = min(60, max(len(n) for n in layers) + 2)
    for name, entries in shapes.items():
        depth = name.count('.')
        label = '  ' * depth + name
        kind = type(layers[name]).__name__
        if not entries:
            print(f'{label:<{width}} {kind}  (not called by forward)',
                  file=stream)
        elif len(entries) == 1 and entries[0][0] == name:
            print(f'{label:<{width}} {kind}  {entries[0][1]}', file=stream)
        else:
            print(f'{label:<{width}} {kind}', file=stream)
            for leaf, shape in entries:
                print(f'{"  " * (depth + 1) + leaf:<{width}} {shape}',
                      file=stream)
    print(f'{len(shapes)} modules. Name several with --target-layers, '
          "or use globs such as 'backbone.stage*' (one level) and "
          "'neck.**' (all levels).", file=stream)
    return len(shapes)
