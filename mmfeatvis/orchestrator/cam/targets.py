"""What a CAM explains: the scores of one model kind, one per map.

A :class:`TargetRule` runs the probe forward with gradients and turns the
live outputs into :class:`CamTarget` scores, each tied to what it
explains (a box and its class, a class over its mask, a logit). The rule
is chosen by model kind (:func:`target_rule`): a user-supplied callable,
a segmentor, a two-stage or a dense detector, else a classifier or plain
model whose tensor-mode output is ``(1, num_classes)`` logits. There is no
per-algorithm table: each rule reads the scores where the model's own
post-processing reads them.
"""
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ...probe import Probe
from ...render.boxes import class_name

#: A box in original-image pixels: (x1, y1, x2, y2).
Box = Tuple[float, float, float, float]
#: A user's target: the tensor-mode outputs -> one score, or named scores.
TargetFn = Callable[[Any], Union[torch.Tensor, Dict[str, torch.Tensor]]]


@dataclass
class CamTarget:
    """One score to explain and what it stands for.

    Attributes:
        score (torch.Tensor): 0-d, differentiable down to the captured
            activations.
        title (str): What the panel says, e.g. ``'dog 0.87'``.
        boxes (list): ``(box, label, score)`` drawn with the map: one for a
            box's target, all of a class for a whole-class target.
        label (int, optional): The class explained.
    """
    score: torch.Tensor
    title: str
    boxes: List[Tuple[Box, int, float]] = field(default_factory=list)
    label: Optional[int] = None


class TargetRule:
    """How one model kind is explained.

    Args:
        topk (int): Most targets per probe (boxes, classes or logits).
        score_thr (float): Detectors: boxes scoring below are not
            explained.
        classes (Sequence[int], optional): Explain these classes, each
            as a whole (all its boxes together, its mask, its logit),
            instead of the top ``topk`` predictions.
    """
    #: What the rule explains, for messages.
    kind = 'model'

    def __init__(self,
                 topk: int = 3,
                 score_thr: float = 0.3,
                 classes: Optional[Sequence[int]] = None) -> None:
        self.topk = topk
        self.score_thr = score_thr
        self.classes = None if classes is None else [int(c) for c in classes]

    def nothing_note(self) -> str:
        """What a picture without targets says."""
        return 'nothing to explain'

    def forward(self, model: nn.Module, probe: Probe) -> Any:
        """The probe's forward pass, gradients on: the live outputs."""
        return model(**probe.model_kwargs(), mode='tensor')

    def targets(self, model: nn.Module, probe: Probe, outputs: Any,
                class_names: Optional[Sequence[str]]) -> List[CamTarget]:
        """The scores to explain for this probe, best first."""
        raise NotImplementedError

    def any_score(self, model: nn.Module, outputs: Any) -> torch.Tensor:
        """One score that depends on everything a target could: the
        set-up check takes its gradients to find layers no target
        reaches, also before the model predicts anything."""
        raise NotImplementedError


def _logits(outputs: Any) -> torch.Tensor:
    logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        found = getattr(logits, 'shape', type(logits).__name__)
        raise ValueError(
            "a classifier's CAM needs (1, num_classes) logits from the "
            f"model's tensor mode, got {found}; give cam=dict(target=...) "
            'for other models.')
    return logits


class ClassifierRule(TargetRule):
    """Classifiers and plain models: the top ``topk`` logits, or the
    logits of ``classes``."""
    kind = 'classifier'

    def targets(self, model: nn.Module, probe: Probe, outputs: Any,
                class_names: Optional[Sequence[str]]) -> List[CamTarget]:
        logits = _logits(outputs)[0]
        if self.classes is not None:
            for label in self.classes:
                if not 0 <= label < logits.numel():
                    raise ValueError(f'class {label} is out of range for '
                                     f'{logits.numel()} classes')
            chosen = self.classes
        else:
            chosen = logits.detach().topk(min(self.topk,
                                              logits.numel())).indices.tolist()
        return [
            CamTarget(
                logits[label],
                f'{class_name(label, class_names)} '
                f'{float(logits[label].detach()):.2f}',
                label=label) for label in chosen
        ]

    def any_score(self, model: nn.Module, outputs: Any) -> torch.Tensor:
        return _logits(outputs).sum()


def load_target_fn(target: Union[str, TargetFn]) -> TargetFn:
    """A callable, or ``'package.module.function'`` imported (configs hold
    strings)."""
    if callable(target):
        return target
    if not isinstance(target, str) or '.' not in target:
        raise ValueError(f"cam target must be a callable or "
                         f"'module.function', got {target!r}")
    module_name, _, name = target.rpartition('.')
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f'cam target {target!r} cannot be imported: '
                         f'{error}') from error
    if not callable(found):
        raise ValueError(f'cam target {target!r} is not callable')
    return found


class CallableRule(TargetRule):
    """A user's function of the tensor-mode outputs: one score, or a dict
    of named scores (one map each)."""
    kind = 'callable target'

    def __init__(self, target: Union[str, TargetFn], **kwargs) -> None:
        super().__init__(**kwargs)
        self.fn = load_target_fn(target)

    def _scores(self, outputs: Any) -> Dict[str, torch.Tensor]:
        found = self.fn(outputs)
        scores = found if isinstance(found, dict) else {'target': found}
        for name, score in scores.items():
            if not isinstance(score, torch.Tensor) or score.numel() != 1:
                raise ValueError(
                    f'the cam target must return a scalar tensor (or a '
                    f'dict of them); {name!r} is '
                    f'{getattr(score, "shape", type(score).__name__)}')
        return {name: score.reshape(()) for name, score in scores.items()}

    def targets(self, model: nn.Module, probe: Probe, outputs: Any,
                class_names: Optional[Sequence[str]]) -> List[CamTarget]:
        return [
            CamTarget(score, f'{name} {float(score.detach()):.3g}')
            for name, score in self._scores(outputs).items()
        ]

    def any_score(self, model: nn.Module, outputs: Any) -> torch.Tensor:
        return torch.stack(list(self._scores(outputs).values())).sum()


def target_rule(model: nn.Module,
                target: Union[None, str, TargetFn] = None,
                **kwargs) -> TargetRule:
    """The rule that explains ``model``.

    Args:
        model (nn.Module): The unwrapped model.
        target (callable | str, optional): A user's target; see
            :class:`CallableRule`.
        **kwargs: ``topk``, ``score_thr`` and ``classes`` (see
            :class:`TargetRule`).

    Raises:
        ValueError: For a detector kind with no rule, naming it.
    """
    if target is not None:
        return CallableRule(target, **kwargs)
    from .detection import detector_rule
    from .segmentation import segmentor_rule
    for found in (segmentor_rule, detector_rule):
        rule = found(model, **kwargs)
        if rule is not None:
            return rule
    return ClassifierRule(**kwargs)
