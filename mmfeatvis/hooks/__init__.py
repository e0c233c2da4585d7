"""MMEngine hooks of mmfeatvis."""
from .featmap_vis_hook import FeatmapVisHook

__all__ = ['FeatmapVisHook']
