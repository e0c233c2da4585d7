"""Stage "reduce", last step: bring a probe's small results to the host.

A blocking device-to-host copy waits for the device to finish all queued
work, so copying each map, channel index, range and statistic on its own
stalls the training thread once per tensor. :func:`to_host` packs them
all into one byte buffer on the device and copies that once.

Packing is by bytes (each tensor is reinterpreted as uint8, never
converted), so every dtype arrives bit for bit: float32 maps, int64
channel indices and counts, float64 ranges alike.
"""
from typing import Dict, Hashable, List, Mapping, NamedTuple, Sequence, Tuple

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


def to_host(tensors: Mapping[Hashable, torch.Tensor]
            ) -> Dict[Hashable, torch.Tensor]:
    """Host copies of tensors, with one blocking copy per device.

    Tensors already on the CPU are returned as they are, so on the CPU
    nothing is copied.

    Args:
        tensors (Mapping[Hashable, torch.Tensor]): Tensors by any key.

    Returns:
        dict: The same keys, in the same order, with CPU tensors of the
        same dtypes, shapes and values (views into one buffer per device).
    """
    host: Dict[Hashable, torch.Tensor] = {}
    by_device: Dict[torch.device, List[Hashable]] = {}
    for key, tensor in tensors.items():
        if tensor.device.type == 'cpu':
            host[key] = tensor
        else:
            by_device.setdefault(tensor.device, []).append(key)
    for keys in by_device.values():
        buffer, segments = pack([tensors[key] for key in keys])
        # The one device sync of a probe firing.
        copied = unpack(buffer.cpu(), segments)
        host.update(zip(keys, copied))
    return {key: host[key] for key in tensors}
