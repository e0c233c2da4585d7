"""mmfeatvis: feature-map visualization for OpenMMLab models."""
from .draw import draw_featmap, render_reduced
from .hooks import FeatmapVisHook
from .reduce import (ReducedFeatmap, activation_stats, reduce_featmap, to_chw,
                     value_range)
from .render import compose_panels, crop_to_valid, valid_region
from .version import __version__, version_info

__all__ = [
    '__version__', 'version_info', 'FeatmapVisHook', 'draw_featmap',
    'render_reduced', 'reduce_featmap', 'to_chw', 'value_range',
    'activation_stats', 'ReducedFeatmap', 'compose_panels', 'crop_to_valid',
    'valid_region'
]
