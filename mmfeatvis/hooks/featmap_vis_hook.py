"""FeatmapVisHook: feature maps of a fixed probe image during training."""
import logging
import os
import signal
import threading
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from mmengine.dist import is_main_process
from mmengine.hooks import EMAHook, Hook
from mmengine.logging import print_log
from mmengine.registry import DATASETS, HOOKS
from mmengine.runner import IterBasedTrainLoop
from torch import nn

from ..capture import is_sharded, unwrap_model
from ..engine_internals import built_loop, built_train_loop, vis_backends
from ..options import DrawOptions, cam_options
from ..orchestrator import (CamOrchestrator, FeatmapOrchestrator, LoopSamples,
                            SampleSpec, check_sample_spec, chosen_indices,
                            gather_samples)
from ..probe import Probe, ProbeBuilder, ProbeSpec, class_names, read_rgb
from ..reduce import ProbeMaps, ValueRangeTracker
from ..reduce.cam import ProbeCams
from ..write import (WRITE_FAILURES, BackgroundWriter, DrawingProcess,
                     DrawingProcessGone, check_image_format, drawing_process,
                     prepare_backends)

CHECKPOINT_KEY = 'featvis_value_ranges'
#: What ``target_layers=None`` draws: those of them that the model has.
DEFAULT_LAYERS = ('backbone', 'neck')


