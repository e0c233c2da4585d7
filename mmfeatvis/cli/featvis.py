"""``featvis``: MMYOLO's feature-map demo, rebuilt on mmfeatvis' stages.

The command checks its inputs, builds the model from the config, then runs
the same probe -> capture -> reduce -> render stages as
:class:`~mmfeatvis.hooks.FeatmapVisHook` (through
:class:`~mmfeatvis.orchestrator.FeatmapOrchestrator`) and writes the
pictures.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Set

from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from ..capture import modules_computed_before
from ..options import CamOptions
from ..orchestrator import CamOrchestrator, FeatmapOrchestrator
from ..probe import ProbeBuilder, class_names
from ..reduce import SHARED_MODES, SeriesRanges, ValueRangeTracker
from .args import (build_parser, cam_options, draw_options, parse_value_range,
                   split_paths)
from .drawing import CamSeriesDrawer, SeriesDrawer
from .errors import RunError, UsageError
from .inputs import (checkpoint_labels, collect_images, expand_checkpoints,
                     resolve_config)
from .model import (Fit, build_model, check_fit, load_config, load_weights,
                    pick_device)
from .output import PictureSink
from .preview import print_preview


def run(args: argparse.Namespace) -> int:
    """Run the command for parsed arguments.

    Returns:
        int: 0 on success.

    Raises:
        UsageError: For bad arguments.
        RunError: When building, loading or drawing fails, also for
            only some of the images (the others are drawn first).
    """
    inputs = split_paths(args.paths, args.checkpoints)
    options = draw_options(args)
    cam = cam_options(args)
    value_range = parse_value_range(args.value_range)
    items = collect_images(inputs.images)
    config_path = resolve_config(inputs.config)
    checkpoints = expand_checkpoints(inputs.checkpoints)
    device = pick_device(args.device)
    if args.out_file and len(items) > 1 and not args.preview_model:
        raise UsageError(f'--out-file names one picture but {len(items)} '
                         'images are given; use --out-dir.')
    series = len(checkpoints) > 1
    if value_range is None:
        value_range = 'union' if series else 'per_image'
    labels = checkpoint_labels(checkpoints)
    sink = None
    if not args.preview_model:
        # Checked before the model is built, which takes a while.
        sink = PictureSink(labels, args.out_dir, args.out_file, args.show,
                           args.layer_cols, args.gif_duration)

    cfg = load_config(config_path, args.cfg_options)
    model = build_model(cfg, device)
    fit = load_weights(model, checkpoints[0])
    tracker = (
        SeriesRanges(value_range)
        if value_range in SHARED_MODES else ValueRangeTracker(value_range))
    orchestrator = FeatmapOrchestrator(
        args.target_layers or ['backbone'], options, tracker,
        with_stats=False)
    try:
        layers = orchestrator.resolve(model)
    except ValueError as error:
        raise UsageError(f'--target-layers: {error}') from None
    builder = ProbeBuilder(cfg)

    if args.preview_model:
        try:
            probe = builder.build([items[0].source], model)[0]
        except (OSError, ValueError) as error:
            raise RunError(str(error)) from error
        print_preview(model, probe, sys.stdout)
        return 0
    if cam is not None:
        return _run_cam(args, cam, model, builder, items, checkpoints, cfg,
                        sink)
    needed = _modules_drawn_from(model, builder, items, layers)

    def check(loaded: Fit) -> None:
        check_fit(loaded, needed)

    check(fit)

    print_log(
        f'Drawing {", ".join(layers)} of {len(checkpoints)} '
        f'checkpoint(s) on {len(items)} image(s).',
        logger='current')
    drawer = SeriesDrawer(
        model,
        orchestrator,
        builder,
        checkpoints,
        loaded=checkpoints[0],
        class_names=class_names(model, cfg),
        check_fit=check)
    _draw(drawer, items, sink)
    return 0


def _run_cam(args: argparse.Namespace, options: CamOptions, model,
             builder: ProbeBuilder, items, checkpoints: List[str], cfg,
             sink: PictureSink) -> int:
    """``--cam``: each image's CAMs for each checkpoint."""
    cam = CamOrchestrator(options, alpha=args.alpha,
                          colormap=args.colormap.lower())
    try:
        layers = cam.resolve(model)
        first = _first_probe(builder, items, model)
        if first is not None:
            cam.check(model, [first])
    except ValueError as error:
        raise UsageError(f'--cam {options.method}: {error}') from None
    print_log(
        f'Drawing {options.method} CAMs of {cam.rule.kind} targets at '
        f'{", ".join(layers)} for {len(checkpoints)} checkpoint(s) on '
        f'{len(items)} image(s).',
        logger='current')
    drawer = CamSeriesDrawer(
        model,
        cam,
        builder=builder,
        checkpoints=checkpoints,
        loaded=checkpoints[0],
        class_names=class_names(model, cfg))
    _draw(drawer, items, sink)
    return 0


def _first_probe(builder: ProbeBuilder, items, model):
    """The first image that can be read, prepared; None if none can."""
    for item in items:
        try:
            return builder.build([item.source], model)[0]
        except (OSError, ValueError):
            continue  # reported when it is drawn
    return None


def _draw(drawer: SeriesDrawer, items, sink: PictureSink) -> None:
    """Run ``drawer`` over ``items`` into ``sink`` with a progress bar,
    then report what was written and what failed."""
    progress = ProgressBar(len(items)) if len(items) > 1 else None

    def advance(count: int) -> None:
        for _ in range(count if progress else 0):
            progress.update()

    drawer.run(items, sink, advance)
    if progress:
        progress.file.write('\n')
    _report_written(sink.written)
    if drawer.failed:
        raise RunError(f'{len(drawer.failed)} of {len(items)} image(s) '
                       'could not be drawn: ' +
                       '; '.join(reason for _, reason in drawer.failed))


def _modules_drawn_from(model, builder: ProbeBuilder, items,
                        layers: List[str]) -> Set[str]:
    """The modules the maps of ``layers`` are computed from, found by one
    forward pass of the first image that can be read."""
    probe = _first_probe(builder, items, model)
    if probe is None:
        return {name for name, _ in model.named_modules()}
    return modules_computed_before(
        model, lambda: model(**probe.model_kwargs(), mode='tensor'), layers)


def _report_written(written: List[str]) -> None:
    if written:
        folder = osp.commonpath([osp.abspath(p) for p in written])
        shown = written if len(written) <= 4 else [folder + osp.sep]
        print_log(
            f'Wrote {len(written)} file(s): {", ".join(shown)}',
            logger='current')


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Entry point of ``tools/featvis.py`` and the ``mmfeatvis`` command.

    Args:
        argv (list[str], optional): Arguments; defaults to ``sys.argv``.
        prog (str, optional): Program name in messages.

    Returns:
        int: The exit code: 0 success, 1 runtime failure, 2 usage error.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        print(f'{parser.prog}: error: {error}', file=sys.stderr)
        return error.exit_code
    except RunError as error:
        print(f'{parser.prog}: error: {error}', file=sys.stderr)
        return error.exit_code
