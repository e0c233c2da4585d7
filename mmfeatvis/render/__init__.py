"""Stage "render": NumPy + OpenCV drawing of reduced maps."""
from .align import (InputGeometry, crop_to_valid, feature_to_image_matrix,
                    input_geometry, valid_region, warp_to_image)
from .colormap import apply_colormap, colormap_names, get_lut
from .layout import (colour_bar_height, compose_panels, draw_label,
                     fitted_arrangement, format_range, grid_canvas, grid_cell,
                     range_title, tile_grid, with_colour_bar)
from .overlay import blend, colorize, prepare_image, resize_map, to_uint8

__all__ = [
    'InputGeometry', 'apply_colormap', 'blend', 'colorize', 'colormap_names',
    'colour_bar_height', 'fitted_arrangement',
    'compose_panels', 'crop_to_valid', 'draw_label', 'feature_to_image_matrix',
    'format_range', 'get_lut', 'grid_canvas', 'grid_cell', 'input_geometry',
    'prepare_image', 'range_title', 'resize_map', 'tile_grid', 'to_uint8',
    'valid_region', 'warp_to_image', 'with_colour_bar'
]
