"""Building a model from any OpenMMLab config and loading checkpoints.

Written generically (like mmdet's ``init_detector``, but for every
codebase): the config's ``default_scope`` picks the registry, SyncBN is
reverted to BN so that configs asking for it run on one process (and on the
CPU), and pretrained-weight initialisation is dropped because a checkpoint
is loaded over it anyway.
"""
import io
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import torch
from mmengine.config import Config
from mmengine.fileio import get as get_bytes
from mmengine.logging import print_log
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner.checkpoint import load_state_dict
from torch import nn

from ..engine_internals import revised_keys
from .errors import RunError, UsageError


def pick_device(device: Optional[str]) -> str:
    """The device to run on: ``device``, else CUDA when present, else CPU.

    Raises:
        UsageError: For a device that does not exist here.
    """
    if device is None:
        return 'cuda:0' if torch.cuda.is_available() else 'cpu'
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f'--device {device!r} is not a device; use e.g. '
                         'cpu or cuda:0.') from None
    if parsed.type == 'cuda':
        if not torch.cuda.is_available():
            raise UsageError(f'--device {device}: CUDA is not available on '
                             'this machine; use --device cpu.')
        if parsed.index is not None and (parsed.index
                                         >= torch.cuda.device_count()):
            raise UsageError(f'--device {device}: there are only '
                             f'{torch.cuda.device_count()} CUDA device(s).')
    return device


def load_config(path: str, cfg_options: Optional[Dict] = None) -> Config:
    """Read a config file and merge ``--cfg-options`` into it.

    Raises:
        RunError: If the file is not a valid config.
        UsageError: If the config has no ``model``.
    """
    try:
        cfg = Config.fromfile(path)
    except Exception as error:
        raise RunError(f'cannot read the config {path!r}: '
                       f'{type(error).__name__}: {error}') from error
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not isinstance(cfg.get('model'), dict):
        raise UsageError(f'the config {path!r} has no model to build.')
    return cfg


def _drop_pretrained(node: Any) -> None:
    """Remove pretrained-weight loading from a model config, in place.

    Building must not download weights: a checkpoint replaces them, and
    this machine may have no network.
    """
    if isinstance(node, dict):
        if node.get('pretrained'):
            node['pretrained'] = None
        init_cfg = node.get('init_cfg')
        if isinstance(init_cfg,
                      dict) and init_cfg.get('type') == ('Pretrained'):
            node['init_cfg'] = None
        elif isinstance(init_cfg, list):
            node['init_cfg'] = [
                c for c in init_cfg
                if not (isinstance(c, dict) and c.get('type') == 'Pretrained')
            ] or None
        for value in node.values():
            _drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _drop_pretrained(value)


def build_model(cfg: Config, device: str) -> nn.Module:
    """Build ``cfg.model`` in the config's registry scope, on ``device``.

    Args:
        cfg (Config): The full config; ``cfg.model`` is changed in place
            (pretrained initialisation removed).
        device (str): Where the model goes.

    Returns:
        nn.Module: The model in eval mode with BN instead of SyncBN, and
        ``model.cfg`` set to ``cfg``.

    Raises:
        RunError: If the model does not build.
    """
    _drop_pretrained(cfg.model)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    try:
        model = MODELS.build(cfg.model)
    except Exception as error:
        raise RunError(f'cannot build the model of the config: '
                       f'{type(error).__name__}: {error}') from error
    model = revert_sync_batchnorm(model)
    model.cfg = cfg
    return model.to(device).eval()


def read_checkpoint(checkpoint: str) -> Dict[str, Any]:
    """Read a checkpoint file written by mmengine, through mmengine.fileio.

    Training checkpoints hold the message hub's ``HistoryBuffer`` and NumPy
    state beside the weights, which torch >= 2.6 refuses to unpickle by
    default (``weights_only=True``), so mmengine 0.10's own loader fails
    on every checkpoint a Runner saved. The user names the file, as with
    mmengine on older torch: it is unpickled in full.
    """
    with io.BytesIO(get_bytes(checkpoint)) as buffer:
        return torch.load(buffer, map_location='cpu', weights_only=False)


