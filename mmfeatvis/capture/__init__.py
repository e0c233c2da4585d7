"""Stage "capture": the outputs of named layers during a probe pass.

Layers are named as in ``model.named_modules()``, by dotted path or glob
(:func:`resolve_layers`); :class:`FeatureCapture` holds forward hooks only
for the pass it wraps, :func:`isolated_inference` leaves the model's
modes, gradients, random states and BatchNorm statistics as they were, and
:class:`ProbeLayout` feeds a CPU pass its input channels-last.
"""
from .hooks import (CapturedFeatures, FeatureCapture, detached, flatten_output,
                    layer_of, map_leaves)
from .isolation import all_modules, isolated_inference, raised_score_threshold
from .layers import (find_layers, is_glob, is_sharded, modules_computed_before,
                     named_exactly, named_layers, not_called_reason,
                     resolve_layers, unwrap_model)
from .layout import ProbeLayout, channels_last_eligible

__all__ = [
    'all_modules', 'CapturedFeatures', 'ProbeLayout',
    'channels_last_eligible', 'FeatureCapture', 'detached',
    'find_layers', 'flatten_output', 'map_leaves', 'is_glob', 'is_sharded',
    'isolated_inference', 'layer_of', 'modules_computed_before',
    'named_exactly', 'named_layers', 'not_called_reason',
    'raised_score_threshold', 'resolve_layers', 'unwrap_model'
]