@HOOKS.register_module()
class FeatmapVisHook(Hook):
    """Draw feature maps of fixed probe images into the Visualizer backends.

    Every ``interval`` iterations (or epochs), the probe images go through
    the model in eval mode without gradients; forward hooks on the target
    layers exist only for that pass. The maps are reduced on the model's
    device, overlaid on the original probe image (padding cropped) and
    written through ``runner.visualizer`` with the training iteration as
    step. The hook never changes training: modes, gradients, random states
    and BatchNorm statistics are left as they were, and failures after
    start-up become warnings.

    Args:
        probe (str | list | dict, optional): An image path, a list of paths,
            or ``dict(dataset='val'|'train'|'test', index=i)``. Defaults to
            None: the first sample of the validation set.
        target_layers (str | Sequence[str], optional): Module names, dotted
            paths or globs such as ``'backbone.stage*'``; each must match.
            Defaults to None: ``backbone`` and ``neck``, those of them the
            model has.
        interval (int): Fire every ``interval`` iterations or epochs.
            Defaults to 50.
        by_epoch (bool): Count ``interval`` in epochs. Defaults to False.
        channel_reduction (str | None): ``'select_max'``, ``'squeeze_mean'``,
            ``'pca'``, ``'norm'``, ``'std'``, or None for the top-k channel
            grid. For a head's class branch (``target_layers=
            ['bbox_head.*cls*']``, or YOLOv5's ``convs_pred``),
            ``'class_max'`` draws the highest class probability at each
            position and ``'class_topk'`` the ``topk`` classes that fire
            most, each on the range 0 to 1. Defaults to ``'select_max'``.
        topk (int): Channels in the grid when ``channel_reduction`` is None.
            Defaults to 4.
        arrangement (tuple[int, int]): Rows and columns of that grid.
            Defaults to (2, 2).
        alpha (float): Weight of the heat map over the image. Defaults to
            0.5.
        colormap (str): OpenCV colormap name. Defaults to ``'jet'``.
        value_range (str | tuple[float, float]): Which values the ends of
            the colour scale stand for. ``'adaptive'`` keeps each layer's
            range across firings, so neighbouring steps compare colour for
            colour, and re-anchors it (saying so in the tile title and the
            log) when the map no longer fits it, as when training from
            scratch grows activations a thousandfold; ``'first'`` freezes
            the range of the first firing (growth shows as saturation);
            ``'running'`` follows a slow moving average; ``'per_image'``
            gives each image its own range; ``(lo, hi)`` fixes one range
            for every map. Every overview tile states its range. Defaults
            to ``'adaptive'``.
        percentile (tuple[float, float], optional): Robust clipping used to
            measure the range. Defaults to (1, 99).
        draw_pred (bool): Draw a detector's predictions under the maps.
            Defaults to True.
        score_thr (float): Score threshold for predictions. Defaults to 0.3.
        before_train (bool): Fire once before training (the baseline).
            Defaults to True.
        after_val (bool): Fire after each validation. Defaults to False.
        use_ema (bool): Probe the EMA weights of an ``EMAHook`` when there is
            one. Defaults to False.
        with_stats (bool): Write per-layer activation statistics (mean, std,
            share of non-positive values, max) as scalars. Defaults to True.
        per_layer (bool): Also write one image per layer, at the probe
            image's size (tags ``featvis/<probe>/<layer>``), for a close
            look at one layer; it multiplies what a firing draws and
            encodes by the number of layers. Defaults to False.
        overview (bool): Write one titled image of all layers per probe
            (``featvis/<probe>/overview``); its tiles are drawn small,
            straight from the maps. Only what is written is drawn.
            Defaults to True.
        image_format (str): ``'jpg'`` (quality 92) or ``'png'`` (lossless,
            about 15 times slower to encode and 7 times larger) for the
            local files and TensorBoard images. Defaults to ``'jpg'``.
        max_image_side (int, optional): Longest side of a per-layer image
            (a top-k grid counts whole): a larger probe is drawn whole but
            resampled, once with a warning. None: the probe's own size.
            Defaults to 2048.
        probe_pipeline (list[dict], optional): Replaces the config's test
            pipeline for the probe. Defaults to None.
        async_write (bool): Wait for the maps, colour, encode and write on a
            background thread, so that the training loop pays only for the
            probe pass and for queuing the reductions. Defaults to True.
        draw_process (bool): With ``async_write``, render, encode and write
            the local image files in a separate drawing process at idle
            priority (one per training process, started at the beginning
            of the run; it holds its own copy of the Python libraries,
            some hundreds of MB), so that neither the interpreter lock of
            the training process nor, on a busy CPU, its cores go to the
            drawing; TensorBoard and other backends get the encoded images
            from the writer thread. CAMs are drawn on the writer thread.
            Defaults to True.
        val_samples (int | list[int] | str, optional): Also draw these
            samples of the validation set at every validation, from the
            loop's own forward pass (no extra forward): dataset indices,
            a count ``N`` (evenly spaced, the same at every validation) or
            ``'all'``. Ground truth and predictions are drawn under the
            maps (a detector's matched, false and missed boxes; a
            segmentor's mask outlines) with the image's own metric. Tags
            ``featvis/val_<index>/<layer>``, at the training iteration.
            Defaults to None: none.
        test_samples (int | list[int] | str, optional): The same for
            ``runner.test()`` runs (tags ``featvis/test_<index>/...``).
            Defaults to None: as ``val_samples``.
        cam (dict, optional): Also draw class activation maps of the
            probes at every firing: why the model predicts what it does.
            Keys (see :class:`~mmfeatvis.options.CamOptions`): ``method``
            (``'layercam'``, ``'hirescam'``, ``'gradcam'``, ``'gradcam++'``
            or ``'eigencam'``), ``target_layers`` (default: the neck's
            outputs, pyramid levels fused), ``topk``, ``score_thr``,
            ``classes``, ``target``, ``norm_in_box``, ``layout``. A
            detector's map explains one kept box each; a segmentor's a
            class over its mask; a classifier's a logit. Tag
            ``featvis/<probe>/cam/<method>``, with ``value_range``'s
            policy. Gradients go to the captured activations only: the
            parameters' gradients stay as they were. Defaults to None.
        cuda_graphs (bool): On a GPU, record the probe's forward pass
            (tensor mode, so not while drawing a detector's boxes) and the
            reductions as CUDA graphs and replay them: at batch 1 a fast
            GPU otherwise waits for Python to launch each kernel. The
            graphs keep their memory (about the probe's activations) for
            the hook's lifetime. Defaults to True.
    """

    priority = 'LOW'

    def __init__(self,
                 probe: ProbeSpec = None,
                 target_layers: Union[None, str, Sequence[str]] = None,
                 interval: int = 50,
                 by_epoch: bool = False,
                 channel_reduction: Optional[str] = 'select_max',
                 topk: int = 4,
                 arrangement: Tuple[int, int] = (2, 2),
                 alpha: float = 0.5,
                 colormap: str = 'jet',
                 value_range: Union[str, Tuple[float, float]] = 'adaptive',
                 percentile: Optional[Tuple[float, float]] = (1, 99),
                 draw_pred: bool = True,
                 score_thr: float = 0.3,
                 before_train: bool = True,
                 after_val: bool = False,
                 use_ema: bool = False,
                 with_stats: bool = True,
                 per_layer: bool = False,
                 overview: bool = True,
                 image_format: str = 'jpg',
                 max_image_side: Optional[int] = 2048,
                 probe_pipeline: Optional[List[dict]] = None,
                 async_write: bool = True,
                 draw_process: bool = True,
                 val_samples: SampleSpec = None,
                 test_samples: SampleSpec = None,
                 cam: Optional[dict] = None,
                 cuda_graphs: bool = True) -> None:
        if (isinstance(interval, bool) or not isinstance(interval, int)
                or interval <= 0):
            raise ValueError(f'interval must be a positive integer, got '
                             f'{interval!r}.')
        self.probe_spec = ProbeBuilder.normalize_spec(probe)
        for entry in self.probe_spec:
            if isinstance(entry, str):
                read_rgb(entry)  # a missing or unreadable image fails now
        self.interval = interval
        self.by_epoch = by_epoch
        self.fire_before_train = before_train
        self.fire_after_val = after_val
        self.use_ema = use_ema
        self.per_layer = per_layer
        self.overview = overview
        check_image_format(image_format)
        self.image_format = image_format
        self.with_stats = with_stats
        self.probe_pipeline = probe_pipeline
        self._default_layers = target_layers is None
        options = DrawOptions(
            channel_reduction=channel_reduction,
            topk=topk,
            arrangement=arrangement,
            alpha=alpha,
            colormap=colormap,
            percentile=tuple(percentile) if percentile else None,
            draw_pred=draw_pred,
            score_thr=score_thr,
            max_image_side=max_image_side)
        self.range_tracker = ValueRangeTracker(value_range)
        self.orchestrator = FeatmapOrchestrator(
            DEFAULT_LAYERS if target_layers is None else target_layers,
            options,
            self.range_tracker,
            with_stats,
            use_cuda_graphs=cuda_graphs)
        self.cam = None if cam is None else CamOrchestrator(
            cam_options(cam), self.range_tracker, alpha, colormap)
        self.probes: List[Probe] = []
        self.async_write = async_write
        self.draw_process = draw_process and async_write
        self._writer: Optional[BackgroundWriter] = None
        self._last_step: Optional[int] = None
        self._sharded: Optional[bool] = None
        self._sigterm_handler = None
        self.val_samples = check_sample_spec('val_samples', val_samples)
        self.test_samples = check_sample_spec(
            'test_samples', val_samples if test_samples is None else
            test_samples)
        self._samples: Optional[LoopSamples] = None
        # The step of a validation or test run: the loaded checkpoint's.
        self._checkpoint_iter = 0

    # -- set-up: every configuration error surfaces here, before training --
    def before_run(self, runner) -> None:
        """Resolve layers and prepare the probes once."""
        model = unwrap_model(runner.model)
        if self._default_layers:
            # The default names what detectors have; keep what exists.
            present = [n for n in DEFAULT_LAYERS if hasattr(model, n)]
            self.orchestrator.target_layers = present or ['backbone']
        layers = self.orchestrator.resolve(model)
        self._check_loop(runner)
        if not (self._is_sharded(runner) or is_main_process()):
            return
        builder = ProbeBuilder(
            runner.cfg,
            pipeline=self.probe_pipeline,
            build_dataset=DATASETS.build)
        self.probes = builder.build(self.probe_spec, model)
        self._check_drawable(runner, model)
        self._check_cam(runner, model)
        self._check_samples(runner)
        if is_main_process():  # the process that writes
            prepare_backends(runner.visualizer)
            if self.draw_process:
                # It imports its libraries while training starts.
                self._drawing_process()
        if not vis_backends(runner.visualizer):
            print_log(
                'FeatmapVisHook: the visualizer has no backends, so maps are '
                'drawn but not stored; add vis_backends (see '
                'configs/_base_/featvis.py).',
                logger='current',
                level=logging.WARNING)
        print_log(
            f'FeatmapVisHook: {len(self.probes)} probe(s) '
            f'({", ".join(p.source for p in self.probes)}); layers: '
            f'{", ".join(layers)}; every {self.interval} '
            f'{"epoch(s)" if self.by_epoch else "iteration(s)"}.',
            logger='current')

    def _check_loop(self, runner) -> None:
        """``by_epoch`` must match the train loop: an iteration-based loop
        has no epochs to count, so the hook would fire only at the start
        and the end."""
        loop = built_train_loop(runner)
        if self.by_epoch and isinstance(loop, IterBasedTrainLoop):
            raise ValueError(
                'FeatmapVisHook: by_epoch=True counts epochs, but the train '
                f'loop is {type(loop).__name__}, which has none (it would '
                'fire only before and after training); set by_epoch=False '
                'and give interval in iterations.')

    def _check_samples(self, runner) -> None:
        """Chosen samples beyond the end of a built loop's data set stop
        the run now."""
        for stage, spec in (('val', self.val_samples),
                            ('test', self.test_samples)):
            loop = built_loop(runner, stage)
            if spec is not None and loop is not None:
                chosen_indices(f'{stage}_samples', spec,
                               len(loop.dataloader.dataset))

    def _check_drawable(self, runner, model: nn.Module) -> None:
        """One probe pass before training: a layer that no firing could
        draw stops the run now, with the reason."""
        errors, glob_matches = self.orchestrator.undrawable(
            model,
            self.probes,
            call_model=runner.model if self._is_sharded(runner) else None)
        if errors:
            raise ValueError(
                'FeatmapVisHook: these target layers would never be drawn: ' +
                '; '.join(f'{layer!r}: {reason}'
                          for layer, reason in errors.items()) + '.')
        self.orchestrator.report_skipped(glob_matches)

    def _check_cam(self, runner, model: nn.Module) -> None:
        """One CAM pass before training: a model with no target rule, or a
        layer no target's gradient reaches, stops the run now."""
        if self.cam is None:
            return
        if self._is_sharded(runner):
            raise ValueError(
                'FeatmapVisHook: cam needs the whole model on one process; '
                'it does not run on sharded (FSDP) models.')
        try:
            self.cam.resolve(model)
            self.cam.check(model, self.probes)
        except ValueError as error:
            raise ValueError(f'FeatmapVisHook: {error}') from error

    def _watch_termination(self) -> None:
        """On SIGTERM, finish the images being written, then end as the
        process would without the hook (the previous handler, or the
        default, which kills it)."""
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
            return  # someone else handles SIGTERM: leave it to them

        def on_sigterm(signum, frame) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._close_writer(timeout=20)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
        self._sigterm_handler = on_sigterm

    def _unwatch_termination(self) -> None:
        if (self._sigterm_handler is not None
                and signal.getsignal(signal.SIGTERM) is self._sigterm_handler):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._sigterm_handler = None

    # -- when it fires --
    def before_train(self, runner) -> None:
        """Record the baseline before the first (or resumed) iteration."""
        if self.fire_before_train:
            self._fire(runner, runner.iter)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Any = None) -> None:
        """Fire every ``interval`` iterations (unless counting epochs)."""
        if not self.by_epoch and self.every_n_train_iters(
                runner, self.interval):
            self._fire(runner, runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        """Fire every ``interval`` epochs when counting epochs."""
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self._fire(runner, runner.iter)

    def before_val(self, runner) -> None:
        """A validation-only run (``runner.val()``) draws the probe once,
        at the loaded checkpoint's iteration."""
        if built_train_loop(runner) is None:
            self._fire(runner, self._step(runner))

    def before_test(self, runner) -> None:
        """A test run (``runner.test()``) draws the probe once, at the
        loaded checkpoint's iteration."""
        self._fire(runner, self._step(runner))

    def before_val_epoch(self, runner) -> None:
        """Note which batches hold the chosen validation samples."""
        self._start_samples(runner, 'val', self.val_samples)

    def before_test_epoch(self, runner) -> None:
        """Note which batches hold the chosen test samples."""
        self._start_samples(runner, 'test', self.test_samples)

    def before_val_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Any = None) -> None:
        """Capture this batch if it holds a chosen sample."""
        self._capture_samples(runner, batch_idx)

    def before_test_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None) -> None:
        """Capture this batch if it holds a chosen sample."""
        self._capture_samples(runner, batch_idx)

    def after_val_iter(self,
                       runner,
                       batch_idx: int,
                       data_batch: Any = None,
                       outputs: Any = None) -> None:
        """Reduce the chosen samples of this batch."""
        self._reduce_samples(batch_idx, outputs)

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Any = None,
                        outputs: Any = None) -> None:
        """Reduce the chosen samples of this batch."""
        self._reduce_samples(batch_idx, outputs)

    def after_val_epoch(self,
                        runner,
                        metrics: Optional[Dict[str, float]] = None) -> None:
        """Write the chosen samples; optionally fire after each
        validation."""
        self._write_samples(runner)
        if self.fire_after_val:
            self._fire(runner, self._step(runner))

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        """Write the chosen test samples."""
        self._write_samples(runner)

    def after_test(self, runner) -> None:
        """A test run ends here: flush."""
        self._flush()

    def after_train(self, runner) -> None:
        """Always record the final state, and wait until it is written."""
        self._fire(runner, runner.iter)
        self._flush()

    def after_val(self, runner) -> None:
        """A validation-only run (``runner.val()``) ends here: flush. In a
        training run the samples are drawn while training goes on."""
        if built_train_loop(runner) is None:
            self._flush()

    def after_run(self, runner) -> None:
        """Nothing may still be writing when the run ends: the writer
        thread finishes its queue and stops, and failures are summed up."""
        if self._samples is not None:
            self._samples.close()
        self._close_writer()
        self._unwatch_termination()
        failed = WRITE_FAILURES.summary()
        if failed:
            print_log(
                f'FeatmapVisHook: {failed}.',
                logger='current',
                level=logging.WARNING)

    # -- value ranges survive resuming --
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the kept value ranges so a resumed run stays comparable."""
        checkpoint.setdefault('meta', {})[CHECKPOINT_KEY] = (
            self.range_tracker.state_dict())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore value ranges saved by :meth:`before_save_checkpoint`."""
        meta = checkpoint.get('meta', {})
        self._checkpoint_iter = int(meta.get('iter', 0) or 0)
        state = meta.get(CHECKPOINT_KEY)
        if state:
            self.range_tracker.load_state_dict(state)

    # -- samples of the validation and test sets --
    def _step(self, runner) -> int:
        """The training iteration; in a validation or test run the loaded
        checkpoint's (``runner.iter`` would build the train loop there)."""
        if built_train_loop(runner) is not None:
            return runner.iter
        return self._checkpoint_iter

    def _start_samples(self, runner, stage: str, spec: SampleSpec) -> None:
        self._samples = None
        if spec is None:
            return
        try:
            loop = runner.val_loop if stage == 'val' else runner.test_loop
            indices = chosen_indices(f'{stage}_samples', spec,
                                     len(loop.dataloader.dataset))
            self._samples = LoopSamples(self.orchestrator, stage, indices)
            self._samples.start(loop.dataloader)
        except Exception as error:  # never stop or alter the loop
            self._samples = LoopSamples(self.orchestrator, stage, [])
            self._warn(f'the {stage} samples are not drawn', error)

    def _capture_samples(self, runner, batch_idx: int) -> None:
        if self._samples is None:
            return
        try:
            self._samples.before_iter(unwrap_model(runner.model), batch_idx)
        except Exception as error:
            self._samples.close()
            self._warn(f'batch {batch_idx} is not captured', error)

    def _reduce_samples(self, batch_idx: int, outputs: Any) -> None:
        if self._samples is None:
            return
        try:
            self._samples.after_iter(batch_idx, outputs)
        except Exception as error:
            self._samples.close()
            self._warn(f'the samples of batch {batch_idx} are not drawn',
                       error)

    def _write_samples(self, runner) -> None:
        samples, self._samples = self._samples, None
        if samples is None:
            return
        samples.close()
        # Every rank takes part, also one with nothing to send: under DDP
        # each rank holds its own share of the samples.
        maps = gather_samples(samples.maps)
        if not (is_main_process() and maps):
            return
        step = self._step(runner)
        names = class_names(
            unwrap_model(runner.model), runner.cfg, runner.visualizer)
        job = partial(self._write_sample_maps, runner.visualizer, maps, step,
                      names)
        description = (f'FeatmapVisHook: drawing {len(maps)} '
                       f'{samples.prefix} sample(s) at step {step}')
        try:
            if self.async_write:
                self._background().submit(job, description)
            else:
                job()
        except Exception as error:
            self._warn(f'{description} failed', error)

    def _write_sample_maps(self, visualizer, maps: List[ProbeMaps],
                           step: int, names: Optional[Sequence[str]]) -> None:
        # On the writer thread: the drawing process is asked for here, not
        # on the loop's thread, which would wait while it draws.
        self.orchestrator.write(
            visualizer,
            maps,
            step,
            names,
            per_layer=self.per_layer,
            overview=self.overview,
            stats=False,
            image_format=self.image_format,
            process=self._drawing_process())

    @staticmethod
    def _warn(what: str, error: Exception) -> None:
        print_log(
            f'FeatmapVisHook: {what} ({type(error).__name__}: {error}); '
            'the loop goes on.',
            logger='current',
            level=logging.WARNING)

    # -- the firing itself --
    def _is_sharded(self, runner) -> bool:
        if self._sharded is None:
            self._sharded = is_sharded(runner.model)
        return self._sharded

    def _probe_model(self, runner) -> nn.Module:
        if self.use_ema:
            for hook in runner.hooks:
                if isinstance(hook, EMAHook) and hasattr(hook, 'ema_model'):
                    return hook.ema_model.module
        return unwrap_model(runner.model)

    def _fire(self, runner, step: int) -> None:
        if step == self._last_step:
            return  # e.g. after_train right after an interval firing
        self._last_step = step
        sharded = self._is_sharded(runner)
        if not (sharded or is_main_process()):
            return  # under DDP only rank 0 probes: no collective, no hang
        description = f'FeatmapVisHook: drawing at step {step}'
        try:
            model = self._probe_model(runner)
            # Deferred: on a GPU the maps' copy to the host is only queued
            # here; the writer thread waits for it, not the training loop.
            maps = self.orchestrator.fire(
                model,
                self.probes,
                call_model=runner.model if sharded else None,
                defer=True)
            if not is_main_process():
                return
            names = class_names(model, visualizer=runner.visualizer)
            cams = self._fire_cam(model, step, names)
            job = partial(self._write, runner.visualizer, maps, step, names,
                          cams)
            if self.async_write:
                self._background().submit(job, description)
            else:
                job()
        except Exception as error:  # never stop or alter a training run
            print_log(
                f'{description} failed and was skipped '
                f'({type(error).__name__}: {error}); training goes on.',
                logger='current',
                level=logging.WARNING)

    def _fire_cam(self, model: nn.Module, step: int,
                  names: Optional[Sequence[str]]) -> List[ProbeCams]:
        """The probes' CAMs, on this thread (gradients); a failure skips
        them alone, with a warning."""
        if self.cam is None:
            return []
        try:
            return self.cam.fire(model, self.probes, names)
        except Exception as error:  # never stop or alter a training run
            self._warn(f'the CAMs at step {step} are not drawn', error)
            return []

    def _write(self,
               visualizer,
               maps: List[ProbeMaps],
               step: int,
               names: Optional[Sequence[str]],
               cams: Sequence[ProbeCams] = ()) -> None:
        reanchored = [
            f'{probe_maps.probe.name}/{item.layer}' for probe_maps in maps
            for item in probe_maps.layers if item.reanchored
        ]
        if reanchored:
            print_log(
                f'FeatmapVisHook: step {step}: new value range for '
                f'{", ".join(reanchored)} (the kept one no longer fit the '
                'maps; the tiles state the ranges).',
                logger='current')
        self.orchestrator.write(
            visualizer,
            maps,
            step,
            names,
            per_layer=self.per_layer,
            overview=self.overview,
            stats=self.with_stats,
            image_format=self.image_format,
            process=self._drawing_process())
        if cams:
            self.cam.write(visualizer, cams, step, names, self.image_format)

    def _drawing_process(self) -> Optional[DrawingProcess]:
        """The drawing process (started), or None when drawing stays in
        this process."""
        if not self.draw_process:
            return None
        try:
            process = drawing_process()
            process.start()
            return process
        except DrawingProcessGone as error:
            self.draw_process = False
            self._warn('the drawing process did not start, so images are '
                       'drawn on the writer thread', error)
            return None

    def _background(self) -> BackgroundWriter:
        if self._writer is None:
            self._writer = BackgroundWriter()
            self._watch_termination()
        return self._writer

    def _flush(self) -> None:
        if self._writer is not None and not self._writer.flush():
            print_log(
                'FeatmapVisHook: the writer thread is still busy after 10 '
                'minutes; training goes on without waiting for it.',
                logger='current',
                level=logging.WARNING)

    def _close_writer(self, timeout: float = 60.0) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close(timeout)
