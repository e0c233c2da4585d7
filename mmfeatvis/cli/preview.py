"""``--preview-model``: every targetable layer and the shape of its output.

One forward pass of the first image records only output *shapes* (keeping
every layer's output of a large detector would take gigabytes), named the
way :class:`~mmfeatvis.capture.FeatureCapture` names captured maps, so
that what is listed is exactly what ``--target-layers`` accepts and draws.
"""
from collections import OrderedDict
from typing import Any, List, TextIO, Tuple

import torch
from torch import nn

from ..capture import (FeatureCapture, isolated_inference, layer_of,
                       map_leaves, named_layers)
from ..probe import Probe


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f'({", ".join(str(d) for d in value.shape)})'
    return type(value).__name__


def record_output_shapes(
        model: nn.Module,
        probe: Probe) -> 'OrderedDict[str, List[Tuple[str, str]]]':
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
    # Only shapes are kept: every output of a large detector would take
    # gigabytes.
    with isolated_inference(model), FeatureCapture(
            model, list(layers),
            keep=lambda output: map_leaves(output, _describe)) as capture:
        model(**probe.model_kwargs(), mode='tensor')
        outputs = capture.pop_features()
    shapes: 'OrderedDict[str, List[Tuple[str, str]]]' = OrderedDict(
        (name, []) for name in layers)
    for name, shape in outputs.items():
        if not isinstance(shape, str):  # a leaf that is not a tensor
            shape = _describe(shape)
        shapes[layer_of(name)].append((name, shape))
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
    size = (
        _describe(inputs)
        if isinstance(inputs, torch.Tensor) else type(inputs).__name__)
    print(
        f'Layers of {type(model).__name__} that --target-layers can '
        f'name, with their output shapes for {probe.source} (network '
        f'input {size}):',
        file=stream)
    width = min(60, max(len(n) for n in layers) + 2)
    for name, entries in shapes.items():
        depth = name.count('.')
        label = '  ' * depth + name
        kind = type(layers[name]).__name__
        if not entries:
            print(
                f'{label:<{width}} {kind}  (not called by forward)',
                file=stream)
        elif len(entries) == 1 and entries[0][0] == name:
            print(f'{label:<{width}} {kind}  {entries[0][1]}', file=stream)
        else:
            print(f'{label:<{width}} {kind}', file=stream)
            for leaf, shape in entries:
                print(
                    f'{"  " * (depth + 1) + leaf:<{width}} {shape}',
                    file=stream)
    print(
        f'{len(shapes)} modules. Name several with --target-layers, '
        "or use globs such as 'backbone.stage*' (one level) and "
        "'neck.**' (all levels).",
        file=stream)
    return len(shapes)
