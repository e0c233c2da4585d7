"""Stage "reduce": captured maps made small, on the model's device.

Torch only, on the tensor's own device: layouts brought to (C, H, W)
(:mod:`.tokens`), channels reduced (:mod:`.featmap`), value ranges measured
(:mod:`.measure`) and kept across firings (:mod:`.ranges`), activation
statistics (:mod:`.stats`) and NaN/Inf handling (:mod:`.nonfinite`). What
leaves for the host is small (:mod:`.maps`).
"""
from .featmap import (CHANNEL_REDUCTIONS, ReducedFeatmap, channel_scores,
                      check_channel_reduction, content_only, reduce_chw,
                      reduce_featmap, reduce_for_image, single_sample_layout)
from .maps import DeviceLayer, ProbeMaps, ReducedLayer, device_results
from .measure import (check_percentile, map_ranges, measure_range,
                      measure_range_tensor)
from .ranges import (RANGE_MODES, SHARED_MODES, RangeLike, SeriesRanges,
                     ValueRange, ValueRangeTracker, check_fixed_range,
                     range_floats, union_range)
from .stats import (STATS_KEYS, activation_stats, activation_stats_tensor,
                    quantiles)
from .tokens import LAYOUTS, infer_token_grid, to_chw

__all__ = [
    'CHANNEL_REDUCTIONS', 'DeviceLayer', 'LAYOUTS', 'ProbeMaps', 'RANGE_MODES',
    'RangeLike', 'ReducedFeatmap', 'ReducedLayer', 'SHARED_MODES',
    'STATS_KEYS', 'SeriesRanges', 'ValueRange', 'ValueRangeTracker',
    'activation_stats', 'activation_stats_tensor', 'channel_scores',
    'check_channel_reduction', 'check_fixed_range', 'check_percentile',
    'content_only', 'device_results',
    'infer_token_grid', 'map_ranges', 'measure_range', 'measure_range_tensor',
    'quantiles', 'range_floats', 'reduce_chw', 'reduce_featmap',
    'reduce_for_image', 'single_sample_layout', 'to_chw', 'union_range'
]
