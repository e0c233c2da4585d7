"""Command-line arguments of ``tools/featvis.py`` / ``mmfeatvis``.

The options and defaults follow MMYOLO's ``demo/featmap_vis_demo.py``;
additions are marked in the help texts. Positional arguments are
``IMG [IMG ...] CONFIG CHECKPOINT [CHECKPOINT ...]``: the config is the
first ``.py`` file (or ``package::path``) among them, images come before
it and checkpoints after it.
"""
import argparse
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from mmengine.config import DictAction

from ..options import CAM_LAYOUTS, CamOptions, DrawOptions
from ..reduce import CHANNEL_REDUCTIONS, SHARED_MODES
from ..reduce.cam import CAM_METHODS
from .errors import UsageError

RANGE_MODES = ('per_image', ) + SHARED_MODES
# MMYOLO's demo lists these first; ours follow.
_DEMO_REDUCTIONS = ('select_max', 'squeeze_mean', 'None')
REDUCTION_CHOICES = _DEMO_REDUCTIONS + tuple(
    r for r in CHANNEL_REDUCTIONS if r not in _DEMO_REDUCTIONS)
USAGE = ('%(prog)s [options] IMG [IMG ...] CONFIG CHECKPOINT '
         '[CHECKPOINT ...]')
ValueRangeArg = Union[None, str, Tuple[float, float]]

_DESCRIPTION = """\
Visualize the feature maps of an OpenMMLab model (mmdet, mmyolo, mmseg,
mmengine) on images: each target layer's maps are overlaid on the image,
all layers of an image arranged in one picture, with the detector's
predictions drawn under the maps. Given several checkpoints, the maps of
each image are drawn with one shared value range per layer, side by side
and as an animated GIF. With --cam, class activation maps are drawn
instead: why the detector predicts each box (MMYOLO's boxam_vis_demo).
"""
_EPILOG = """\
exit status: 0 on success, 2 for a bad command (missing file, unknown
layer, bad option value), 1 when running it failed.

example:
  %(prog)s demo/dog.jpg mmyolo::yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e\
_coco.py yolov5_s.pth --target-layers backbone --channel-reduction select_max
  %(prog)s demo/dog.jpg mmyolo::yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e\
_coco.py yolov5_s.pth --cam layercam --topk 3
"""


