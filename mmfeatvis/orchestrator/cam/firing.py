"""A CAM firing on fixed probes: one forward with gradients per probe, the
target scores' gradients taken with respect to the captured activations
only (``torch.autograd.grad``), so no parameter's ``.grad`` changes,
inside :func:`~mmfeatvis.capture.isolated_inference`'s eval mode with its
modes and random states restored; then render and write.
"""
import logging
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import torch
from mmengine.logging import print_log
from mmengine.visualization import Visualizer
from torch import nn

from ...capture import (FeatureCapture, isolated_inference, layer_of,
                        resolve_layers)
from ...options import CamOptions
from ...probe import Probe
from ...reduce import ValueRangeTracker
from ...reduce.cam import (GRADIENT_METHODS, CamPanel, ProbeCams,
                           class_activation_map, content_peak, fuse_layers)
from ...render.cam import render_cams
from ...write import add_image, cam_tag
from .targets import CamTarget, TargetRule, target_rule

#: Range modes whose kept ranges make CAMs compare across firings; the
#: others draw each map on its own peak.
_KEPT_MODES = ('adaptive', 'first', 'running')


def _keep_output(output: Any) -> Any:
    return output


class CamOrchestrator:
    """Class activation maps of fixed probes, for the hook and the CLI.

    Args:
        options (CamOptions): What to explain and how.
        range_tracker (ValueRangeTracker, optional): The value-range
            policy: ``'adaptive'``, ``'first'`` and ``'running'`` keep one
            peak per (probe, layer) across firings, so a map's strength
            compares over training; other policies scale each map to its
            own peak. Defaults to each its own.
        alpha (float): Weight of the heat map over the image.
        colormap (str): OpenCV colormap name.
    """

    def __init__(self,
                 options: CamOptions,
                 range_tracker: Optional[ValueRangeTracker] = None,
                 alpha: float = 0.5,
                 colormap: str = 'jet') -> None:
        self.options = options
        self.range_tracker = range_tracker
        self.alpha = alpha
        self.colormap = colormap
        self.layer_names: List[str] = []
        self.rule: Optional[TargetRule] = None
        # Captured outputs that no target depends on (found at check).
        self._left_out: Set[str] = set()
        # Whether the model's backward can be batched over targets.
        self._batch_gradients = True

    def resolve(self, model: nn.Module) -> List[str]:
        """Resolve the target layers and the target rule on ``model``.

        Raises:
            ValueError: Unknown layers, or a model kind with no rule.
        """
        layers = self.options.target_layers
        if layers is None:
            present = [n for n in ('neck', 'backbone') if hasattr(model, n)]
            if not present:
                raise ValueError(
                    'cam: the model has no neck or backbone; name the '
                    'layers to explain in cam=dict(target_layers=[...]).')
            layers = present[:1]
        self.layer_names = resolve_layers(model, layers)
        self.rule = target_rule(
            model,
            self.options.target,
            topk=self.options.topk,
            score_thr=self.options.score_thr,
            classes=self.options.classes)
        return self.layer_names

    def check(self, model: nn.Module, probes: Sequence[Probe]) -> None:
        """One CAM pass of the first probe, before training: what no
        firing could draw stops the run now.

        Raises:
            ValueError: A target layer whose output is not one (1, C, H, W)
                map, or that no target score depends on (after the head,
                or detached) for a gradient method; a rule that cannot
                read the model's outputs.
        """
        if not self.layer_names:
            self.resolve(model)
        if not probes:
            return
        self._probe_cams(probes[0], model, None, check=True)

    def fire(self,
             model: nn.Module,
             probes: Sequence[Probe],
             class_names: Optional[Sequence[str]] = None) -> List[ProbeCams]:
        """Every probe's CAMs, on the host (the gradients need the calling
        thread; rendering may go elsewhere)."""
        if not self.layer_names:
            self.resolve(model)
        return [
            self._probe_cams(probe, model, class_names) for probe in probes
        ]

    def _probe_cams(self,
                    probe: Probe,
                    model: nn.Module,
                    class_names: Optional[Sequence[str]],
                    check: bool = False) -> ProbeCams:
        method = self.options.method
        rule = self.rule
        with isolated_inference(model), torch.enable_grad(), FeatureCapture(
                model, self.layer_names, keep=_keep_output) as capture:
            outputs = rule.forward(model, probe)
            activations = _single_maps({
                name: value
                for name, value in capture.pop_features().items()
                if name not in self._left_out
            })
            if check:
                self._check_gradients(model, outputs, activations)
            targets = rule.targets(model, probe, outputs, class_names)
            if not targets:
                return ProbeCams(probe, method, note=rule.nothing_note())
            layer_cams = self._layer_cams(activations, targets)
        if check:
            # Fusing would update the kept ranges: a check changes no state.
            return ProbeCams(probe, method)
        panels = self._fused(probe, layer_cams, targets)
        return ProbeCams(probe, method, panels)

    def _check_gradients(self, model: nn.Module, outputs: Any,
                         activations: Dict[str, torch.Tensor]) -> None:
        """Layers no target score depends on are an error; outputs of a
        layer that others of it make up for (an FPN's extra level that
        only the RPN reads) are left out, with a warning."""
        if self.options.method not in GRADIENT_METHODS:
            return
        score = self.rule.any_score(model, outputs)
        names = list(activations)
        found = _grads_of(score, [activations[n] for n in names])
        missing = {n for n, g in zip(names, found) if g is None}
        dead = sorted({layer_of(n) for n in missing} -
                      {layer_of(n) for n in names if n not in missing})
        if dead:
            raise ValueError(
                f'cam: the {self.rule.kind} scores do not depend on '
                f'{dead} (a layer after the head, or a detached '
                f'branch): no gradient reaches it, so '
                f'{self.options.method!r} cannot weigh its channels; '
                "target earlier layers, or use 'eigencam'.")
        if missing:
            self._left_out = missing
            print_log(
                f'mmfeatvis: cam leaves out {sorted(missing)}: the '
                f'{self.rule.kind} scores do not depend on them.',
                logger='current',
                level=logging.WARNING)

    def _layer_cams(self, activations: Dict[str, torch.Tensor],
                    targets: List[CamTarget]) -> Dict[str, torch.Tensor]:
        """Each layer's raw maps of all targets, (K, h, w), computed for
        the K targets at once (zero where no gradient of a target reaches
        the layer: a box of another pyramid level)."""
        method = self.options.method
        count = len(targets)
        if method not in GRADIENT_METHODS:
            return {
                name: class_activation_map(method, value[0]).expand(
                    count, *value.shape[-2:])
                for name, value in activations.items()
            }
        names = list(activations)
        live = [activations[n] for n in names]
        grads, self._batch_gradients = _target_gradients(
            [t.score for t in targets], live, self._batch_gradients)
        return {
            name: class_activation_map(
                method, value[0],
                value.new_zeros(count, *value.shape[1:])
                if grad is None else grad)
            for name, value, grad in zip(names, live, grads)
        }

    def _fused(self, probe: Probe, layer_cams: Dict[str, torch.Tensor],
               targets: List[CamTarget]) -> List[CamPanel]:
        peaks = self._kept_peaks(probe, layer_cams)
        names = list(layer_cams)
        fused = fuse_layers([layer_cams[n] for n in names], probe.meta,
                            None if peaks is None else
                            [peaks[n] for n in names])
        # One copy to the host for all targets.
        host = fused.detach().float().cpu().numpy()
        return [
            CamPanel(cam, target.title, list(target.boxes))
            for cam, target in zip(host, targets)
        ]

    def _kept_peaks(
            self, probe: Probe,
            layer_cams: Dict[str, torch.Tensor]) -> Optional[Dict[str, float]]:
        """Each layer's peak under a kept range policy; None: each map
        its own."""
        tracker = self.range_tracker
        if tracker is None or tracker.mode not in _KEPT_MODES:
            return None
        peaks = {}
        for name, values in layer_cams.items():
            key = (probe.name, 'cam', self.options.method, name)
            observed = (0.0, float(content_peak(values, probe.meta).max()))
            kept = tracker.update(
                key, observed if tracker.needs_measurement(key) else None,
                values.flatten())
            peaks[name] = float(kept[1]) if kept is not None else None
            if isinstance(kept, torch.Tensor) and tracker.to_settle(key):
                tracker.settle(key, kept, (0.0, peaks[name]))
        if any(peak is None for peak in peaks.values()):
            return None
        return peaks

    # -- render and write (host only, any thread) --
    def render(self,
               cams: ProbeCams,
               class_names: Optional[Sequence[str]] = None) -> Any:
        """One image of a probe's CAMs (see
        :func:`~mmfeatvis.render.cam.render_cams`)."""
        return render_cams(
            cams,
            alpha=self.alpha,
            colormap=self.colormap,
            norm_in_box=self.options.norm_in_box,
            layout=self.options.layout,
            class_names=class_names)

    def tag(self, probe: str) -> str:
        """``featvis/<probe>/cam/<method>``."""
        return cam_tag(probe, self.options.method)

    def write(self,
              visualizer: Visualizer,
              cams: Sequence[ProbeCams],
              step: int,
              class_names: Optional[Sequence[str]] = None,
              image_format: str = 'jpg') -> List[str]:
        """Render every probe's CAMs and send them to every backend."""
        written = []
        for item in cams:
            tag = self.tag(item.probe.name)
            add_image(visualizer, tag, self.render(item, class_names), step,
                      image_format)
            written.append(tag)
        return written


