"""Helpers for tests and demos: generated data that needs no download, and
readers for what the Visualizer backends wrote."""
from .photo import sample_photo_path
from .pictures import Readability, colour_levels, readability
from .pointing import pointing_game, pointing_hits
from .readers import read_scalar_log, read_tensorboard, read_tensorboard_image
from .segmentation import SEG_CLASSES, make_shapes_segmentation
from .shapes import (SHAPES, make_shapes_dataset, render_sample,
                     shapes_cfg_options)

__all__ = [
    'SHAPES', 'make_shapes_dataset', 'render_sample', 'shapes_cfg_options',
    'read_scalar_log', 'read_tensorboard', 'read_tensorboard_image',
    'SEG_CLASSES', 'make_shapes_segmentation', 'sample_photo_path',
    'Readability', 'colour_levels', 'readability', 'pointing_game',
    'pointing_hits'
]
