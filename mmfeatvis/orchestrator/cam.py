"""Class activation maps of a probe: one forward with gradients, the
target score's gradients taken with respect to the captured activations
only (``torch.autograd.grad``), so no parameter's ``.grad`` changes,
inside :func:`~mmfeatvis.capture.isolated_inference`'s eval mode, with
its modes and random states restored.
"""
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from torch import nn

from ..capture import FeatureCapture, isolated_inference
from ..probe import Probe
from ..reduce.cam import (GRADIENT_METHODS, check_cam_method,
                          class_activation_map)

#: What a CAM explains: the model's outputs -> one scalar score.
Target = Callable[[Any], torch.Tensor]


def class_target(class_index: Optional[int] = None) -> Target:
    """The target of a classifier or plain model whose tensor-mode output
    is ``(1, num_classes)`` logits: the logit of ``class_index``, or the
    top one when None."""

    def target(outputs: Any) -> torch.Tensor:
        logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ValueError(
                'a class target needs (1, num_classes) logits from the '
                "model's tensor mode, got "
                f'{getattr(logits, "shape", type(logits).__name__)}')
        if class_index is None:
            return logits[0].max()
        if not 0 <= class_index < logits.shape[1]:
            raise ValueError(f'class {class_index} is out of range for '
                             f'{logits.shape[1]} classes')
        return logits[0, class_index]

    return target


def probe_cams(model: nn.Module, probe: Probe, layer_names: Sequence[str],
               method: str, target: Target) -> Dict[str, torch.Tensor]:
    """The CAM of each captured map of ``layer_names`` for ``probe``.

    Args:
        model (nn.Module): The unwrapped model.
        probe (Probe): A prepared probe.
        layer_names (Sequence[str]): Resolved module names.
        method (str): One of :data:`~mmfeatvis.reduce.cam.CAM_METHODS`.
        target (callable): The score to explain, from the tensor-mode
            outputs (e.g. :func:`class_target`); unused by 'eigencam'.

    Returns:
        dict[str, torch.Tensor]: (H, W) map per captured tensor, on the
        model's device.

    Raises:
        ValueError: A captured map the target's score does not depend on
            (a layer after the head, or a detached branch), or a map that
            is not one sample's (C, H, W).
    """
    check_cam_method(method)
    with isolated_inference(model), torch.enable_grad(), FeatureCapture(
            model, layer_names, keep=lambda output: output) as capture:
        outputs = model(**probe.model_kwargs(), mode='tensor')
        activations = {
            name: value
            for name, value in capture.pop_features().items()
            if isinstance(value, torch.Tensor)
        }
        for name, value in activations.items():
            if value.ndim != 4 or value.shape[0] != 1:
                raise ValueError(f'layer {name!r}: a CAM needs one '
                                 f'(1, C, H, W) map, got {tuple(value.shape)}')
        gradients: Dict[str, Optional[torch.Tensor]] = dict.fromkeys(
            activations)
        if method in GRADIENT_METHODS:
            score = target(outputs)
            live = [n for n, v in activations.items() if v.requires_grad]
            found = torch.autograd.grad(
                score, [activations[n] for n in live], allow_unused=True)
            gradients.update(zip(live, found))
            missing = [n for n, g in gradients.items() if g is None]
            if missing:
                raise ValueError(
                    f'the target score does not depend on {missing} (a '
                    'layer after the head, or a detached branch): no '
                    f'gradient reaches it, so {method!r} cannot weigh its '
                    "channels; target earlier layers, or use 'eigencam'.")
        return {
            name: class_activation_map(
                method, value[0],
                None if gradients[name] is None else gradients[name][0])
            for name, value in activations.items()
        }
