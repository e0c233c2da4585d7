"""mmfeatvis: feature-map visualization for OpenMMLab models.

The public API: the hook; ``draw_featmap``, mmengine's drawing call made
fast; the capture stage (resolve layer names, capture their outputs); and
what measures ranges and statistics of maps. Everything else is reached
through its stage (``mmfeatvis.probe``, ``.capture``, ``.reduce``,
``.render``, ``.write``).
"""
from .capture import FeatureCapture, resolve_layers
from .draw import draw_featmap
from .hooks import FeatmapVisHook
from .reduce import (ReducedFeatmap, ValueRangeTracker, activation_stats,
                     measure_range, reduce_featmap)
from .version import __version__, version_info

__all__ = [
    '__version__', 'version_info', 'FeatmapVisHook', 'draw_featmap',
    'FeatureCapture', 'resolve_layers', 'reduce_featmap', 'ReducedFeatmap',
    'measure_range', 'ValueRangeTracker', 'activation_stats'
]
