"""The orchestrator: probe -> capture -> reduce -> render -> write.

:class:`FeatmapOrchestrator` (:mod:`.firing`) is one firing on fixed
probes, for the hook, the command line and the benchmarks;
:class:`LoopSamples` (:mod:`.samples`) takes chosen samples from a
validation or test loop's own forward through the same stages;
:class:`CamOrchestrator` (:mod:`.cam`) gives probes' class activation
maps.
"""
from .cam import CamOrchestrator
from .firing import FeatmapOrchestrator
from .samples import (LoopSamples, SampleSpec, check_sample_spec,
                      chosen_indices, gather_samples)

__all__ = [
    'CamOrchestrator', 'FeatmapOrchestrator', 'LoopSamples', 'SampleSpec',
    'check_sample_spec', 'chosen_indices', 'gather_samples'
]
