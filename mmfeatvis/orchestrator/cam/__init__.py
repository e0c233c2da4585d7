"""Class activation maps of fixed probes: why the model predicts what it
does.

:class:`CamOrchestrator` (:mod:`.firing`) runs a probe forward with
gradients and explains each target of the model's kind
(:mod:`.targets`): a detector's kept boxes (:mod:`.detection`), a
segmentor's classes over their masks (:mod:`.segmentation`), a
classifier's logits, or a user's score.
"""
from .firing import CamOrchestrator
from .targets import (CallableRule, CamTarget, ClassifierRule, TargetRule,
                      target_rule)

__all__ = [
    'CallableRule', 'CamOrchestrator', 'CamTarget', 'ClassifierRule',
    'TargetRule', 'target_rule'
]