#: Targets whose gradients one batched backward pass computes.
GRADIENT_BATCH = 16


def _target_gradients(
    scores: List[torch.Tensor],
    live: Sequence[torch.Tensor],
    batch: bool = True
) -> Tuple[List[Optional[torch.Tensor]], bool]:
    """d score / d each of ``live``, for every score: one backward pass
    per :data:`GRADIENT_BATCH` targets (``is_grads_batched``), or one per
    target where the model has an operation autograd cannot batch (such as
    mmcv's RoIAlign) or ``batch`` is False.

    Returns:
        tuple: For each of ``live``, the gradients of all scores stacked,
        (K, *shape without the batch of one), zero for a score that does
        not depend on it, or None when none does; and whether batching
        worked (False once it failed: the caller need not try again).
    """
    wanted = [i for i, value in enumerate(live) if value.requires_grad]
    # Per input: (rows, gradient or None) of each pass.
    parts: List[List[Tuple[int, Optional[torch.Tensor]]]]
    parts = [[] for _ in live]
    for start in range(0, len(scores), GRADIENT_BATCH):
        chunk = scores[start:start + GRADIENT_BATCH]
        last = start + GRADIENT_BATCH >= len(scores)
        stacked = torch.stack(chunk)
        batched = None
        if batch and wanted and stacked.requires_grad and len(chunk) > 1:
            try:
                batched = torch.autograd.grad(
                    stacked, [live[i] for i in wanted],
                    grad_outputs=torch.eye(
                        len(chunk), dtype=stacked.dtype,
                        device=stacked.device),
                    # Kept: a pass that fails half-way must leave the
                    # graph for the passes one by one.
                    retain_graph=True,
                    allow_unused=True,
                    is_grads_batched=True)
            except RuntimeError:  # no batching rule: one pass each
                batch = False
        if batched is not None:
            for i, grad in zip(wanted, batched):
                parts[i].append(
                    (len(chunk), None if grad is None else grad[:, 0]))
            for i in set(range(len(live))) - set(wanted):
                parts[i].append((len(chunk), None))
            continue
        for k, score in enumerate(chunk):
            one = _grads_of(score, live,
                            retain=not (last and k == len(chunk) - 1))
            for i, grad in enumerate(one):
                parts[i].append((1, None if grad is None else grad[0][None]))
    return [_stacked(own, value) for own, value in zip(parts, live)], batch


