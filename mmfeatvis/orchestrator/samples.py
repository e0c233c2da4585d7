"""Maps of chosen dataset samples, taken from a validation or test loop's
own forward pass: no extra forward.

:class:`LoopSamples` knows, for one pass over a dataloader, which batches
hold the chosen samples (from the loop's batch sampler, so it holds for
any sampler and for each rank under DDP). Only for those iterations does
it attach a :class:`~mmfeatvis.capture.FeatureCapture`, removed when the
iteration ends; it then cuts the chosen samples out of the batched maps
and reduces them with the orchestrator, together with the loop's
prediction (and ground truth) for each. :func:`gather_samples` brings
every rank's samples to all of them.
"""
import logging
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from mmengine.dist import all_gather_object, get_world_size
from mmengine.logging import print_log
from torch import nn

from ..capture import FeatureCapture
from ..probe import ALIGNMENT_META_KEYS, Probe, read_rgb
from ..reduce import ProbeMaps
from .firing import FeatmapOrchestrator

#: ``val_samples=N`` (or ``'all'``), or dataset indices.
SampleSpec = Union[None, int, str, Sequence[int]]


def check_sample_spec(name: str, spec: SampleSpec) -> SampleSpec:
    """``spec`` if it chooses samples in a way :func:`chosen_indices`
    understands, else a ValueError naming ``name``."""
    if spec is None or spec == 'all':
        return spec
    if isinstance(spec, bool):
        raise ValueError(f'{name} must be a count, a list of dataset '
                         f"indices or 'all', got {spec!r}.")
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError(f'{name}={spec}: give a positive number of '
                             'samples, or a list of dataset indices.')
        return spec
    try:
        indices = [int(i) for i in spec]
    except (TypeError, ValueError):
        indices = None
    if (not indices or isinstance(spec, str) or any(
            isinstance(i, bool) or int(i) != i or i < 0 for i in spec)):
        raise ValueError(f'{name} must be a count, a list of dataset '
                         f"indices (integers >= 0) or 'all', got {spec!r}.")
    return sorted(set(indices))


def chosen_indices(name: str, spec: SampleSpec, size: int) -> List[int]:
    """The dataset indices ``spec`` chooses from a data set of ``size``:
    all of them, ``N`` evenly spaced (the same at every validation), or
    the given ones, which must exist."""
    if spec == 'all':
        return list(range(size))
    if isinstance(spec, int):
        count = min(spec, size)
        return sorted({round(i * (size - 1) / max(count - 1, 1))
                       for i in range(count)}) if size else []
    beyond = [i for i in spec if i >= size]
    if beyond:
        raise ValueError(f'{name}: the data set has {size} samples '
                         f'(indices 0 to {size - 1}); there is no sample '
                         f'{", ".join(map(str, beyond))}.')
    return list(spec)


class LoopSamples:
    """The chosen samples of one validation or test pass.

    Args:
        orchestrator (FeatmapOrchestrator): Its layers resolved; reduces
            the samples' maps with its options and range policy.
        prefix (str): ``'val'`` or ``'test'``: samples are named
            ``<prefix>_<index>`` (the tags ``featvis/val_7/<layer>``), so
            the same sample compares across validations.
        indices (Sequence[int]): Dataset indices of the chosen samples.
    """

    def __init__(self, orchestrator: FeatmapOrchestrator, prefix: str,
                 indices: Sequence[int]) -> None:
        self.orchestrator = orchestrator
        self.prefix = prefix
        self.indices = set(indices)
        self._batches: List[List[int]] = []
        self._capture: Optional[FeatureCapture] = None
        #: The reduced maps of this pass, by dataset index.
        self.maps: Dict[int, ProbeMaps] = {}
        self._warned_no_path = False

    def start(self, dataloader: Any) -> None:
        """Note which dataset indices each batch of this pass holds."""
        self.close()
        self.maps = {}
        self._batches = [list(batch) for batch in dataloader.batch_sampler]

    def wanted(self, batch_idx: int) -> List[int]:
        """Positions in batch ``batch_idx`` that hold chosen samples."""
        if batch_idx >= len(self._batches):
            return []
        return [
            position
            for position, index in enumerate(self._batches[batch_idx])
            if index in self.indices
        ]

    @property
    def attached(self) -> bool:
        """Whether forward hooks are on the model now."""
        return self._capture is not None

    def before_iter(self, model: nn.Module, batch_idx: int) -> None:
        """Attach the capture if this batch holds a chosen sample."""
        self.close()  # a forward that raised left its hooks
        if self.wanted(batch_idx):
            capture = FeatureCapture(model, self.orchestrator.layer_names)
            self._capture = capture.__enter__()

    def after_iter(self, batch_idx: int, outputs: Sequence[Any]) -> None:
        """Remove the capture; reduce the chosen samples of the batch."""
        if self._capture is None:
            return
        features = self._capture.pop_features()
        self.close()
        positions = self.wanted(batch_idx)
        batch_size = len(self._batches[batch_idx])
        for position in positions:
            index = self._batches[batch_idx][position]
            sample = outputs[position] if outputs is not None and len(
                outputs) > position else None
            probe = _sample_probe(f'{self.prefix}_{index}', sample)
            if probe is None:
                if not self._warned_no_path:
                    self._warned_no_path = True
                    print_log(
                        f'FeatmapVisHook: the {self.prefix} samples are not '
                        'drawn: their data samples have no img_path to read '
                        'the original image from.',
                        logger='current',
                        level=logging.WARNING)
                continue
            own = {
                name: value[position:position + 1]
                if _batched(value, batch_size) else value
                for name, value in features.items()
            }
            # No statistics: sample images are written without scalars.
            maps = self.orchestrator.reduce(
                probe, own, [sample], with_stats=False)
            for layer in maps.wait().layers:
                layer.reduced.basis = None  # kept by the orchestrator
            self.maps[index] = maps

    def close(self) -> None:
        """Remove the forward hooks, if any are attached."""
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.__exit__(None, None, None)


def _batched(value: Any, batch_size: int) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim >= 2 and (
        value.shape[0] == batch_size)


def _sample_probe(name: str, sample: Any) -> Optional[Probe]:
    """A :class:`Probe` standing for one sample of a batch: its original
    image (read from ``img_path``) and its resize and padding meta."""
    info = getattr(sample, 'metainfo', None) or {}
    path = info.get('img_path')
    if path is None:
        return None
    image = read_rgb(path)
    meta = {k: info[k] for k in ALIGNMENT_META_KEYS if k in info}
    meta.setdefault('ori_shape', tuple(image.shape[:2]))
    return Probe(name, image, {}, meta, source=path)


def gather_samples(maps: Dict[int, ProbeMaps]) -> List[ProbeMaps]:
    """Every rank's sample maps (by dataset index), on every rank (all
    ranks must call it), each sample once (the sampler repeats some to fill
    the last batch), in index order."""
    parts = all_gather_object(maps) if get_world_size() > 1 else [maps]
    merged: Dict[int, ProbeMaps] = {}
    for part in parts:
        for index, item in part.items():
            merged.setdefault(index, item)
    return [merged[index] for index in sorted(merged)]
