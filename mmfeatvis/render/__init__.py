"""Stage "render": NumPy + OpenCV drawing of reduced maps."""
from .align import (InputGeometry, crop_to_valid, feature_to_image_matrix,
                    input_geometry, valid_region, warp_to_image)
from .colormap import apply_colormap, colormap_names, get_lut
from .layout import (compose_panels, draw_label, grid_canvas, grid_cell,
                     tile_grid)
from .overlay import blend, colorize, prepare_image, resize_map, to_uint8

__all__ = [
    'InputGeometry', 'apply_colormap', 'blend', 'colorize', 'colormap_names',
    'compose_panels', 'crop_to_valid', 'draw_label', 'feature_to_image_matrix',
    'get_lut', 'grid_canvas', 'grid_cell', 'input_geometry', 'prepare_image',
    'resize_map', 'tile_grid', 'to_uint8', 'valid_region', 'warp_to_image'
]
