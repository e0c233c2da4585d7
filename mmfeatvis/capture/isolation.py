"""Run a probe pass without leaving a trace on the training run.

The probe forward runs in eval mode, without gradients, and restores every
module's own ``training`` flag and every random number generator afterwards,
so the training that resumes is exactly the training that would have run
without the probe.
"""
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import nn


def capture_rng_state() -> Dict[str, Any]:
    """Snapshot Python, NumPy, torch CPU and (initialised) CUDA generators."""
    state: Dict[str, Any] = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state(),
    )
    # Touching CUDA when no one initialised it would create a context (and
    # cost memory) on a CPU-only or not-yet-started run.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` recorded."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state:
        torch.cuda.set_rng_state_all(state['cuda'])


def all_modules(model: nn.Module) -> List[nn.Module]:
    """Every module of ``model`` once, the model first.

    What ``model.modules()`` yields (in another order), without building
    the dotted name of every module on the way: this runs twice per probe
    pass, next to a forward that takes a few milliseconds on a GPU.
    """
    found: List[nn.Module] = []
    seen = set()
    stack = [model]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        found.append(module)
        stack.extend(child for child in module._modules.values()
                     if child is not None)
    return found


@contextmanager
def isolated_inference(
        model: nn.Module,
        modules: Optional[List[nn.Module]] = None) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode under ``torch.no_grad`` for one probe pass.

    On exit, also after an exception, each module's ``training`` flag and all
    random number states are restored to what they were.

    Eval mode is set flag by flag, as ``nn.Module.train(False)`` sets it,
    without calling the modules' own ``train`` overrides (OpenMMLab
    backbones re-freeze stages and norms there): they would run code whose
    effects restoring the flags cannot undo, and the recursive calls cost
    about 20 times more than setting the flags, which matters next to a
    forward pass that takes a few milliseconds on a GPU.

    Args:
        model (nn.Module): The unwrapped model.
        modules (list[nn.Module], optional): :func:`all_modules` of the
            model, when the caller walked it already. Defaults to None:
            walk it here.

    Yields:
        nn.Module: The same model, in eval mode.
    """
    if modules is None:
        modules = all_modules(model)
    flags: List[Tuple[nn.Module, bool]] = [(m, m.training) for m in modules]
    rng_state = capture_rng_state()
    try:
        _set_training_flags(module for module, _ in flags)
        with torch.no_grad():
            yield model
    finally:
        for module, was_training in flags:
            if module.training != was_training:
                _set_flag(module, was_training)
        restore_rng_state(rng_state)


def _set_training_flags(modules: Iterable[nn.Module]) -> None:
    for module in modules:
        if module.training:
            _set_flag(module, False)


def _set_flag(module: nn.Module, training: bool) -> None:
    # nn.Module.__setattr__ checks parameters, buffers and submodules
    # first; ``training`` is none of them, so the plain store is the same.
    object.__setattr__(module, 'training', training)


@contextmanager
def raised_score_threshold(
        model: nn.Module,
        score_thr: float,
        modules: Optional[List[nn.Module]] = None) -> Iterator[None]:
    """Let detection heads drop boxes below ``score_thr`` before NMS.

    A detector's own ``test_cfg.score_thr`` (0.001 for YOLOv5) keeps every
    candidate for mAP; the probe only draws boxes above ``score_thr``, and a
    barely trained detector would otherwise spend most of the probe pass in
    NMS. The original thresholds are restored on exit.

    Args:
        model (nn.Module): The unwrapped model.
        score_thr (float): The threshold of the drawn predictions.
        modules (list[nn.Module], optional): :func:`all_modules` of the
            model, when the caller walked it already.
    """
    changed: List[Tuple[Any, float]] = []
    seen = set()
    try:
        # A threshold of 0 raises nothing: skip the walk over the model.
        if score_thr <= 0:
            modules = []
        elif modules is None:
            modules = all_modules(model)
        for module in modules:
            test_cfg = getattr(module, 'test_cfg', None)
            if not isinstance(test_cfg, dict) or id(test_cfg) in seen:
                continue
            seen.add(id(test_cfg))
            old = test_cfg.get('score_thr')
            if isinstance(old, (int, float)) and old < score_thr:
                changed.append((test_cfg, old))
                test_cfg['score_thr'] = score_thr
        yield
    finally:
        for test_cfg, old in changed:
            test_cfg['score_thr'] = old