def _stacked(parts: List[Tuple[int, Optional[torch.Tensor]]],
             value: torch.Tensor) -> Optional[torch.Tensor]:
    """The passes' gradients as one (K, ...) tensor, zeros for the rows
    of a pass that did not reach ``value``; None where no pass did."""
    if all(grad is None for _, grad in parts):
        return None
    return torch.cat([
        value.new_zeros(rows, *value.shape[1:]) if grad is None else grad
        for rows, grad in parts
    ])


def _grads_of(score: torch.Tensor,
              live: Sequence[torch.Tensor],
              retain: bool = True) -> Tuple[Optional[torch.Tensor], ...]:
    """d score / d each of ``live`` (None where it does not depend on
    it); only the activations get gradients, no parameter."""
    wanted = [i for i, value in enumerate(live) if value.requires_grad]
    grads: List[Optional[torch.Tensor]] = [None] * len(live)
    if wanted and score.requires_grad:
        found = torch.autograd.grad(
            score, [live[i] for i in wanted],
            retain_graph=retain,
            allow_unused=True)
        for i, grad in zip(wanted, found):
            grads[i] = grad
    return tuple(grads)


def _single_maps(features: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The captured maps, each checked to be one sample's (1, C, H, W)."""
    maps = {}
    for name, value in features.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f'cam: layer {name!r} gives '
                             f'{type(value).__name__}, not a tensor')
        if value.ndim != 4 or value.shape[0] != 1:
            raise ValueError(f'cam: layer {name!r}: a CAM needs one '
                             f'(1, C, H, W) map, got {tuple(value.shape)}')
        maps[name] = value
    if not maps:
        raise ValueError('cam: none of the target layers ran in the '
                         'forward pass')
    return maps
