"""One firing on fixed probes: probe -> capture -> reduce -> render -> write.

:class:`FeatmapOrchestrator` holds the drawing options, the resolved layers
and what persists across firings (value ranges, PCA signs, recorded CUDA
graphs). One firing is :meth:`~FeatmapOrchestrator.fire` (capture every
probe and reduce its maps on the model's device), then
:meth:`~FeatmapOrchestrator.write` (render and write, on any thread). The
hook, the command line and the benchmarks all go through these two.
"""
import contextlib
import dataclasses
import functools
import logging
from typing import (Any, Callable, Dict, Hashable, List, Optional, Sequence,
                    Tuple)

import torch
from mmengine.logging import print_log
from mmengine.visualization import Visualizer
from torch import nn

from ..capture import (FeatureCapture, ProbeLayout, all_modules,
                       isolated_inference, layer_of, named_exactly,
                       not_called_reason, raised_score_threshold,
                       resolve_layers)
from ..cuda.graphs import (Branches, DeviceResults, ForwardReplays,
                           ReplayCache, ReplayedForward, ReplayedReduction,
                           graph_key)
from ..cuda.transfer import HostCopy, start_host_copy
from ..engine_internals import vis_backends
from ..options import DrawOptions
from ..probe import Probe
from ..reduce import (STATS_KEYS, DeviceLayer, ProbeMaps, ReducedLayer,
                      ValueRangeTracker, activation_stats_tensor, content_only,
                      device_results, measure_range_tensor, range_floats,
                      reduce_for_image, single_sample_layout)
from ..reduce.classes import CLASS_REDUCTIONS, PROBABILITY_RANGE
from ..render import ProbeResult
from ..write import (WRITE_FAILURES, DrawingProcess, DrawingProcessGone,
                     local_image_dirs, local_scalar_files, put_encoded,
                     stat_scalars, wants_pixels, write_scalars)
from .drawing import (DrawnFiring, DrawRequest, FeatmapDrawer, draw_firing,
                      draw_in_process)


