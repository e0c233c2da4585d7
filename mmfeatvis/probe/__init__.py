"""Stage "probe": fixed model inputs, prepared once from the config.

A probe is one image run through the config's own test pipeline and the
model's ``data_preprocessor``, kept on the model's device with the original
image and its resize and padding meta (:mod:`.geometry` reads it).
"""
from .builder import (ALIGNMENT_META_KEYS, DATASET_SPLITS, Probe, ProbeBuilder,
                      ProbeSpec, class_names, find_test_pipeline,
                      without_annotation_loading)
from .geometry import (InputGeometry, content_region, content_slices,
                       input_geometry, meta_or_none, region_slices)
from .image import probe_name, read_rgb, safe_name

__all__ = [
    'ALIGNMENT_META_KEYS', 'DATASET_SPLITS', 'InputGeometry', 'Probe',
    'ProbeBuilder', 'ProbeSpec', 'class_names', 'content_region',
    'content_slices', 'find_test_pipeline', 'input_geometry', 'meta_or_none',
    'probe_name', 'read_rgb', 'region_slices', 'safe_name',
    'without_annotation_loading'
]
