"""Capture stage: the forward hooks of a probe pass.

:class:`FeatureCapture` attaches forward hooks on entry and removes them in
``finally``, so no hook of ours stays on the model between firings; module
outputs are flattened into named maps (:func:`flatten_output`), and
:func:`layer_of` reads a map's module back from its name.
"""
import re
from collections import OrderedDict
from typing import (Any, Callable, Dict, FrozenSet, Iterator, List, Sequence,
                    Tuple)

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .layers import find_layers


def flatten_output(name: str, output: Any) -> Iterator[Tuple[str, Any]]:
    """Flatten a module's output into ``(name, leaf)`` pairs.

    Tuples and lists are named by index (``'backbone[0]'``), dicts by key
    (``'head[cls]'``); nested containers recurse. Leaves that are not
    tensors are yielded too, so callers can report them.

    Args:
        name (str): The module name.
        output (Any): What the module returned.

    Yields:
        tuple[str, Any]: Flattened name and leaf value.
    """
    if isinstance(output, torch.Tensor):
        yield name, output
    elif isinstance(output, (tuple, list)):
        for index, item in enumerate(output):
            yield from flatten_output(f'{name}[{index}]', item)
    elif isinstance(output, dict):
        for key, item in output.items():
            yield from flatten_output(f'{name}[{key}]', item)
    else:
        yield name, output


def map_leaves(output: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``output`` with ``fn`` applied to every tensor in it, tuples and
    lists becoming lists (as :func:`flatten_output` names them)."""
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, (tuple, list)):
        return [map_leaves(item, fn) for item in output]
    if isinstance(output, dict):
        return {key: map_leaves(item, fn) for key, item in output.items()}
    return output


def detached(output: Any) -> Any:
    """``output`` with every tensor detached."""
    return map_leaves(output, torch.Tensor.detach)


class CapturedFeatures(OrderedDict):
    """The maps of one probe pass by name, and the modules that ran.

    Attributes:
        called (frozenset[str]): Modules whose hook fired in the pass (a
            module called but returning nothing drawable is among them).
    """

    def __init__(self,
                 *args: Any,
                 called: FrozenSet[str] = frozenset(),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.called = called

    def __reduce__(self):  # keep ``called`` through copy.copy and pickle
        return (type(self), (list(self.items()), ), {'called': self.called})


class FeatureCapture:
    """Context manager that records the outputs of named modules.

    Hooks are attached on ``__enter__`` and always removed on ``__exit__``,
    also when the forward pass raises. Outputs are detached references; the
    caller decides what to keep.

    Args:
        model (nn.Module): The unwrapped model.
        layer_names (Sequence[str]): Module names, as
            :func:`~.layers.resolve_layers` returns them.
        keep (callable): What is kept of each output, with the same
            nesting. Defaults to :func:`detached`: the tensors, detached,
            so that nothing of the probe keeps an autograd graph.

    Example:
        >>> with FeatureCapture(model, ['backbone']) as capture:
        ...     model(inputs, mode='tensor')
        >>> capture.pop_features()  # {'backbone[0]': tensor, ...}
    """

    def __init__(self,
                 model: nn.Module,
                 layer_names: Sequence[str],
                 keep: Callable[[Any], Any] = detached) -> None:
        self._modules = find_layers(model, layer_names)
        self._keep = keep
        self._handles: List[RemovableHandle] = []
        self._calls: Dict[str, List[Any]] = {}

    def _make_hook(self, name: str):

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._calls.setdefault(name, []).append(self._keep(output))

        return hook

    def __enter__(self) -> 'FeatureCapture':
        self._calls = {}
        try:
            for name, module in self._modules:
                self._handles.append(
                    module.register_forward_hook(self._make_hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __exit__(self, *exc_info: Any) -> None:
        self._remove()

    def pop_features(self) -> 'CapturedFeatures':
        """Return what was captured since the last call, flattened.

        A module called several times in one forward (a head shared across
        pyramid levels) yields one entry per call, suffixed ``#0``, ``#1``...

        Returns:
            CapturedFeatures: Leaf name to tensor (or to the non-tensor
            value, so that callers can report it), in layer order, and the
            modules whose hooks fired.
        """
        features = CapturedFeatures(called=frozenset(self._calls))
        for name, _ in self._modules:
            calls = self._calls.get(name, [])
            for index, output in enumerate(calls):
                call_name = name if len(calls) == 1 else f'{name}#{index}'
                features.update(flatten_output(call_name, output))
        self._calls = {}
        return features


def layer_of(name: str) -> str:
    """The module a captured map's name comes from: ``'neck'`` for
    ``'neck[0]'`` and for ``'neck#1'`` (its second call); the inverse of
    the names :meth:`FeatureCapture.pop_features` builds."""
    return re.split(r'[\[#]', name, maxsplit=1)[0]
