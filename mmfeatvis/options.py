"""How captured maps become pictures: the options shared by the hook, the
command line and :func:`~mmfeatvis.draw_featmap`, each checked here once."""
from dataclasses import dataclass
from typing import Optional, Tuple

from .reduce import check_channel_reduction
from .render import check_arrangement, check_draw_options


@dataclass
class DrawOptions:
    """How captured maps become pictures.

    Args:
        channel_reduction (str | None): ``'squeeze_mean'``, ``'select_max'``,
            ``'pca'``, ``'norm'``, ``'std'``, or None for the top-k channels.
        topk (int): Channels shown when ``channel_reduction`` is None.
        arrangement (tuple[int, int]): Rows and columns of the top-k grid.
        alpha (float): Weight of the heat map over the image.
        colormap (str): OpenCV colormap name.
        percentile (tuple[float, float], optional): Robust clipping of the
            value range, e.g. ``(1, 99)``.
        draw_pred (bool): Draw detector predictions under the maps.
        score_thr (float): Score threshold for drawn predictions.
        max_image_side (int, optional): Longest side of a layer's picture
            (a top-k grid counts whole); a larger probe is drawn whole,
            resampled. None: the probe's own size.
    """
    channel_reduction: Optional[str] = 'select_max'
    topk: int = 4
    arrangement: Tuple[int, int] = (2, 2)
    alpha: float = 0.5
    colormap: str = 'jet'
    percentile: Optional[Tuple[float, float]] = None
    draw_pred: bool = False
    score_thr: float = 0.3
    max_image_side: Optional[int] = 2048

    def __post_init__(self) -> None:
        check_channel_reduction(self.channel_reduction)
        self.arrangement = check_arrangement(self.arrangement)
        if self.channel_reduction is None and self.topk > 0 and (
                self.arrangement[0] * self.arrangement[1] < self.topk):
            raise ValueError(
                f'arrangement {self.arrangement} holds '
                f'{self.arrangement[0] * self.arrangement[1]} tiles, fewer '
                f'than topk={self.topk}; enlarge it or lower topk.')
        check_draw_options(self.alpha, None, self.percentile, self.colormap)
        if self.max_image_side is not None and (
                isinstance(self.max_image_side, bool)
                or not isinstance(self.max_image_side, int)
                or self.max_image_side < 16):
            raise ValueError(f'max_image_side must be an integer >= 16 or '
                             f'None, got {self.max_image_side!r}.')
