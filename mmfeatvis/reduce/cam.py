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
* ``'eigencam'`` (Muhammad and Yeasin 2020), gradient-free: the
  activations, centred per channel, projected on their first principal
  component, its sign chosen so that the map follows the activations'
  channel mean; ReLU'd.
"""
from typing import Optional

import torch

CAM_METHODS = ('gradcam', 'gradcam++', 'layercam', 'eigencam')
GRADIENT_METHODS = ('gradcam', 'gradcam++', 'layercam')


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
            target score with respect to ``activations``; needed by
            :data:`GRADIENT_METHODS`.

    Returns:
        torch.Tensor: (H, W) float32 map, >= 0, on the activations'
        device.
    """
    check_cam_method(method)
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
    if g.shape != a.shape:
        raise ValueError(f'gradients {tuple(g.shape)} do not match the '
                         f'activations {tuple(a.shape)}')
    if method == 'gradcam':
        weights = g.mean(dim=(1, 2), keepdim=True)
        return torch.relu((weights * a).sum(0))
    if method == 'layercam':
        return torch.relu((torch.relu(g) * a).sum(0))
    g2 = g.square()
    denominator = 2 * g2 + a.sum(dim=(1, 2), keepdim=True) * g2 * g
    # No epsilon: gradients of a score are often ~1e-3, whose square an
    # epsilon of 1e-7 would swamp.
    nonzero = denominator != 0
    alpha = torch.where(nonzero, g2 / torch.where(nonzero, denominator, 1),
                        torch.zeros_like(g))
    weights = (alpha * torch.relu(g)).sum(dim=(1, 2), keepdim=True)
    return torch.relu((weights * a).sum(0))


def _eigen_cam(a: torch.Tensor) -> torch.Tensor:
    channels, height, width = a.shape
    x = a.reshape(channels, -1).T  # (HW, C)
    centred = x - x.mean(dim=0, keepdim=True)
    # The first right singular vector: the channel direction of largest
    # variance over positions.
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = centred @ vh[0]
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