def _is_config(token: str) -> bool:
    return token.endswith('.py') or re.match(r'^\w+::', token) is not None


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser, MMYOLO's demo options plus our additions.

    Args:
        prog (str, optional): Program name in messages. Defaults to the
            script name.

    Returns:
        argparse.ArgumentParser: The parser.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=USAGE,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        'paths',
        nargs='+',
        metavar='IMG CONFIG CHECKPOINT',
        help='Images (files, folders searched recursively, or URLs), then '
        'the config (a .py path or package::path such as mmdet::retinanet/'
        'retinanet_r18_fpn_1x_coco.py), then one or more checkpoints '
        "(globs such as 'work_dirs/x/epoch_*.pth' are expanded and ordered "
        'by their number).')
    parser.add_argument(
        '--checkpoints',
        nargs='+',
        default=[],
        metavar='CKPT',
        help='(added) More checkpoints, or globs, after the positional one.')
    parser.add_argument(
        '--target-layers',
        nargs='+',
        default=None,
        metavar='LAYER',
        help='Layers whose outputs are drawn: module names, dotted paths '
        "or globs ('backbone.stage*', 'neck.**'). Default: backbone; with "
        '--cam, the neck (its pyramid levels fused), else the backbone.')
    parser.add_argument(
        '--cam',
        default=None,
        metavar='METHOD',
        choices=CAM_METHODS,
        help='Draw class activation maps instead of feature maps: why the '
        'model predicts each box (a detector), class (a segmentor) or '
        'logit (a classifier). One of ' + ', '.join(CAM_METHODS) +
        '; layercam and hirescam point at the box they explain, gradcam '
        "lights every object of the box's class (MMYOLO's boxam_vis_demo "
        '--method).')
    parser.add_argument(
        '--norm-in-box',
        '--norm-in-bbox',
        action='store_true',
        help='With --cam: scale each map within its box, zero outside.')
    parser.add_argument(
        '--cam-layout',
        default='grid',
        choices=CAM_LAYOUTS,
        help='(added) With --cam: a panel per box (grid) or all boxes in '
        'one (single). Default: grid.')
    parser.add_argument(
        '--cam-classes',
        nargs='+',
        type=int,
        default=None,
        metavar='CLASS',
        help='(added) With --cam: explain these class indices, each as a '
        'whole (all its boxes together), instead of the best --topk boxes.')
    parser.add_argument(
        '--preview-model',
        action='store_true',
        help='List every layer that can be targeted with the shape of its '
        'output for the first image, then exit.')
    parser.add_argument(
        '--channel-reduction',
        default='select_max',
        choices=REDUCTION_CHOICES,
        help='How channels become one map: select_max (the channel with the '
        'largest sum), squeeze_mean (channel mean), None (the --topk '
        'channels in an --arrangement grid); added: pca (3 principal '
        'components as RGB), norm (L2 over channels), std; for a head\'s '
        "class branch (--target-layers 'bbox_head.*cls*'), class_max (the "
        'highest class probability) and class_topk (the --topk classes '
        'that fire most), on 0 to 1. Default: select_max.')
    parser.add_argument(
        '--topk',
        type=int,
        default=None,
        help='Channels shown with --channel-reduction None, in order of '
        'activation (default 4); with --cam, the best boxes, classes or '
        'logits explained (default 3).')
    parser.add_argument(
        '--arrangement',
        nargs=2,
        type=int,
        default=[2, 2],
        metavar=('ROWS', 'COLS'),
        help='Grid of the top-k channels. Default: 2 2.')
    parser.add_argument(
        '--out-dir',
        default=None,
        help='Folder for the pictures; an image keeps its path relative to '
        'the common folder of all images. Default: ./output.')
    parser.add_argument(
        '--out-file',
        default=None,
        help='File for the picture of a single image (.jpg is added when '
        'the name has no image extension).')
    parser.add_argument(
        '--device',
        default=None,
        help='Device for inference, e.g. cuda:0 or cpu. Default: cuda:0 '
        'when CUDA is available, else cpu.')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='Score threshold of the predictions drawn (and, with --cam, '
        'explained). Default: 0.3.')
    parser.add_argument(
        '--no-pred',
        action='store_true',
        help='(added) Do not draw the predictions under the maps.')
    parser.add_argument(
        '--show',
        action='store_true',
        help='Show the pictures in a window (needs a display) instead of '
        'writing them; --out-dir/--out-file still write.')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='Override config settings, KEY=VALUE pairs merged into the '
        'config, e.g. model.backbone.deepen_factor=0.33.')
    parser.add_argument(
        '--alpha',
        type=float,
        default=0.5,
        help='(added) Weight of the maps over the image. Default: 0.5.')
    parser.add_argument(
        '--colormap',
        default='jet',
        help='(added) OpenCV colormap name. Default: jet.')
    parser.add_argument(
        '--value-range',
        nargs='+',
        default=None,
        metavar='MODE|LO HI',
        help='(added) Value range of the colours: per_image (each map '
        'min-max, the default for one checkpoint), union (one range per '
        'image and layer covering every checkpoint, the default for several '
        'checkpoints), last (the range of the last checkpoint), or two '
        'numbers LO HI for a fixed range.')
    parser.add_argument(
        '--percentile',
        nargs=2,
        type=float,
        default=None,
        metavar=('LO', 'HI'),
        help='(added) Clip value ranges to these percentiles, e.g. 1 99.')
    parser.add_argument(
        '--max-image-side',
        type=int,
        default=2048,
        help='(added) Longest side of each layer\'s picture; a larger image '
        'is drawn whole, resampled. Default: 2048.')
    parser.add_argument(
        '--layer-cols',
        type=int,
        default=None,
        help='(added) Layers per row of a picture. Default: about the '
        'square root of the number of layers.')
    parser.add_argument(
        '--gif-duration',
        type=int,
        default=800,
        help='(added) Milliseconds per checkpoint in the GIF. Default: 800.')
    return parser


