"""On a GPU: record the probe's forward and its reductions once, replay.

The probe never changes, so every firing reduces maps of the same shapes
with the same operations. Launched one by one from Python, those few
hundred small kernels cost more host time than the model's forward pass on
a fast GPU. :class:`ReplayedReduction` records them, together with the
packing of the results into one buffer, as a CUDA graph on the first
eligible firing and replays the graph afterwards: one launch, then the one
copy to the host. :class:`ReplayedForward` does the same for the probe's
forward pass in tensor mode, whose kernels at batch 1 are launched faster
than Python can. :class:`Branches` lets a recording hold independent parts
(one per layer) as parallel branches, which the GPU runs side by side.
"""
import contextlib
import copy
import functools
import logging
import math
from collections import OrderedDict
from typing import (Any, Callable, Dict, Hashable, Iterator, List, Optional,
                    Sequence, Tuple)

import torch
from mmengine.logging import print_log
from torch import nn

from ..capture.isolation import all_modules
from .transfer import HostCopy, pack

#: What a reduction returns: anything for the caller (kept as recorded) and
#: the device tensors to bring to the host, by key.
DeviceResults = Dict[Hashable, torch.Tensor]
Reduction = Callable[[Dict[str, torch.Tensor]], Tuple[Any, DeviceResults]]


def graph_key(probe_name: str,
              features: Dict[str, torch.Tensor]) -> Optional[Hashable]:
    """What a recorded graph depends on, or None when the features cannot
    be replayed (not all on one CUDA device)."""
    devices = {tensor.device for tensor in features.values()}
    if len(devices) != 1 or next(iter(devices)).type != 'cuda':
        return None
    return probe_name, tuple(
        (name, tuple(t.shape), t.dtype, tuple(t.stride()), t.device)
        for name, t in features.items())


def warm_up(work: Callable[[], Any]) -> None:
    """Run ``work`` once on the current device's warm-up stream, ordered
    after and before the current stream's work, as CUDA graph capture
    requires: lazy initialisation (cuBLAS handles, cached weights) happens
    here, outside the recording.

    Every recording warms up on the same stream: cuBLAS keeps a workspace
    (tens of MB) for each stream it has run on, and a new pool stream per
    recording would leave one behind for each.
    """
    side = _warm_up_stream(torch.cuda.current_device())
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        work()
    torch.cuda.current_stream().wait_stream(side)


@functools.lru_cache(maxsize=None)
def _warm_up_stream(device: int) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)


class ReplayedReduction:
    """A reduction recorded as a CUDA graph, with static input buffers.

    Args:
        features (dict[str, torch.Tensor]): Maps of the first firing; their
            shapes, dtypes and strides are the graph's inputs.
        reduction (callable): ``reduction(features) -> (template,
            tensors)``. It must make no host synchronisation and keep no
            state between calls but device tensors it updates in place
            (``'adaptive'`` value ranges): the graph replays its device
            work only, so its Python side runs once, here.

    Raises:
        RuntimeError: The reduction could not be recorded (for example it
            synchronises with the host); the caller falls back to running
            it eagerly.
    """

    def __init__(self, features: Dict[str, torch.Tensor],
                 reduction: Reduction) -> None:
        self.inputs = {
            name: torch.empty_strided(t.shape, t.stride(), dtype=t.dtype,
                                      device=t.device)
            for name, t in features.items()
        }
        self._copy_in(features)
        warm_up(lambda: reduction(self.inputs))
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the writer thread never touches CUDA, but a user's
        # other threads may; their work must not end up in this graph.
        with torch.cuda.graph(self.graph, capture_error_mode='thread_local'):
            self.template, tensors = reduction(self.inputs)
            self._keys: List[Hashable] = list(tensors)
            self._buffer, self._segments = pack(list(tensors.values()))

    def _copy_in(self, features: Dict[str, torch.Tensor]) -> None:
        for name, tensor in features.items():
            self.inputs[name].copy_(tensor)

    def start(self, features: Dict[str, torch.Tensor]) -> Tuple[Any, HostCopy]:
        """Reduce ``features`` by replaying the graph.

        Returns:
            tuple: The template recorded with the graph, and the copy of
            the reduction's tensors to the host, in flight. The next replay
            is queued after that copy on the same stream, so it cannot
            overwrite the buffer before the copy has read it.
        """
        self._copy_in(features)
        self.graph.replay()
        copy = HostCopy(self._keys, {})
        copy.add_buffer(self._keys, self._buffer, self._segments)
        return self.template, copy


#: Streams of :class:`Branches` at most: enough to keep a GPU busy with
#: small kernels, few enough that each branch's own memory (reused within
#: the branch only) stays small.
MAX_BRANCHES = 4


