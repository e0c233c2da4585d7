"""Capture stage: which modules of a model are captured.

Layer names are resolved once (exact names, dotted paths and globs) against
the model with its wrappers (DDP, FSDP, activation checkpointing,
``torch.compile``) looked through; :mod:`.hooks` then captures them.
"""
import difflib
import re
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Sequence, Set, Tuple

from torch import nn

from .isolation import isolated_inference

#: Name components that wrappers (FSDP units, activation checkpointing,
#: ``torch.compile``) insert; users name layers without them.
_WRAPPER_NAME_PARTS = ('_fsdp_wrapped_module', '_checkpoint_wrapped_module',
                       '_orig_mod')


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the model inside DDP/FSDP-style wrappers and compiled modules.

    Args:
        model (nn.Module): The model as the runner holds it.

    Returns:
        nn.Module: The innermost model, whose module names users write.
    """
    from mmengine.model import is_model_wrapper
    while True:
        if is_model_wrapper(model) and hasattr(model, 'module'):
            model = model.module
        elif hasattr(model, '_orig_mod') and isinstance(
                getattr(model, '_orig_mod'), nn.Module):
            model = model._orig_mod
        else:
            return model


def named_layers(model: nn.Module) -> 'OrderedDict[str, nn.Module]':
    """Map the names users write to modules, wrapper components removed.

    Args:
        model (nn.Module): The unwrapped model.

    Returns:
        OrderedDict[str, nn.Module]: Module by user-facing name, in model
        order, the root module left out.
    """
    return OrderedDict(
        (name, module) for name, (_, module) in _walk(model).items())


def _walk(model: nn.Module) -> 'OrderedDict[str, Tuple[str, nn.Module]]':
    """User-facing name -> (attribute path in ``model``, module)."""
    layers: 'OrderedDict[str, Tuple[str, nn.Module]]' = OrderedDict()
    for path, module in model.named_modules():
        clean = '.'.join(
            part for part in path.split('.')
            if part not in _WRAPPER_NAME_PARTS)
        if clean and clean not in layers:
            layers[clean] = (path, module)
    _PATHS[model] = {name: path for name, (path, _) in layers.items()}
    return layers


# Attribute paths of the user-facing names, per model: finding a layer
# along its path costs microseconds, walking every module of a detector
# close to a millisecond, at every firing.
_PATHS: 'weakref.WeakKeyDictionary[nn.Module, Dict[str, str]]' = (
    weakref.WeakKeyDictionary())


def find_layers(model: nn.Module,
                layer_names: Sequence[str]) -> List[Tuple[str, nn.Module]]:
    """The modules of resolved layer names, as the model holds them now.

    Args:
        model (nn.Module): The unwrapped model.
        layer_names (Sequence[str]): Names as :func:`resolve_layers`
            returns them.

    Returns:
        list[tuple[str, nn.Module]]: (name, module) in the given order.

    Raises:
        ValueError: A name that no module has, with the closest names.
    """
    paths = _PATHS.get(model)
    if paths is not None:
        try:
            # Followed from the root each time, so a replaced submodule is
            # found, never a stale one.
            return [(name, model.get_submodule(paths[name]))
                    for name in layer_names]
        except (KeyError, AttributeError):
            pass  # the model changed since it was walked: walk it again
    modules = named_layers(model)
    missing = [name for name in layer_names if name not in modules]
    if missing:
        raise ValueError(_unknown_layer_message(missing[0], list(modules)))
    return [(name, modules[name]) for name in layer_names]


#: Wrapper classes whose forward gathers sharded parameters with collectives
#: (FSDP, DeepSpeed); every rank must then run the probe through them.
SHARDED_WRAPPERS = ('FullyShardedDataParallel', 'MMFullyShardedDataParallel',
                    'DeepSpeedEngine', 'MMDeepSpeedEngineWrapper')


def is_sharded(model: nn.Module) -> bool:
    """Whether a forward of ``model`` needs collectives on every rank.

    True for FSDP (``FullyShardedDataParallel`` units anywhere in the tree,
    or modules sharded by ``fully_shard``) and DeepSpeed engines.
    """
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6 has only the wrapper classes
        FSDPModule = ()
    return any(
        type(module).__name__ in SHARDED_WRAPPERS
        or isinstance(module, FSDPModule) for module in model.modules())


def _glob_to_regex(pattern: str) -> 're.Pattern[str]':
    """Translate a layer glob: ``*`` stays within one level, ``**`` spans.

    ``backbone.stage*`` thus matches ``backbone.stage1`` but not
    ``backbone.stage1.conv``, which is what users mean by it.
    """
    parts = re.split(r'(\*\*|\*|\?|\[[^\]]*\])', pattern)
    regex = []
    for part in parts:
        if part == '**':
            regex.append('.*')
        elif part == '*':
            regex.append('[^.]*')
        elif part == '?':
            regex.append('[^.]')
        elif part.startswith('[') and part.endswith(']') and len(part) > 2:
            regex.append(part.replace('[!', '[^'))
        else:
            regex.append(re.escape(part))
    return re.compile(''.join(regex) + r'\Z')


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` holds a glob character (``*``, ``?`` or ``[``),
    for layer names and file paths alike."""
    return any(ch in pattern for ch in '*?[')


