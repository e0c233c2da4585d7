"""How captured maps become pictures: the options shared by the hook, the
command line and :func:`~mmfeatvis.draw_featmap`, each checked here once."""
from dataclasses import dataclass, fields
from typing import Callable, Optional, Sequence, Tuple, Union

from .reduce import check_channel_reduction
from .reduce.cam import check_cam_method
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


#: How a probe's CAMs are laid out: one panel per target, or all in one.
CAM_LAYOUTS = ('grid', 'single')


@dataclass
class CamOptions:
    """What a probe's class activation maps explain and how they look.

    Args:
        method (str): ``'layercam'`` (the default) or ``'hirescam'``,
            which weigh each position by its own gradient and so point at
            the one box explained; ``'gradcam'`` and ``'gradcam++'``,
            whose channel weights light every object of the class; the
            gradient-free ``'eigencam'``, the same map for every target.
        target_layers (str | Sequence[str], optional): Layers whose
            activations are weighed; several (pyramid levels) are fused
            into one map. None: the neck's outputs, else the backbone's.
        topk (int): Most maps per probe: the best boxes of a detector,
            the most present classes of a segmentor, the top logits of a
            classifier.
        score_thr (float): A detector's boxes scoring below are not
            explained.
        classes (Sequence[int], optional): Explain these classes as a
            whole (all of a class's boxes together) instead.
        target (callable | str, optional): A function of the model's
            tensor-mode outputs returning the score to explain (or a dict
            of them), or its dotted import path; for models no rule knows.
        norm_in_box (bool): Scale each map within its box (zero outside),
            as MMYOLO's ``--norm-in-bbox`` does.
        layout (str): ``'grid'``: one panel per target; ``'single'``: all
            maps (their pixel-wise maximum) and boxes in one panel.
    """
    method: str = 'layercam'
    target_layers: Union[None, str, Sequence[str]] = None
    topk: int = 3
    score_thr: float = 0.3
    classes: Optional[Sequence[int]] = None
    target: Union[None, str, Callable] = None
    norm_in_box: bool = False
    layout: str = 'grid'

    def __post_init__(self) -> None:
        check_cam_method(self.method)
        if isinstance(self.target_layers, str):
            self.target_layers = [self.target_layers]
        if (isinstance(self.topk, bool) or not isinstance(self.topk, int)
                or self.topk < 1):
            raise ValueError(
                f'cam topk must be a positive integer, got {self.topk!r}.')
        if not 0 <= self.score_thr <= 1:
            raise ValueError(
                f'cam score_thr must be in [0, 1], got {self.score_thr!r}.')
        if self.classes is not None:
            if isinstance(self.classes, int):
                self.classes = [self.classes]
            if not all(
                    isinstance(c, int) and not isinstance(c, bool) and c >= 0
                    for c in self.classes):
                raise ValueError('cam classes must be class indices (ints '
                                 f'>= 0), got {self.classes!r}.')
        if self.layout not in CAM_LAYOUTS:
            raise ValueError(f'Unknown cam layout {self.layout!r}; choose '
                             f'one of {CAM_LAYOUTS}.')


def cam_options(config: dict) -> CamOptions:
    """:class:`CamOptions` from a config dict, an unknown key named with
    the valid ones."""
    if isinstance(config, CamOptions):
        return config
    if not isinstance(config, dict):
        raise ValueError(f'cam must be a dict such as '
                         f"dict(method='layercam'), got {config!r}.")
    valid = [f.name for f in fields(CamOptions)]
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ValueError(f'Unknown cam option(s) {unknown}; valid: {valid}.')
    return CamOptions(**config)
