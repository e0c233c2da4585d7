"""Every private attribute of mmengine and TensorBoard that mmfeatvis uses,
in one place.

Written against mmengine 0.10.7 and TensorBoard 2.x (checked with 2.20).
An upgrade that renames one of them fails its test in
``tests/test_engine_internals.py``, not a training run. What is used, and
why:

* ``Visualizer._vis_backends``: the backends, to write each image once per
  backend (mmengine has ``get_backend(name)`` but no list).
* ``LocalVisBackend._img_save_dir`` (after ``experiment`` initialised
  it): where the local backend keeps its images, to write them encoded
  once and atomically.
* ``SummaryWriter._get_file_writer()``: TensorBoard's event writer, to add
  an image or a batch of scalars as one summary.
* ``tensorboard.summary.writer.record_writer.masked_crc32c``: replaced by
  a compiled checksum (:func:`use_compiled_crc32c`).
* ``Runner._train_loop``, ``._val_loop``, ``._test_loop``: a loop if it is
  built (the public properties would build one, with its dataset: in a
  validation run, ``runner.iter`` builds the train loop).
* the default ``revise_keys`` of ``mmengine.runner.load_checkpoint``:
  how mmengine renames checkpoint keys (a wrapped model's ``module.``),
  applied to a checkpoint read here (``load_checkpoint`` itself reads with
  ``torch.load``'s default ``weights_only=True``, which refuses the
  training state of every checkpoint a Runner saved).
"""
import functools
from typing import Any, Dict, Optional

from mmengine.visualization import (LocalVisBackend, TensorboardVisBackend,
                                    Visualizer)


def vis_backends(visualizer: Visualizer) -> Dict[str, Any]:
    """The visualizer's backends by name (empty without any)."""
    return getattr(visualizer, '_vis_backends', None) or {}


def local_image_dir(backend: LocalVisBackend) -> str:
    """The folder of a local backend's images (initialises the backend)."""
    return backend.experiment._img_save_dir


def local_scalar_file(backend: LocalVisBackend) -> str:
    """The ``scalars.json`` of a local backend (initialises the backend)."""
    return backend.experiment._scalar_save_file


def tensorboard_file_writer(backend: TensorboardVisBackend) -> Any:
    """The event file writer behind a TensorBoard backend, checksumming in
    C."""
    use_compiled_crc32c()
    return backend.experiment._get_file_writer()


def built_loop(runner: Any, stage: str) -> Optional[Any]:
    """The runner's ``'train'``, ``'val'`` or ``'test'`` loop if it is
    built, else None (it is still a config dict, or absent); never builds
    one: the public properties would, with its dataset (``runner.iter``
    builds the train loop in a ``runner.test()`` run)."""
    from mmengine.runner import BaseLoop
    loop = getattr(runner, f'_{stage}_loop', None)
    return loop if isinstance(loop, BaseLoop) else None


def built_train_loop(runner: Any) -> Optional[Any]:
    """The runner's train loop if it is built (during ``train()``), else
    None; never builds one."""
    return built_loop(runner, 'train')


def revised_keys(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """``state_dict`` with its keys renamed as ``load_checkpoint`` renames
    them by default (``module.resnet.conv1`` becomes ``resnet.conv1``)."""
    import inspect
    import re

    from mmengine.runner import load_checkpoint
    rules = inspect.signature(load_checkpoint).parameters['revise_keys']
    for pattern, replacement in rules.default:
        state_dict = {
            re.sub(pattern, replacement, key): value
            for key, value in state_dict.items()
        }
    return state_dict


@functools.lru_cache(maxsize=None)
def use_compiled_crc32c() -> bool:
    """Let TensorBoard's event writer checksum records in C.

    Without TensorFlow, TensorBoard computes each record's CRC-32C in a
    pure-Python loop: about 12 ms for one 70 KB image, holding the GIL
    that the training thread needs. With ``google-crc32c`` (the
    ``tensorboard`` extra) installed, its C implementation, which gives the
    same checksums, replaces that function.

    Returns:
        bool: Whether the compiled checksum is in use.
    """
    try:
        import google_crc32c
        from tensorboard.summary.writer import record_writer
    except ImportError:
        return False
    if google_crc32c.implementation != 'c':
        return False
    record_writer.masked_crc32c = masked_crc32c
    return True  # once per process: the replacement stays


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``, computed in C."""
    import google_crc32c
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