@dataclass
class Fit:
    """How a checkpoint's tensors fit the model they were loaded into.

    Attributes:
        checkpoint (str): The file.
        mismatched (dict[str, tuple]): Keys whose tensor has another shape
            in the checkpoint: ``(checkpoint shape, model shape)``.
        missing (list[str]): The model's keys the checkpoint lacks.
    """
    checkpoint: str
    mismatched: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)

    def unfit(self, modules: Optional[Set[str]] = None) -> List[str]:
        """Keys that kept their initial values, of ``modules`` only (all
        when None); BatchNorm's batch counters do not count."""
        keys = list(self.mismatched) + self.missing
        return [
            key for key in keys
            if not key.endswith('num_batches_tracked') and (
                modules is None or key.rpartition('.')[0] in modules)
        ]

    def describe(self, keys: Sequence[str], most: int = 3) -> str:
        """A few of ``keys`` with their shapes, for messages."""
        named = []
        for key in keys[:most]:
            if key in self.mismatched:
                saved, own = self.mismatched[key]
                named.append(f'{key} (checkpoint {tuple(saved)}, model '
                             f'{tuple(own)})')
            else:
                named.append(f'{key} (not in the checkpoint)')
        more = f' and {len(keys) - most} more' if len(keys) > most else ''
        return ', '.join(named) + more


def load_weights(model: nn.Module, checkpoint: str) -> Fit:
    """Load a checkpoint into ``model`` and take its dataset meta.

    Tensors whose shape does not fit are not loaded (they keep their
    initial values); :func:`check_fit` decides whether that matters for
    the layers drawn.

    Args:
        model (nn.Module): The built model.
        checkpoint (str): Path or URL of the checkpoint.

    Returns:
        Fit: What did not fit.

    Raises:
        RunError: If the file cannot be read, or none of its weights fits
            the model (a checkpoint of another model).
    """
    try:
        ckpt = read_checkpoint(checkpoint)
    except Exception as error:
        raise RunError(f'cannot load the checkpoint {checkpoint!r}: '
                       f'{type(error).__name__}: {error}') from error
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    state = revised_keys(state)
    own = model.state_dict()
    fit = Fit(checkpoint)
    for key, tensor in own.items():
        saved = state.get(key)
        if saved is None:
            fit.missing.append(key)
        elif hasattr(saved, 'shape') and tuple(saved.shape) != tuple(
                tensor.shape):
            fit.mismatched[key] = (tuple(saved.shape), tuple(tensor.shape))
    if len(fit.missing) == len(own):
        raise RunError(
            f'the checkpoint {checkpoint!r} does not fit the model: none of '
            f'its {len(state)} entries names one of the model\'s '
            f'{len(own)} parameters and buffers. Is it from another config?')
    load_state_dict(
        model, {
            k: v
            for k, v in state.items() if k not in fit.mismatched
        },
        strict=False,
        logger='silent')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    if meta.get('dataset_meta'):
        # mmdet 3.x spells keys in lower case; older checkpoints did not.
        model.dataset_meta = {
            k.lower(): v
            for k, v in meta['dataset_meta'].items()
        }
    elif meta.get('CLASSES'):
        model.dataset_meta = {'classes': meta['CLASSES']}
    return fit


def check_fit(fit: Fit, needed: Set[str]) -> None:
    """Refuse a checkpoint whose tensors do not fit what the drawn layers
    are computed from; warn where only later parts do not fit.

    Args:
        fit (Fit): What :func:`load_weights` found.
        needed (set[str]): Modules the drawn layers depend on (see
            :func:`~mmfeatvis.capture.modules_computed_before`).

    Raises:
        RunError: If a tensor of ``needed`` kept its initial value: the
            picture would show an untrained layer as the checkpoint's.
    """
    unfit = fit.unfit(needed)
    total = len(fit.unfit())
    if unfit:
        raise RunError(
            f'the checkpoint {fit.checkpoint!r} does not fit the layers '
            f'drawn: {len(unfit)} tensor(s) they are computed from have '
            f'another shape or are missing, e.g. {fit.describe(unfit)}. '
            'Is it from another config (another model size)? Give the '
            'config it was trained with.')
    if total:
        later = fit.unfit()
        print_log(
            f'the checkpoint {fit.checkpoint!r} does not fit {total} '
            f'tensor(s) after the drawn layers, e.g. {fit.describe(later)}; '
            'they keep their initial values, which the maps do not use '
            '(predictions drawn under them may be wrong).',
            logger='current',
            level=logging.WARNING)
