"""Stage "render": NumPy and OpenCV drawing of reduced maps on the host.

Colour maps (:mod:`.colormap`), the padding cut and the warp onto the
original image (:mod:`.align`), blending (:mod:`.overlay`), tiles, titles
and colour bars (:mod:`.layout`), predicted boxes (:mod:`.boxes`), a
layer's picture (:mod:`.featmap`), a probe's pictures and overview
(:mod:`.result`) and a checkpoint series' strip (:mod:`.series`).
"""
from .align import crop_to_content, feature_to_image_matrix, warp_to_image
from .annotations import draw_sample
from .boxes import draw_detections
from .colormap import apply_colormap, colormap_names, get_lut
from .featmap import check_draw_options, render_reduced
from .layout import (check_arrangement, colour_bar_height, compose_panels,
                     draw_label, fitted_arrangement, format_range, grid_canvas,
                     grid_cell, range_title, tile_grid, with_colour_bar)
from .overlay import (blend, colorize, image_at, prepare_image, resize_map,
                      to_uint8)
from .result import (MIN_TILE_SIDE, OVERVIEW_TILE_SIDE, ProbeResult,
                     input_cell_scale)
from .series import series_strip, titled

__all__ = [
    'MIN_TILE_SIDE', 'OVERVIEW_TILE_SIDE', 'ProbeResult', 'apply_colormap',
    'blend', 'check_arrangement', 'check_draw_options', 'colorize',
    'colormap_names', 'colour_bar_height', 'compose_panels', 'crop_to_content',
    'draw_detections', 'draw_label', 'draw_sample', 'feature_to_image_matrix',
    'fitted_arrangement', 'format_range', 'get_lut', 'grid_canvas',
    'grid_cell', 'image_at', 'input_cell_scale', 'prepare_image',
    'range_title', 'render_reduced', 'resize_map', 'series_strip', 'tile_grid',
    'titled', 'to_uint8', 'warp_to_image', 'with_colour_bar'
]