def deal_branches(sizes: Sequence[int], streams: int) -> List[int]:
    """The stream of each part: largest first, in runs of equal length
    (the last may be shorter), so that the largest parts share a stream.

    Args:
        sizes (Sequence[int]): The size of each part.
        streams (int): Streams at most.

    Returns:
        list[int]: For each part, its stream, from 0.
    """
    per_stream = max(1, math.ceil(len(sizes) / streams))
    stream_of = [0] * len(sizes)
    largest_first = sorted(range(len(sizes)), key=lambda i: -sizes[i])
    for rank, part in enumerate(largest_first):
        stream_of[part] = rank // per_stream
    return stream_of


class Branches:
    """Streams that fork from the current stream and join it again, so
    that independent work recorded into one CUDA graph becomes parallel
    branches of it.

    A layer's reduction is about a hundred kernels, each too small to fill
    a GPU; recorded on one stream, the layers' kernels run one after
    another, while on several streams the graph lets them run side by
    side. A stream reuses its own freed memory only (the graph's pool
    holds some for each), so the parts are dealt out largest first in runs
    of equal length (:func:`deal_branches`): the largest parts share a
    stream. Work queued on the current stream before the fork comes first;
    :meth:`join` makes the current stream wait for every branch (a CUDA
    graph recording must end joined). What runs on a branch should call no
    cuBLAS: it keeps a workspace of tens of MB for every stream.

    Args:
        sizes (Sequence[int]): The size (say, elements) of each part.
    """

    def __init__(self, sizes: Sequence[int]) -> None:
        self.origin = torch.cuda.current_stream()
        self._stream_of = deal_branches(sizes, MAX_BRANCHES)
        self.streams = [
            torch.cuda.Stream()
            for _ in range(max(self._stream_of, default=-1) + 1)
        ]
        for stream in self.streams:
            stream.wait_stream(self.origin)

    @contextlib.contextmanager
    def branch(self, index: int) -> Iterator[None]:
        """Queue the work of part ``index`` on its branch's stream."""
        with torch.cuda.stream(self.streams[self._stream_of[index]]):
            yield

    def join(self) -> None:
        """Make the stream the branches forked from wait for all of them."""
        for stream in self.streams:
            self.origin.wait_stream(stream)


#: Recordings kept at once (the hook's probes; the CLI draws many images
#: of different sizes, and each recording holds device memory).
MAX_RECORDINGS_KEPT = 8


def _evict_oldest(recordings: 'OrderedDict', keep: int) -> None:
    while len(recordings) > keep:
        recordings.popitem(last=False)


class ReplayCache:
    """Recorded reductions by :func:`graph_key`, the
    :data:`MAX_RECORDINGS_KEPT` most recently used; a key whose recording
    failed runs eagerly from then on, reported once."""

    def __init__(self) -> None:
        self._graphs: 'OrderedDict[Hashable, Optional[ReplayedReduction]]' = (
            OrderedDict())

    def get(self, key: Hashable, features: Dict[str, torch.Tensor],
            reduction: Reduction) -> Optional[ReplayedReduction]:
        """The recorded reduction for ``key``, recorded now if new; None
        if it cannot be recorded."""
        if key in self._graphs:
            self._graphs.move_to_end(key)
        else:
            _evict_oldest(self._graphs, MAX_RECORDINGS_KEPT - 1)
            try:
                self._graphs[key] = ReplayedReduction(features, reduction)
            except Exception as error:  # eager reduction still works
                self._graphs[key] = None
                print_log(
                    'mmfeatvis: the reductions could not be recorded as a '
                    f'CUDA graph ({type(error).__name__}: {error}); they '
                    'run op by op instead.',
                    logger='current',
                    level=logging.WARNING)
        return self._graphs[key]

    def recorded(self) -> List[Optional[ReplayedReduction]]:
        """The recordings kept, oldest first (None where one failed)."""
        return list(self._graphs.values())


class StorageSignature:
    """Where a model's modules, parameters and buffers live, as a recorded
    graph reads them: it stays valid while they are updated in place
    (optimiser steps, BatchNorm statistics, ``load_state_dict``) and not
    once a module or tensor is replaced or moved.

    It is checked at every replay, before the replay is launched (a graph
    that read freed memory could fault), so the check walks what was
    recorded here instead of the tree: where every recorded module still
    has the same children, the tree is the recorded one, and its tensors
    are read straight from the modules' dicts. A tensor counts by its
    address: one replaced, or moved to other memory, has another.

    Args:
        model (nn.Module): The model whose storage the graph reads.
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules = all_modules(model)
        self.children = [tuple(module._modules.values())
                         for module in self.modules]
        self.tensor_dicts = [
            tensors for module in self.modules
            for tensors in (module._parameters, module._buffers)
        ]
        self.places = self._places()

    def _places(self) -> List[Optional[int]]:
        return [
            None if tensor is None else tensor.data_ptr()
            for tensors in self.tensor_dicts for tensor in tensors.values()
        ]

    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` is the recorded tree with its tensors where
        they were."""
        if model is not self.modules[0]:
            return False
        for module, children in zip(self.modules, self.children):
            if tuple(module._modules.values()) != children:
                return False
        return self._places() == self.places