@dataclass
class Inputs:
    """The positional arguments, split into their roles."""

    images: List[str]
    config: str
    checkpoints: List[str]


def split_paths(paths: Sequence[str],
                extra_checkpoints: Sequence[str]) -> Inputs:
    """Split ``IMG ... CONFIG CHECKPOINT ...`` at the config.

    Raises:
        UsageError: Without a config, an image or a checkpoint.
    """
    index = next((i for i, p in enumerate(paths) if _is_config(p)), None)
    if index is None:
        raise UsageError(
            'no CONFIG among the positional arguments '
            f'{" ".join(paths)!r}: expected IMG [IMG ...] CONFIG '
            'CHECKPOINT, the config being a .py file or package::path.')
    images = list(paths[:index])
    checkpoints = list(paths[index + 1:]) + list(extra_checkpoints)
    if not images:
        raise UsageError('no IMG before the config '
                         f'{paths[index]!r}: give an image file or folder '
                         'first.')
    if not checkpoints:
        raise UsageError(f'no CHECKPOINT after the config {paths[index]!r}: '
                         'give a .pth file (or --checkpoints).')
    return Inputs(images, paths[index], checkpoints)


def parse_value_range(tokens: Optional[Sequence[str]]) -> ValueRangeArg:
    """``--value-range``: None, a mode name, or a fixed ``(lo, hi)``."""
    if tokens is None:
        return None
    if len(tokens) == 1 and tokens[0] in RANGE_MODES:
        return tokens[0]
    if len(tokens) == 2:
        try:
            low, high = float(tokens[0]), float(tokens[1])
        except ValueError:
            low = high = float('nan')
        if low < high:
            return low, high
    raise UsageError(
        f'--value-range {" ".join(tokens)}: expected one of '
        f'{", ".join(RANGE_MODES)}, or two numbers LO HI with LO < HI.')


def draw_options(args: argparse.Namespace) -> DrawOptions:
    """Drawing options from the arguments, checked.

    Raises:
        UsageError: For values :class:`DrawOptions` refuses.
    """
    reduction = (None if args.channel_reduction == 'None' else
                 args.channel_reduction)
    if args.layer_cols is not None and args.layer_cols < 1:
        raise UsageError(f'--layer-cols must be >= 1, got {args.layer_cols}.')
    if args.gif_duration < 1:
        raise UsageError('--gif-duration must be >= 1 millisecond, got '
                         f'{args.gif_duration}.')
    try:
        return DrawOptions(
            channel_reduction=reduction,
            topk=4 if args.topk is None else args.topk,
            arrangement=tuple(args.arrangement),
            alpha=args.alpha,
            colormap=args.colormap.lower(),
            percentile=tuple(args.percentile) if args.percentile else None,
            draw_pred=not args.no_pred,
            score_thr=args.score_thr,
            max_image_side=args.max_image_side)
    except ValueError as error:
        raise UsageError(_as_option_message(str(error))) from None


def cam_options(args: argparse.Namespace) -> Optional[CamOptions]:
    """CAM options from the arguments (None without ``--cam``), checked.

    Raises:
        UsageError: For values :class:`CamOptions` refuses.
    """
    if args.cam is None:
        return None
    try:
        return CamOptions(
            method=args.cam,
            target_layers=args.target_layers,
            topk=3 if args.topk is None else args.topk,
            score_thr=args.score_thr,
            classes=args.cam_classes,
            norm_in_box=args.norm_in_box,
            layout=args.cam_layout)
    except ValueError as error:
        message = str(error).replace('cam topk', '--topk').replace(
            'cam score_thr', '--score-thr').replace('cam classes',
                                                    '--cam-classes')
        raise UsageError(message) from None


def _as_option_message(message: str) -> str:
    # DrawOptions speaks of keyword arguments; users typed options.
    for name in ('arrangement', 'topk', 'alpha', 'percentile', 'colormap',
                 'max_image_side'):
        message = re.sub(rf'\b{name}\b', '--' + name.replace('_', '-'),
                         message)
    return message
