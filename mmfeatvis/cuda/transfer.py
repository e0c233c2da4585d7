"""After the reduce stage: bring a probe's small results to the host.

A blocking device-to-host copy waits for the device to finish all queued
work, so copying each map, channel index, range and statistic on its own
stalls the training thread once per tensor. :func:`start_host_copy` packs
them all into one byte buffer on the device and copies that once.

Packing is by bytes (each tensor is reinterpreted as uint8, never
converted), so every dtype arrives bit for bit: float32 maps, int64
channel indices and counts, float64 ranges alike.
"""
from typing import (Any, Dict, Hashable, List, Mapping, NamedTuple, Sequence,
                    Tuple)

import torch


class Segment(NamedTuple):
    """Where one tensor lies in a packed buffer."""
    index: int
    dtype: torch.dtype
    shape: Tuple[int, ...]
    offset: int
    nbytes: int


def pack(tensors: Sequence[torch.Tensor]
         ) -> Tuple[torch.Tensor, List[Segment]]:
    """Concatenate the bytes of tensors of one device into one buffer.

    Tensors of wider elements come first, so every segment starts at a
    multiple of its element size and can be viewed as its dtype again.

    Args:
        tensors (Sequence[torch.Tensor]): Tensors of any dtype and shape,
            all on one device.

    Returns:
        tuple[torch.Tensor, list[Segment]]: The uint8 buffer, on that
        device, and the segments that :func:`unpack` needs.
    """
    order = sorted(range(len(tensors)),
                   key=lambda i: -tensors[i].element_size())
    parts, segments, offset = [], [], 0
    for index in order:
        tensor = tensors[index].detach()
        flat = tensor.contiguous().reshape(-1).view(torch.uint8)
        nbytes = flat.numel()
        segments.append(
            Segment(index, tensor.dtype, tuple(tensor.shape), offset, nbytes))
        parts.append(flat)
        offset += nbytes
    if not parts:
        return torch.empty(0, dtype=torch.uint8), segments
    return torch.cat(parts), segments


def unpack(buffer: torch.Tensor,
           segments: Sequence[Segment]) -> List[torch.Tensor]:
    """Split a buffer from :func:`pack` into its tensors, in the order
    given to :func:`pack`.

    Args:
        buffer (torch.Tensor): The uint8 buffer (usually its host copy).
        segments (Sequence[Segment]): The segments :func:`pack` returned.

    Returns:
        list[torch.Tensor]: Views into ``buffer`` with the original dtypes
        and shapes.
    """
    out: List[torch.Tensor] = [None] * len(segments)  # type: ignore
    for seg in segments:
        part = buffer[seg.offset:seg.offset + seg.nbytes]
        out[seg.index] = part.view(seg.dtype).reshape(seg.shape)
    return out


class HostCopy:
    """Device-to-host copies in flight; :meth:`result` waits for them.

    On a CUDA device the packed buffer is copied into pinned host memory
    without blocking, and an event marks its end: the training thread goes
    on while the device finishes the probe's work, and whoever needs the
    values (the writer thread) waits for that event only. Other devices
    copy at once.

    Args:
        keys (Sequence[Hashable]): Keys of the copied tensors, in order.
        on_host (dict): Tensors that were on the CPU already.
    """

    def __init__(self, keys: Sequence[Hashable],
                 on_host: Dict[Hashable, torch.Tensor]) -> None:
        self._keys = list(keys)
        self._on_host = on_host
        self._pending: List[Tuple[List[Hashable], torch.Tensor,
                                  List[Segment], Any]] = []

    def add_buffer(self, keys: Sequence[Hashable], buffer: torch.Tensor,
                   segments: List[Segment]) -> None:
        """Start copying a buffer from :func:`pack` (made on the current
        stream) to the host."""
        if buffer.device.type == 'cuda':
            host = torch.empty(buffer.shape, dtype=buffer.dtype,
                               pin_memory=True)
            host.copy_(buffer, non_blocking=True)
            # Blocking: the writer thread sleeps while it waits, rather
            # than spin a core that training or its data loaders need.
            done = torch.cuda.Event(blocking=True)
            done.record()
        else:
            host, done = buffer.cpu(), None
        self._pending.append((list(keys), host, segments, done))

    def result(self) -> Dict[Hashable, torch.Tensor]:
        """The host tensors by key, in the order given (waits for the
        copies: the one device synchronisation of a firing)."""
        host = dict(self._on_host)
        for keys, buffer, segments, done in self._pending:
            if done is not None:
                done.synchronize()
            host.update(zip(keys, unpack(buffer, segments)))
        return {key: host[key] for key in self._keys}


def start_host_copy(tensors: Mapping[Hashable, torch.Tensor]) -> HostCopy:
    """Start copying tensors to the host, one packed copy per device.

    Tensors already on the CPU are kept as they are, so on the CPU nothing
    is copied.

    Args:
        tensors (Mapping[Hashable, torch.Tensor]): Tensors by any key.

    Returns:
        HostCopy: Its :meth:`~HostCopy.result` gives the same keys, in the
        same order, with CPU tensors of the same dtypes, shapes and values
        (views into one buffer per device).
    """
    on_host: Dict[Hashable, torch.Tensor] = {}
    by_device: Dict[torch.device, List[Hashable]] = {}
    for key, tensor in tensors.items():
        if tensor.device.type == 'cpu':
            on_host[key] = tensor
        else:
            by_device.setdefault(tensor.device, []).append(key)
    copy = HostCopy(list(tensors), on_host)
    for keys in by_device.values():
        buffer, segments = pack([tensors[key] for key in keys])
        copy.add_buffer(keys, buffer, segments)
    return copy
