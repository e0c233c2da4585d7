"""Class activation maps: a layer's activations weighted by what a target
score owes them, on the activations' device.

Each method takes one sample's activations ``A`` (C, H, W) and, for the
gradient methods, the gradient ``G`` of the target score with respect to
them (the caller takes it with ``torch.autograd.grad``, so nothing
accumulates into parameters), and returns an (H, W) map, ReLU'd and not
normalised:

* ``'gradcam'`` (Selvaraju et al. 2017): channel weights are the spatial
  mean of ``G``; ``relu(sum_c w_c A_c)``.
* ``'gradcam++'`` (Chattopadhay et al. 2018, eq. 19):
  ``alpha = G^2 / (2 G^2 + sum_ij(A) G^3)`` where that is defined (0
  where ``G`` is), weights ``sum_ij alpha relu(G)``.
* ``'layercam'`` (Jiang et al. 2021): ``relu(sum_c relu(G_c) A_c)``, each
  position weighted by its own positive gradient.
* ``'hirescam'`` (Draelos and Carin 2020): ``relu(sum_c G_c A_c)``, each
  position weighted by its own gradient, negative ones too (what MMYOLO's
  box AM calls its grad-based CAM).
* ``'eigencam'`` (Muhammad and Yeasin 2020), gradient-free: the
  activations, centred per channel, projected on their first principal
  component, its sign chosen so that the map follows the activations'
  channel mean; ReLU'd.
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..probe import Probe
from ..probe.geometry import content_slices
from .featmap import top_eigh

CAM_METHODS = ('gradcam', 'gradcam++', 'layercam', 'hirescam', 'eigencam')
GRADIENT_METHODS = ('gradcam', 'gradcam++', 'layercam', 'hirescam')


def check_cam_method(method: str) -> str:
    """``method`` if it is one of :data:`CAM_METHODS`, else a ValueError
    listing them."""
    if method not in CAM_METHODS:
        raise ValueError(f'Unknown CAM method {method!r}; choose one of '
                         f'{CAM_METHODS}.')
    return method


def class_activation_map(method: str,
                         activations: torch.Tensor,
                         gradients: Optional[torch.Tensor] = None
                         ) -> torch.Tensor:
    """The CAM of one sample at one layer.

    Args:
        method (str): One of :data:`CAM_METHODS`.
        activations (torch.Tensor): (C, H, W) layer output (detached or
            not; the result is detached).
        gradients (torch.Tensor, optional): (C, H, W) gradient of the
            target score with respect to ``activations``, or (K, C, H, W)
            for K targets at once; needed by :data:`GRADIENT_METHODS`.

    Returns:
        torch.Tensor: (H, W) float32 map, >= 0, on the activations'
        device; (K, H, W) for K targets' gradients.
    """
    check_cam_method(method)
    with full_precision(activations.device):
        return _class_activation_map(method, activations, gradients)


def full_precision(device: torch.device) -> Any:
    """Autocast off: under AMP the maps are computed in float32 (the
    matrix products of 'eigencam' would otherwise round to half)."""
    return torch.autocast(torch.device(device).type, enabled=False)


def _class_activation_map(method: str, activations: torch.Tensor,
                          gradients: Optional[torch.Tensor]) -> torch.Tensor:
    a = activations.detach().float()
    if a.ndim != 3:
        raise ValueError(f'activations must be (C, H, W), got '
                         f'{tuple(a.shape)}')
    if method == 'eigencam':
        return _eigen_cam(a)
    if gradients is None:
        raise ValueError(f'{method!r} needs the gradients of the target '
                         'score; only eigencam works without.')
    g = gradients.detach().float()
    if g.shape[-3:] != a.shape or g.ndim > 4:
        raise ValueError(f'gradients {tuple(g.shape)} do not match the '
                         f'activations {tuple(a.shape)}')
    # Dimensions from the end: a leading dimension of targets broadcasts.
    if method == 'gradcam':
        weights = g.mean(dim=(-2, -1), keepdim=True)
        return torch.relu((weights * a).sum(-3))
    if method == 'layercam':
        return torch.relu((torch.relu(g) * a).sum(-3))
    if method == 'hirescam':
        return torch.relu((g * a).sum(-3))
    g2 = g.square()
    denominator = 2 * g2 + a.sum(dim=(1, 2), keepdim=True) * g2 * g
    # No epsilon: gradients of a score are often ~1e-3, whose square an
    # epsilon of 1e-7 would swamp.
    nonzero = denominator != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denominator, 1),
                        torch.zeros_like(g))
    weights = (alpha * torch.relu(g)).sum(dim=(-2, -1), keepdim=True)
    return torch.relu((weights * a).sum(-3))


def _eigen_cam(a: torch.Tensor) -> torch.Tensor:
    channels, height, width = a.shape
    x = a.reshape(channels, -1).T  # (HW, C)
    centred = x - x.mean(dim=0, keepdim=True)
    # The projection on the first principal component, from the smaller
    # Gram matrix (a full SVD of the (HW, C) map is slow on a GPU).
    if channels <= centred.shape[0]:
        _, vecs = top_eigh(centred.T @ centred, 1)
        projection = centred @ vecs[:, 0]
    else:
        vals, vecs = top_eigh(centred @ centred.T, 1)
        projection = vecs[:, 0] * vals[0].clamp(min=0).sqrt()
    # An eigenvector's sign is arbitrary: pick the one that follows the
    # channel mean, so that strong activations read as high.
    mean = x.mean(dim=1)
    if torch.dot(projection, mean - mean.mean()) < 0:
        projection = -projection
    return torch.relu(projection).reshape(height, width)


def normalized(cam: torch.Tensor) -> torch.Tensor:
    """``cam`` scaled to [0, 1] over its positions (0 where constant)."""
    low = cam.amin(dim=(-2, -1), keepdim=True)
    shifted = cam - low
    return shifted / (shifted.amax(dim=(-2, -1), keepdim=True) + 1e-8)


def content_peak(cam: torch.Tensor, meta: Any) -> torch.Tensor:
    """A map's maximum over the image content: 0-d for an (h, w) map,
    (K,) for K maps."""
    rows, cols = content_slices(meta, cam.shape[-2:])
    return cam[..., rows, cols].amax(dim=(-2, -1))


def fuse_layers(cams: Sequence[torch.Tensor],
                meta: Any,
                peaks: Optional[Sequence[Any]] = None) -> torch.Tensor:
    """Several layers' maps of one target as one (h, w) map in [0, 1]
    (or of K targets at once, (K, h_i, w_i) each).

    Each map is scaled by its peak (its own maximum over the image
    content, or a kept value in ``peaks``) and brought to the finest
    map's size; the fused map is their pixel-wise maximum, as TorchCAM's
    ``fuse_cams`` does, scaled again to its own peak where the maps were.
    A pyramid level whose map is zero (a box of another level gets no
    gradient there) adds nothing.

    Args:
        cams (Sequence[torch.Tensor]): (h_i, w_i) or (K, h_i, w_i) maps,
            >= 0, all over the same network input.
        meta (dict): The probe's metainfo (where the content lies).
        peaks (Sequence, optional): The value that reads as 1 for each
            layer's maps; None: each map's own peak.

    Returns:
        torch.Tensor: (h, w) or (K, h, w) float32, at the largest map's
        size.
    """
    if not cams:
        raise ValueError('fuse_layers needs at least one map')
    with full_precision(cams[0].device):
        return _fused(cams, meta, peaks)


def _fused(cams: Sequence[torch.Tensor], meta: Any,
           peaks: Optional[Sequence[Any]]) -> torch.Tensor:
    size = max((tuple(c.shape[-2:]) for c in cams),
               key=lambda hw: hw[0] * hw[1])
    fused = None
    for i, cam in enumerate(cams):
        peak = content_peak(cam, meta) if peaks is None else peaks[i]
        scaled = _scaled(cam, peak)
        if tuple(scaled.shape[-2:]) != size:
            batch = scaled.reshape(-1, 1, *scaled.shape[-2:])
            scaled = torch.nn.functional.interpolate(
                batch, size=size, mode='bilinear',
                align_corners=False).reshape(*scaled.shape[:-2], *size)
        fused = scaled if fused is None else torch.maximum(fused, scaled)
    if peaks is None:
        # Upsampling lowers a coarse map's peak: its own peak reads as 1.
        fused = _scaled(fused, content_peak(fused, meta))
    return fused


def _scaled(cam: torch.Tensor, peak: Any) -> torch.Tensor:
    """``cam / peak`` clipped to [0, 1]; all zero where the peak is not
    positive (no signal over the image content: the padding's values
    must not become the picture)."""
    peak = torch.as_tensor(peak, dtype=cam.dtype, device=cam.device)
    if peak.ndim:  # one peak per map of a batch
        peak = peak[..., None, None]
    positive = peak > 0
    return torch.where(positive, cam / torch.where(positive, peak, 1),
                       torch.zeros_like(cam)).clamp(0, 1)


@dataclass
class CamPanel:
    """One target's fused map on the host.

    Attributes:
        cam (np.ndarray): (h, w) float32 in [0, 1], in the network input's
            geometry (padding not yet cut).
        title (str): What the map explains, e.g. ``'dog 0.87'``.
        boxes (list): ``((x1, y1, x2, y2), label, score)`` in original
            image pixels, drawn with the map.
    """
    cam: np.ndarray
    title: str
    boxes: List[Tuple[Tuple[float, float, float, float], int,
                      float]] = field(default_factory=list)


@dataclass
class ProbeCams:
    """A probe's CAMs at one firing, ready to render.

    Attributes:
        probe (Probe): The probe.
        method (str): The CAM method.
        panels (list[CamPanel]): One per target, best first.
        note (str): Why there are no panels (e.g. no box above the
            threshold), drawn instead.
    """
    probe: Probe
    method: str
    panels: List[CamPanel] = field(default_factory=list)
    note: str = ''