class ReplayedForward:
    """A probe's forward pass, with its capture hooks, recorded as a CUDA
    graph and replayed.

    At batch 1 a fast GPU waits for Python to launch the forward's kernels
    one by one; a replay launches them all at once. The probe's input
    never changes and the weights are read where they are, so a replay
    sees the current weights. :meth:`valid_for` tells when they moved.

    Args:
        model (nn.Module): The model, already in eval mode.
        run (callable): ``run() -> features``: one forward of the probe and
            the captured maps (tensors only). Its Python side runs twice
            here (warm-up, recording) and never again.

    Raises:
        RuntimeError: The forward could not be recorded (for example it
            synchronises with the host); the caller runs it eagerly.
    """

    def __init__(self, model: nn.Module,
                 run: Callable[[], Dict[str, torch.Tensor]]) -> None:
        self.signature = StorageSignature(model)
        warm_up(run)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode='thread_local'):
            self.features = run()

    def valid_for(self, model: nn.Module) -> bool:
        """Whether the weights are still where the graph reads them."""
        return self.signature.matches(model)

    def replay(self) -> Dict[str, torch.Tensor]:
        """Run the recorded forward; the maps it writes, in the graph's own
        memory (overwritten by the next replay)."""
        self.graph.replay()
        return copy.copy(self.features)


class ForwardReplays:
    """Recorded probe forwards by key.

    A key is recorded at its first :meth:`get` after :meth:`allow` (an
    eager forward showed that all its maps are on one GPU), again when the
    weights moved (at most ``max_recordings`` times in all), and never
    after a failed recording, which is reported once.

    Args:
        max_recordings (int): Recordings of one key before giving up on a
            model whose weights keep moving in memory. Defaults to 3.
    """

    def __init__(self, max_recordings: int = 3) -> None:
        self.max_recordings = max_recordings
        self._replays: 'OrderedDict[Hashable, ReplayedForward]' = (
            OrderedDict())
        self._recordings: Dict[Hashable, int] = {}
        self._given_up: set = set()

    def allow(self, key: Hashable) -> None:
        """Let ``key`` be recorded at its next :meth:`get`."""
        self._recordings.setdefault(key, 0)

    def recorded(self, key: Hashable) -> Optional[ReplayedForward]:
        """The current recording of ``key``, if any."""
        return self._replays.get(key)

    def recordings(self, key: Hashable) -> int:
        """How many times ``key`` was recorded."""
        return self._recordings.get(key, 0)

    def get(self,
            key: Hashable,
            model: nn.Module,
            run: Callable[[], Dict[str, torch.Tensor]],
            discard: Callable[[], Any] = lambda: None
            ) -> Optional[ReplayedForward]:
        """A replayable forward for ``key``, recorded now if needed; None
        when the forward must run eagerly.

        Args:
            key (Hashable): What the recording is for.
            model (nn.Module): The model, in eval mode.
            run (callable): See :class:`ReplayedForward`.
            discard (callable): Drops what a failed recording left behind
                (maps captured before the failure).
        """
        if key not in self._recordings or key in self._given_up:
            return None
        replay = self._replays.pop(key, None)
        if replay is not None and replay.valid_for(model):
            self._replays[key] = replay
            return replay
        del replay  # a stale graph frees its memory before the next one
        if self._recordings[key] >= self.max_recordings:
            self._given_up.add(key)
            print_log(
                "mmfeatvis: the model's weights keep moving in memory; the "
                'probe forward runs op by op from now on.',
                logger='current',
                level=logging.INFO)
            return None
        self._recordings[key] += 1
        _evict_oldest(self._replays, MAX_RECORDINGS_KEPT - 1)
        try:
            self._replays[key] = ReplayedForward(model, run)
        except Exception as error:  # the eager forward still works
            discard()
            self._given_up.add(key)
            print_log(
                'mmfeatvis: the probe forward could not be recorded as a '
                f'CUDA graph ({type(error).__name__}: {error}); it runs op '
                'by op instead.',
                logger='current',
                level=logging.WARNING)
            return None
        return self._replays[key]