def resolve_layers(model: nn.Module, patterns: Sequence[str]) -> List[str]:
    """Resolve layer names and globs to module names, in model order.

    Args:
        model (nn.Module): The unwrapped model.
        patterns (Sequence[str]): Exact module names or dotted paths
            (``'backbone'``, ``'backbone.stage4'``; a leading ``'module.'``
            from a DDP state dict is accepted) and globs
            (``'backbone.stage*'``, ``'neck.**.conv'``).

    Returns:
        list[str]: The module names, each once, in the order of
        ``model.named_modules()``.

    Raises:
        ValueError: If a pattern matches no module. The message names the
            pattern and the closest existing module names.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise ValueError('target_layers is empty: name at least one layer, '
                         "e.g. ['backbone'] or ['neck.*'].")
    names = list(named_layers(model))
    name_set = set(names)
    selected = set()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f'Layer names must be non-empty strings, got '
                             f'{pattern!r}.')
        candidate = pattern
        for prefix in ('module.', '_orig_mod.'):
            if candidate.startswith(prefix) and candidate not in name_set:
                candidate = candidate[len(prefix):]
        if is_glob(candidate):
            regex = _glob_to_regex(candidate)
            matches = [name for name in names if regex.match(name)]
        else:
            matches = [candidate] if candidate in name_set else []
        if not matches:
            raise ValueError(_unknown_layer_message(pattern, names))
        selected.update(matches)
    return [name for name in names if name in selected]


def modules_computed_before(model: nn.Module, forward: Callable[[], Any],
                            layers: Sequence[str]) -> Set[str]:
    """Names of the modules that ``forward()`` enters before the last of
    ``layers`` returns, those layers and their submodules included: what
    the maps of ``layers`` depend on.

    Args:
        model (nn.Module): The unwrapped model (hooks go on it).
        forward (callable): Runs one forward pass of ``model``.
        layers (Sequence[str]): Module names.

    Returns:
        set[str]: Module names (``''`` is the model itself).
    """
    entered: List[str] = []
    finished: Dict[str, int] = {}
    handles = []

    def on_enter(name: str):

        def hook(module: nn.Module, args: Any) -> None:
            entered.append(name)

        return hook

    def on_return(name: str):

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            finished.setdefault(name, len(entered))

        return hook

    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(on_enter(name)))
            if name in layers:
                handles.append(module.register_forward_hook(on_return(name)))
        with isolated_inference(model):
            forward()
    finally:
        for handle in handles:
            handle.remove()
    cut = max(finished.values()) if finished else len(entered)
    return set(entered[:cut])


def named_exactly(patterns: Sequence[str], names: Sequence[str]) -> Set[str]:
    """Those of the resolved ``names`` that a pattern names exactly (not
    through a glob): a user who names a layer expects it drawn."""
    exact = set()
    for pattern in ([patterns] if isinstance(patterns, str) else patterns):
        for prefix in ('', 'module.', '_orig_mod.'):
            if pattern.startswith(prefix) and pattern[len(prefix):] in names:
                exact.add(pattern[len(prefix):])
    return exact


def not_called_reason(model: nn.Module, layer: str) -> str:
    """Why ``layer`` was not called in the probe's forward, with the advice
    that fits it."""
    module = model.get_submodule(layer)
    if layer.split('.')[0] == 'data_preprocessor':
        return ('it was not called in the probe forward: the data '
                'preprocessor prepares a batch before the forward (the '
                'Runner calls it in train_step and val_step), and the probe '
                'is prepared once beforehand; target a layer of the network '
                'instead, such as backbone')
    if 'loss' in layer.rsplit(
            '.',
            1)[-1].lower() or type(module).__name__.lower().endswith('loss'):
        return ('it was not called in the probe forward: it is a loss, '
                'which the model calls only to compute training losses, '
                'not in the forward that predicts; target the layer whose '
                'output it scores (the head, or one of its convolutions)')
    return ('it was not called in the probe forward (its parent may call '
            'its .forward() directly, which skips hooks, or use it only '
            'in another mode); target one of its submodules instead')


def _unknown_layer_message(pattern: str, names: List[str]) -> str:
    stem = pattern.replace('*', '').replace('?', '').strip('.')
    close = difflib.get_close_matches(stem, names, n=5, cutoff=0.5)
    top_level = sorted({name.split('.')[0] for name in names})
    hint = (f' Closest names: {", ".join(close)}.' if close else '')
    return (f'Unknown layer {pattern!r}: no module of the model matches '
            f'it.{hint} Top-level modules: {", ".join(top_level)}. '
            "Use --preview-model (tools/featvis.py) to list them all.")
