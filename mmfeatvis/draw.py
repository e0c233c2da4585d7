"""``draw_featmap``: one feature map onto an image, reduced on its device
and rendered on the host, as mmengine's ``Visualizer.draw_featmap`` does."""
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch

from .reduce import reduce_for_image
from .render import render_reduced


def draw_featmap(featmap: torch.Tensor,
                 overlaid_image: Optional[np.ndarray] = None,
                 channel_reduction: Optional[str] = 'squeeze_mean',
                 topk: int = 20,
                 arrangement: Tuple[int, int] = (4, 5),
                 resize_shape: Optional[tuple] = None,
                 alpha: float = 0.5,
                 *,
                 norm_range: Optional[Sequence[float]] = None,
                 percentile: Optional[Sequence[float]] = None,
                 colormap: str = 'jet',
                 image_meta: Any = None,
                 layout: str = 'auto',
                 grid_hw: Optional[Sequence[int]] = None) -> np.ndarray:
    """Draw a feature map; a fast drop-in for mmengine's ``draw_featmap``.

    The positional arguments mean what they mean in
    ``mmengine.visualization.Visualizer.draw_featmap``, and 'squeeze_mean',
    'select_max' and top-k selection give mmengine's picture and channels.
    Differences: a 3-channel map with ``channel_reduction=None, topk<=0``
    is shown as an RGB image (mmengine colours its grey level); ``topk`` is
    clamped to the channel count before ``arrangement`` is checked; the
    size-mismatch warning is given once per pair of sizes.

    Args:
        featmap (torch.Tensor): (C, H, W), (1, C, H, W), or tokens (N, C) /
            (1, N, C) with ``layout='tokens'``; any device and float dtype.
        overlaid_image (np.ndarray, optional): RGB uint8 image to blend
            onto. Defaults to None.
        channel_reduction (str, optional): 'squeeze_mean', 'select_max',
            'pca', 'norm', 'std', or None to show channels (see ``topk``).
            Defaults to 'squeeze_mean'.
        topk (int): With ``channel_reduction=None``: if > 0, show the topk
            channels with the largest spatial sum in a grid; else show a
            1- or 3-channel map as an image. Defaults to 20.
        arrangement (Tuple[int, int]): (rows, cols) of the top-k grid.
            Defaults to (4, 5).
        resize_shape (tuple, optional): Output (H, W); the image is
            resized to it too. Defaults to None.
        alpha (float): Weight of the heatmap in the blend. Defaults to 0.5.
        norm_range (Sequence[float], optional): Fixed (lo, hi) for the
            colormap, to share one scale across steps. Defaults to None.
        percentile (Sequence[float], optional): Robust (lo, hi) percentile
            clipping, e.g. (1, 99). Defaults to None (min-max).
        colormap (str): OpenCV colormap name. Defaults to 'jet'.
        image_meta (dict | data sample, optional): Sample metainfo
            (mmdet/mmyolo/mmseg); padding is cut off the map and the rest
            placed on the original image. Defaults to None.
        layout (str): 'auto', 'chw' or 'tokens'; see
            :func:`~mmfeatvis.reduce.to_chw`. Defaults to 'auto'.
        grid_hw (Sequence[int], optional): Token grid (h, w). Defaults to
            None (inferred from the token count and image aspect).

    Returns:
        np.ndarray: RGB uint8 image.
    """
    reduced = reduce_for_image(
        featmap,
        channel_reduction,
        topk,
        image_meta=image_meta,
        image_hw=None if overlaid_image is None else overlaid_image.shape[:2],
        resize_shape=resize_shape,
        layout=layout,
        grid_hw=grid_hw)
    return render_reduced(
        reduced,
        overlaid_image,
        norm_range=norm_range,
        percentile=percentile,
        alpha=alpha,
        colormap=colormap,
        arrangement=arrangement,
        image_meta=image_meta,
        resize_shape=resize_shape)
