"""Segmentor targets: a class's logits summed over its predicted mask."""
from typing import Any, List, Optional, Sequence

import torch
from torch import nn

from ...probe import Probe
from ...probe.geometry import content_slices
from ...render.boxes import class_name
from .targets import CamTarget, TargetRule


class SegmentorRule(TargetRule):
    """mmseg encoder-decoders: one target per class, the most present
    ``topk`` of the prediction (or ``classes``), each its logits summed
    over the pixels predicted as it."""
    kind = 'segmentor'

    def forward(self, model: nn.Module, probe: Probe) -> Any:
        kwargs = probe.model_kwargs()
        metas = [sample.metainfo for sample in kwargs['data_samples']]
        # Logits at the network input's size, as the prediction reads them.
        return model.encode_decode(kwargs['inputs'], metas)

    def targets(self, model: nn.Module, probe: Probe, outputs: Any,
                class_names: Optional[Sequence[str]]) -> List[CamTarget]:
        logits = outputs[0]
        content = content_slices(probe.meta, logits.shape[-2:])
        predicted = logits.detach().argmax(0)
        counts = torch.bincount(
            predicted[content].flatten(), minlength=logits.shape[0])
        total = max(1, int(counts.sum()))
        if self.classes is not None:
            chosen = self.classes
        else:
            present = int((counts > 0).sum())
            chosen = counts.topk(min(self.topk, present)).indices.tolist()
        targets = []
        for label in chosen:
            if not 0 <= label < logits.shape[0]:
                raise ValueError(f'class {label} is out of range for '
                                 f'{logits.shape[0]} classes')
            mask = torch.zeros_like(predicted, dtype=torch.bool)
            mask[content] = predicted[content] == label
            if not bool(mask.any()):
                continue
            share = 100 * int(counts[label]) / total
            targets.append(
                CamTarget((logits[label] * mask).sum(),
                          f'{class_name(label, class_names)} {share:.0f}%',
                          label=label))
        return targets

    def any_score(self, model: nn.Module, outputs: Any) -> torch.Tensor:
        return outputs.sum()


def segmentor_rule(model: nn.Module, **kwargs) -> Optional[TargetRule]:
    """The rule of an mmseg encoder-decoder; None for other models."""
    try:
        from mmseg.models.segmentors import EncoderDecoder
    except ImportError:
        return None
    return SegmentorRule(**kwargs) if isinstance(model,
                                                 EncoderDecoder) else None
