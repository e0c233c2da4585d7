"""The pointing game: does a box's CAM peak inside the box?

A measure of localisation (Zhang et al. 2016): for every box explained,
the maximum of its map, drawn over the original image with the padding
cut, must lie inside the box.
"""
from typing import Dict, Sequence

import numpy as np
from torch import nn

from ..probe import Probe
from ..reduce.cam import ProbeCams
from ..render.cam import cam_values


def pointing_hits(cams: ProbeCams) -> Sequence[bool]:
    """For each box panel of ``cams``: whether its map peaks in its box."""
    probe = cams.probe
    hw = probe.image.shape[:2]
    hits = []
    for panel in cams.panels:
        if len(panel.boxes) != 1:
            continue  # a whole class or no box: nothing to point at
        values = cam_values(panel, probe.meta, hw, 1.0)
        y, x = np.unravel_index(int(np.argmax(values)), values.shape)
        (x1, y1, x2, y2), _, _ = panel.boxes[0]
        # Pixel centres, as the boxes are in pixel-edge coordinates.
        hits.append(bool(x1 <= x + 0.5 <= x2 and y1 <= y + 0.5 <= y2))
    return hits


def pointing_game(orchestrator, model: nn.Module,
                  probes: Sequence[Probe]) -> Dict[str, float]:
    """The pointing game over ``probes``: every box the orchestrator
    explains (set its ``topk`` above the boxes there are).

    Returns:
        dict: ``hits``, ``boxes`` and their ``share``.
    """
    hits = []
    for probe in probes:
        cams, = orchestrator.fire(model, [probe])
        hits.extend(pointing_hits(cams))
    return dict(hits=sum(hits), boxes=len(hits),
                share=sum(hits) / max(1, len(hits)))