class FeatmapOrchestrator:
    """Runs probes through a model and draws the captured maps.

    Args:
        target_layers (Sequence[str]): Layer names, dotted paths or globs.
        options (DrawOptions): Drawing options.
        range_tracker (ValueRangeTracker, optional): The value-range
            policy; ``None`` draws each map on its own range
            (``'per_image'``).
        with_stats (bool): Compute activation statistics.
        use_cuda_graphs (bool): On a GPU, record the probe's forward pass
            (tensor mode) and, once its value ranges are frozen, its
            reductions as CUDA graphs, and replay them at later firings
            (see :mod:`mmfeatvis.cuda.graphs`).
    """

    def __init__(self,
                 target_layers: Sequence[str],
                 options: DrawOptions,
                 range_tracker: Optional[ValueRangeTracker] = None,
                 with_stats: bool = True,
                 use_cuda_graphs: bool = True) -> None:
        self.target_layers = ([target_layers] if isinstance(
            target_layers, str) else list(target_layers))
        self.options = options
        self.range_tracker = (
            ValueRangeTracker('per_image')
            if range_tracker is None else range_tracker)
        self.with_stats = with_stats
        self.layer_names: List[str] = []
        # The model's classes, for a class branch's per-class maps.
        self.num_classes: Optional[int] = None
        self._not_called: Dict[str, str] = {}
        self._reported: set = set()
        self._noted: set = set()
        self._process_gone = False
        self.use_cuda_graphs = use_cuda_graphs
        self.reduction_replays = ReplayCache()
        self._pca_bases: Dict[Hashable, torch.Tensor] = {}
        self.forward_replays = ForwardReplays()
        self.layout = ProbeLayout()

    def resolve(self, model: nn.Module) -> List[str]:
        """Resolve the target layers on ``model`` (raises for unknown)."""
        self.layer_names = resolve_layers(model, self.target_layers)
        self.num_classes = _num_classes(model)
        self._not_called = {
            layer: not_called_reason(model, layer)
            for layer in self.layer_names
        }
        return self.layer_names

    def undrawable(
        self,
        model: nn.Module,
        probes: Sequence[Probe],
        call_model: Optional[Callable[..., Any]] = None
    ) -> Tuple[Dict[str, str], Dict[str, str]]:
        """Feed the probes through the model once, as a firing would, and
        tell which layers can never be drawn, without changing any state
        (value ranges, PCA signs, recorded graphs).

        Returns:
            tuple[dict, dict]: ``(errors, warnings)``, each ``{layer:
            reason}``. Errors are layers named exactly (not through a glob)
            and every layer when none at all can be drawn: a run with them
            would write nothing for them, ever. Warnings are the layers a
            glob matched.
        """
        scratch = FeatmapOrchestrator(
            self.target_layers,
            self.options,
            with_stats=False,
            use_cuda_graphs=False)
        scratch.layer_names = list(self.layer_names) or self.resolve(model)
        scratch._not_called = dict(self._not_called)
        scratch.layout = self.layout  # a layout that fails, fails for both
        skipped: Dict[str, str] = {}
        drawn = False
        for maps in scratch.fire(model, probes, call_model, report=False):
            skipped.update(maps.skipped)
            drawn = drawn or bool(maps.layers)
        exact = named_exactly(self.target_layers, self.layer_names)
        errors = {
            layer: reason
            for layer, reason in skipped.items()
            if not drawn or layer in exact or layer_of(layer) in exact
        }
        return errors, {k: v for k, v in skipped.items() if k not in errors}

    def forward_mode(self, model: nn.Module) -> str:
        """``'predict'`` when drawing a detector's boxes, else ``'tensor'``.

        Segmentors stay in tensor mode: their predict may run sliding
        windows, which would call the hooked layers once per window.
        """
        if self.options.draw_pred and _is_detector(model):
            return 'predict'
        return 'tensor'

    def capture(
        self,
        model: nn.Module,
        probes: Sequence[Probe],
        call_model: Optional[Callable[..., Any]] = None
    ) -> List[Tuple[Probe, Dict[str, Any], Any]]:
        """Feed every probe through the model and capture the layers.

        Args:
            model (nn.Module): The unwrapped model (hooks go on it).
            probes (Sequence[Probe]): Prepared probes.
            call_model (callable, optional): What to call for the forward
                pass; a sharded wrapper must be called instead of the inner
                model so that it gathers its parameters. Defaults to
                ``model``.

        Returns:
            list: ``(probe, features, outputs)`` per probe.
        """
        if not self.layer_names:
            self.resolve(model)
        call_model = call_model or model
        mode = self.forward_mode(model)
        # A sharded wrapper gathers parameters with collectives: no graph.
        graphs = (
            self.use_cuda_graphs and mode == 'tensor' and call_model is model)
        if graphs:
            ready = self._ready_replays(model, probes)
            if ready is not None:
                # Replays read the recorded eval-mode pass and touch no
                # module, flag, hook or generator: nothing to isolate.
                return [(probe, replay.replay(), None)
                        for probe, replay in zip(probes, ready)]
        captured = []
        replayed = set()  # a replay overwrites the maps of the one before
        # One walk over the modules serves both (it runs at every firing).
        modules = all_modules(model)
        score_thr = self.options.score_thr if mode == 'predict' else 0
        with isolated_inference(model, modules), raised_score_threshold(
                model, score_thr, modules), FeatureCapture(
                    model, self.layer_names) as capture:
            for probe in probes:
                key = _forward_key(model, probe) if graphs else None
                replay = self._forward_replay(
                    key, model, probe,
                    capture) if graphs and key not in replayed else None
                if replay is not None:
                    replayed.add(key)
                    captured.append((probe, replay.replay(), None))
                    continue
                outputs = self.layout.forward(
                    functools.partial(call_model, mode=mode),
                    probe.model_kwargs(), capture.pop_features)
                features = capture.pop_features()
                if graphs and graph_key(probe.name, features) is not None:
                    # Maps all on one GPU, all tensors: worth recording.
                    self.forward_replays.allow(key)
                captured.append(
                    (probe, features, outputs if mode == 'predict' else None))
        return captured

    def _ready_replays(self, model: nn.Module, probes: Sequence[Probe]
                       ) -> Optional[List[ReplayedForward]]:
        """The valid recorded forward of every probe, or None where one
        has none (or two probes share one, whose replays would overwrite
        each other's maps): then :meth:`capture` takes the full path."""
        keys = [_forward_key(model, probe) for probe in probes]
        if len(set(keys)) < len(keys):
            return None
        ready = [self.forward_replays.recorded(key) for key in keys]
        if any(replay is None or not replay.valid_for(model)
               for replay in ready):
            return None
        return ready

    def _forward_replay(self, key: Hashable, model: nn.Module, probe: Probe,
                        capture: FeatureCapture) -> Optional[ReplayedForward]:

        def run() -> Dict[str, torch.Tensor]:
            model(**probe.model_kwargs(), mode='tensor')
            return capture.pop_features()

        return self.forward_replays.get(
            key, model, run, discard=capture.pop_features)

    def reduce(self,
               probe: Probe,
               features: Dict[str, Any],
               outputs: Any = None,
               defer: bool = False,
               report: bool = True,
               with_stats: Optional[bool] = None) -> ProbeMaps:
        """Reduce the captured maps of one probe on their device.

        Everything that touches the model's device happens here, so that
        the caller can hand the result to another thread: the reduced maps
        (small) and predictions are copied to the host, value ranges and
        statistics are plain floats.

        Off the CPU the reduction makes no host synchronisation (except
        for 'pca', whose eigensolver syncs); all layers' maps, channel
        indices, value ranges, statistics and NaN/Inf counts then come to
        the host in one copy, after which warnings about NaN/Inf input are
        given. A detector's prediction (``draw_pred``) has its own copies.

        Args:
            probe (Probe): The probe the features belong to.
            features (dict): What :meth:`capture` captured for it.
            outputs (Any): The model's predictions, or None.
            defer (bool): Return as soon as the copy to the host is queued;
                :meth:`ProbeMaps.wait` (e.g. on the writer thread) waits
                for the device. Defaults to False: wait here.
            report (bool): Warn (once per layer) about layers that cannot
                be drawn. Defaults to True.
            with_stats (bool, optional): Compute activation statistics;
                None: as the orchestrator was built.
        """
        maps = ProbeMaps(probe)
        called = getattr(features, 'called', None)
        if called is None:  # not from FeatureCapture: read the names
            called = {layer_of(name) for name in features}
        for layer in self.layer_names:
            if layer not in called:
                maps.skipped[layer] = self._not_called.get(
                    layer, 'it was not called in the probe forward')
        tensors: Dict[str, torch.Tensor] = {}
        for layer, featmap in features.items():
            if isinstance(featmap, torch.Tensor):
                tensors[layer] = featmap
            else:
                maps.skipped[layer] = (
                    f'output is {type(featmap).__name__}, not a tensor')
        if outputs:
            # Copied on its own (a data sample of many small tensors): only
            # detectors drawing their boxes have one. Copied on the CPU too:
            # it is the probe's own data sample, which the next firing's
            # predict fills in again.
            maps.prediction = _to_host(outputs[0])
        if with_stats is None:
            with_stats = self.with_stats
        # A recorded reduction computes what the orchestrator was built for.
        replay = (self._replay_for(probe, tensors)
                  if with_stats == self.with_stats else None)
        if replay is not None:
            (recorded, skipped), copy = replay.start(tensors)
            # The recorded Python objects are a template: copy before
            # filling in this firing's host values.
            pending = [
                dataclasses.replace(
                    item, reduced=dataclasses.replace(item.reduced))
                for item in recorded
            ]
        else:
            (pending, skipped), device = self._reduce_all(
                probe, tensors, with_stats)
            copy = start_host_copy(device)
        maps.skipped.update(skipped)
        if report:
            self.report_skipped(maps.skipped)
        maps._completion = functools.partial(self._host_layers, pending, copy)
        return maps if defer else maps.wait()

    def _reduce_all(
        self,
        probe: Probe,
        tensors: Dict[str, torch.Tensor],
        with_stats: Optional[bool] = None,
        parallel: bool = False
    ) -> Tuple[Tuple[List[DeviceLayer], Dict[str, str]], DeviceResults]:
        """Reduce every map on its device: ``((layers, skipped), device
        tensors to copy to the host)``. Recordable as a CUDA graph when the
        kept ranges are frozen (nothing here then changes state).

        With ``parallel`` (CUDA maps, while recording), each layer's
        kernels go to a branch of their own (:class:`Branches`), joined
        before the results are gathered."""
        if with_stats is None:
            with_stats = self.with_stats
        pending: List[DeviceLayer] = []
        skipped: Dict[str, str] = {}
        branches = Branches([t.numel() for t in tensors.values()]
                            ) if parallel else None
        for index, (layer, featmap) in enumerate(tensors.items()):
            try:
                with (branches.branch(index)
                      if branches else contextlib.nullcontext()):
                    pending.append(
                        self._reduce_one(probe, layer, featmap, with_stats))
            except ValueError as error:
                skipped[layer] = str(error)
        if branches:
            branches.join()
        return (pending, skipped), device_results(pending)

    def _replay_for(
            self, probe: Probe,
            tensors: Dict[str, torch.Tensor]) -> Optional[ReplayedReduction]:
        """The CUDA graph of this probe's reductions, when they can be
        replayed: on a GPU, without 'pca' (its eigensolver syncs), and
        where the range tracker changes no state any more."""
        if not self.use_cuda_graphs or not tensors:
            return None
        key = graph_key(probe.name, tensors)
        if key is None or self.options.channel_reduction == 'pca':
            return None
        if not all(
                self.range_tracker.replayable((probe.name, layer))
                for layer in tensors):
            return None
        return self.reduction_replays.get(
            key, tensors,
            functools.partial(self._reduce_all, probe, parallel=True))

    def _reduce_one(self, probe: Probe, layer: str, featmap: torch.Tensor,
                    with_stats: bool) -> DeviceLayer:
        opts = self.options
        key = (probe.name, layer)
        featmap, layout = single_sample_layout(featmap)
        reduced = reduce_for_image(
            featmap,
            opts.channel_reduction,
            opts.topk,
            image_meta=probe.meta,
            image_hw=probe.image.shape[:2],
            layout=layout,
            pca_reference=self._pca_bases.get(key),
            num_classes=self.num_classes)
        if reduced.basis is not None:
            # The next firing's components take their signs from these.
            self._pca_bases[key] = reduced.basis
        stats = activation_stats_tensor(featmap) if with_stats else None
        if opts.channel_reduction in CLASS_REDUCTIONS:
            # Probabilities: always on their own scale, 0 to 1.
            return DeviceLayer(layer, reduced, key, PROBABILITY_RANGE, None,
                               stats, None)
        tracker = self.range_tracker
        observed = values = None
        if tracker.needs_measurement(key):
            # Over the image content: letterbox padding would stretch it.
            content = content_only(reduced, probe.meta)
            observed = measure_range_tensor(
                content, percentile=opts.percentile)
            if tracker.needs_values(key):
                values = content.maps
        norm_range = tracker.update(key, observed, values)
        kept = tracker.to_settle(key)
        return DeviceLayer(layer, reduced, key, norm_range, kept, stats,
                           tracker.was_reanchored(key))

    def _host_layers(self, pending: List[DeviceLayer],
                     copy: HostCopy) -> List[ReducedLayer]:
        """Wait for ``copy`` and fill in the host values of
        :func:`~mmfeatvis.reduce.device_results`.

        Afterwards maps and channel indices are CPU tensors, ranges tuples
        of floats, statistics dicts of floats, and the tracker keeps the
        host copy of every range it had left on the device.
        """
        host = copy.result()
        layers = []
        for i, item in enumerate(pending):
            reduced = item.reduced
            reduced.maps = host[i, 'maps']
            if reduced.channels is not None:
                reduced.channels = host[i, 'channels']
            if reduced.nonfinite is not None:
                reduced.nonfinite.warn(host[i, 'nonfinite'], item.layer)
                reduced.nonfinite = None
            norm_range = item.norm_range
            if isinstance(norm_range, torch.Tensor):
                norm_range = range_floats(host[i, 'range'])
            if item.kept is not None:
                kept_host = (
                    norm_range if item.kept is item.norm_range else
                    range_floats(host[i, 'kept']))
                self.range_tracker.settle(item.key, item.kept, kept_host)
            stats = None
            if item.stats is not None:
                stats = dict(zip(STATS_KEYS, host[i, 'stats'].tolist()))
            reanchored = (
                item.reanchored is not None and bool(host[i, 'reanchored']))
            layers.append(
                ReducedLayer(
                    item.layer,
                    reduced,
                    norm_range,
                    stats,
                    reanchored=reanchored))
        return layers

    def fire(self,
             model: nn.Module,
             probes: Sequence[Probe],
             call_model: Optional[Callable[..., Any]] = None,
             *,
             defer: bool = False,
             report: bool = True) -> List[ProbeMaps]:
        """One firing's work on the model's device: every probe through
        the model (:meth:`capture`), its maps reduced (:meth:`reduce`).

        Only the small reduced maps outlive this call; the full-size
        captured maps are dropped probe by probe.

        Args:
            model (nn.Module): The unwrapped model.
            probes (Sequence[Probe]): Prepared probes.
            call_model (callable, optional): See :meth:`capture`.
            defer (bool): Return once the copies to the host are queued;
                :meth:`write` (e.g. on a writer thread) waits for them.
            report (bool): Warn about layers that cannot be drawn.

        Returns:
            list[ProbeMaps]: One per probe, for :meth:`render` or
            :meth:`write`.
        """
        captured = self.capture(model, probes, call_model)
        maps = []
        while captured:
            probe, features, outputs = captured.pop(0)
            maps.append(
                self.reduce(
                    probe, features, outputs, defer=defer, report=report))
        return maps

    def write(self,
              visualizer: Visualizer,
              maps: Sequence[ProbeMaps],
              step: int,
              class_names: Optional[Sequence[str]] = None,
              *,
              per_layer: bool = True,
              overview: bool = True,
              stats: bool = True,
              image_format: str = 'jpg',
              process: Optional[DrawingProcess] = None) -> List[str]:
        """The rest of a firing, on any thread: statistics, then images.

        Only what is written is drawn: full-size images for ``per_layer``,
        small tiles for ``overview``.

        Args:
            visualizer (Visualizer): Usually ``runner.visualizer``.
            maps (Sequence[ProbeMaps]): What :meth:`fire` returned; their
                host copy may still be in flight (this waits for it).
            step (int): The training iteration.
            class_names (Sequence[str], optional): Names of predicted
                labels.
            per_layer (bool): Write one image per captured map.
            overview (bool): Write one composed image per probe.
            stats (bool): Write activation statistics as scalars.
            image_format (str): ``'jpg'`` or ``'png'``.
            process (DrawingProcess, optional): Render, encode and write
                the local files there (:func:`draw_firing`); the other
                backends get the encoded images here. Where it is gone,
                all happens here, with one warning. Defaults to None: here.

        Returns:
            list[str]: The image tags written.
        """
        scalars = stat_scalars(maps) if stats else {}
        if not (per_layer or overview) or not vis_backends(visualizer):
            write_scalars(visualizer, scalars, step)
            return []
        # The local backends' lines are appended where the images are
        # drawn; TensorBoard's and any other backend's are written here.
        write_scalars(visualizer, scalars, step, local_written=True)
        request = DrawRequest(
            self.options, [item.wait() for item in maps],
            step,
            list(class_names) if class_names is not None else None,
            per_layer=per_layer,
            overview=overview,
            image_format=image_format,
            local_dirs=local_image_dirs(visualizer),
            keep_pixels=wants_pixels(visualizer),
            scalars=scalars,
            scalar_files=local_scalar_files(visualizer) if scalars else [])
        drawn = self._drawn_elsewhere(process, request)
        if drawn is None:
            drawn = draw_firing(request)
        self._log_notes(drawn.notes)
        for backend, target, error in drawn.failures:
            WRITE_FAILURES.report(backend, target, error)
        put_encoded(
            visualizer, drawn.images, step, image_format, local_written=True)
        return [image.tag for image in drawn.images]

    def _drawn_elsewhere(self, process: Optional[DrawingProcess],
                         request: DrawRequest) -> Optional[DrawnFiring]:
        """The request drawn by ``process``, or None where it is gone."""
        if process is None or self._process_gone:
            return None
        try:
            return draw_in_process(process, request)
        except DrawingProcessGone as error:
            self._process_gone = True
            print_log(
                f'mmfeatvis: the drawing process is gone ({error}); the '
                'images are drawn in the training process from now on.',
                logger='current',
                level=logging.WARNING)
            return None

    def render(self,
               maps: ProbeMaps,
               class_names: Optional[Sequence[str]] = None,
               *,
               layer_images: bool = True,
               overview_tile_side: Optional[int] = None) -> ProbeResult:
        """Draw reduced maps over the probe image (host only, any thread);
        see :meth:`FeatmapDrawer.render`."""
        drawer = FeatmapDrawer(self.options)
        result = drawer.render(
            maps,
            class_names,
            layer_images=layer_images,
            overview_tile_side=overview_tile_side)
        self._log_notes(drawer.notes)
        return result

    def _log_notes(self, notes: Sequence[str]) -> None:
        """Log the drawing's warnings, each once per orchestrator."""
        for note in notes:
            if note not in self._noted:
                self._noted.add(note)
                print_log(note, logger='current', level=logging.WARNING)

    def report_skipped(self, skipped: Dict[str, str]) -> None:
        """Warn about layers that are not drawn, once per layer."""
        for layer, reason in skipped.items():
            if layer not in self._reported:
                self._reported.add(layer)
                print_log(
                    f'mmfeatvis: layer {layer!r} is not drawn: {reason}',
                    logger='current',
                    level=logging.WARNING)


def _forward_key(model: nn.Module, probe: Probe) -> Hashable:
    """What a recorded forward is for: the graph reads the probe's input
    where it is, with its shape and dtype, so another input (even under
    the same name, or at an address the allocator gave again) needs its
    own recording."""
    inputs = probe.data.get('inputs')
    if not isinstance(inputs, torch.Tensor):
        return probe.name, id(model), None
    return (probe.name, id(model), inputs.data_ptr(), tuple(inputs.shape),
            inputs.dtype)


def _to_host(sample: Any) -> Any:
    return sample.cpu() if hasattr(sample, 'cpu') else sample


def _num_classes(model: nn.Module) -> Optional[int]:
    """The classes of a model's head (``num_classes`` of its bbox or
    decode head, or of the model), or None."""
    for owner in (getattr(model, 'bbox_head', None),
                  getattr(model, 'decode_head', None), model):
        value = getattr(owner, 'num_classes', None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _is_detector(model: nn.Module) -> bool:
    try:
        from mmdet.models.detectors import BaseDetector
    except ImportError:  # detection extras not installed
        return False
    return isinstance(model, BaseDetector)
