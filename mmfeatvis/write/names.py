"""What images and scalars are called in the backends.

Image tags hold ``/`` (TensorBoard groups by it); a local file name is made
from the tag with :func:`~mmfeatvis.probe.safe_name`, since mmengine's
local backend joins names into a path.
"""
from typing import Dict, Iterable

from ..probe import safe_name
from ..reduce import ProbeMaps
from ..render import ProbeResult

NAME_PREFIX = 'featvis'


def image_tag(probe: str, part: str) -> str:
    """The tag of an image: ``featvis/<probe>/<layer>`` or
    ``featvis/<probe>/overview``.

    TensorBoard groups its cards by the part before the first ``/``, so all
    of mmfeatvis' images sit in one ``featvis`` section, ordered by probe
    and layer, beside the scalars ``featvis/<probe>/<layer>/<stat>``. Each
    part is made safe (``backbone[0]`` becomes ``backbone_0``); a file
    name is made from the tag with :func:`safe_name`.
    """
    return '/'.join((NAME_PREFIX, safe_name(probe), safe_name(part)))


def cam_tag(probe: str, method: str) -> str:
    """The tag of a probe's CAMs: ``featvis/<probe>/cam/<method>``, with
    ``gradcam++`` written ``gradcampp`` (a safe name would drop the
    pluses and meet ``gradcam``)."""
    return '/'.join((NAME_PREFIX, safe_name(probe), 'cam',
                     safe_name(method.replace('+', 'p'))))


def image_names(result: ProbeResult) -> Dict[str, str]:
    """Image tag for each layer image of ``result``."""
    return {
        layer: image_tag(result.probe, layer)
        for layer in result.layer_images
    }


def overview_name(probe: str) -> str:
    """Image tag of the composed image of all layers of ``probe``."""
    return image_tag(probe, 'overview')


def stat_scalars(maps: Iterable[ProbeMaps]) -> Dict[str, float]:
    """Scalars such as ``featvis/dog/backbone_0/mean`` for every map.

    Args:
        maps (Iterable[ProbeMaps]): The reduced maps of a firing.

    Slashes group the curves in TensorBoard; scalar names are never used as
    file names, so they are safe here.
    """
    scalars: Dict[str, float] = {}
    for probe_maps in maps:
        for layer, stats in probe_maps.stats.items():
            tag = image_tag(probe_maps.probe.name, layer)
            for stat, value in stats.items():
                scalars[f'{tag}/{stat}'] = float(value)
    return scalars
