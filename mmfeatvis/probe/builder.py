"""Probe stage: a fixed model input, prepared once from the config.

A probe is one image, run through the config's own test pipeline (with
annotation loading dropped when the image has none) and the model's
``data_preprocessor`` in inference mode. The result is cached on the model's
device together with the original image and its resize/padding meta, so that
every firing feeds exactly the same input and overlays can be aligned with
the original pixels.
"""
import copy
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.dataset import Compose
from mmengine.registry import DATASETS
from torch import nn

from .image import probe_name, read_rgb

#: Meta keys the drawing core's alignment helper understands.
ALIGNMENT_META_KEYS = ('ori_shape', 'img_shape', 'pad_shape',
                       'batch_input_shape', 'pad_param', 'scale_factor')
DATASET_SPLITS = ('train', 'val', 'test')
ProbeSpec = Union[None, str, Dict[str, Any], Sequence[Union[str, Dict]]]


@dataclass
class Probe:
    """A prepared probe image.

    Attributes:
        name (str): Short name, safe in file names and TensorBoard tags.
        image (np.ndarray): The original image, RGB uint8, as read from disk.
        data (dict): The model input: ``inputs`` and ``data_samples`` as the
            ``data_preprocessor`` returned them, on the model's device.
        meta (dict): Resize and padding meta (see ``ALIGNMENT_META_KEYS``).
        source (str): Where the image came from, for messages.
        resized (dict): The original image resampled to other sizes, by
            (h, w), kept by the render stage (the overview's tiles are
            drawn on one at every firing).
        token (str): Names this probe's image for its whole life, unlike
            ``name`` (the samples of every validation reuse theirs): a
            drawing process keeps the image it was sent under this token
            and is not sent it again.
    """
    name: str
    image: np.ndarray
    data: Dict[str, Any]
    meta: Dict[str, Any] = field(default_factory=dict)
    source: str = ''
    resized: Dict[Tuple[int, int], np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    token: str = field(
        default_factory=lambda: uuid.uuid4().hex, repr=False, compare=False)

    def model_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``model(**kwargs, mode=...)``.

        Data samples are cloned because ``predict`` writes its results into
        them; the cached input must stay as it was prepared.
        """
        samples = self.data.get('data_samples')
        if samples is not None:
            samples = [
                s.clone() if hasattr(s, 'clone') else copy.copy(s)
                for s in samples
            ]
        return dict(inputs=self.data['inputs'], data_samples=samples)


def _transform_type_name(transform: Any) -> str:
    kind = transform.get('type', '') if isinstance(transform, dict) else ''
    return kind if isinstance(kind, str) else getattr(kind, '__name__', '')


def find_test_pipeline(cfg: Any) -> Optional[List[dict]]:
    """Find the test-time pipeline of a config.

    Looks at ``test_dataloader``, then ``val_dataloader`` (descending into
    dataset wrappers), then top-level ``test_pipeline``.

    Args:
        cfg (Config | dict): The full config.

    Returns:
        list[dict] | None: A deep copy of the pipeline, or ``None``.
    """
    for loader_key in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader_key) or {}).get('dataset')
        while isinstance(dataset, dict):
            if dataset.get('pipeline'):
                return copy.deepcopy(list(dataset['pipeline']))
            dataset = dataset.get('dataset')
    if cfg.get('test_pipeline'):
        return copy.deepcopy(list(cfg['test_pipeline']))
    return None


def without_annotation_loading(pipeline: List[dict]) -> List[dict]:
    """Drop transforms that load annotations, which a bare image lacks."""
    return [
        t for t in pipeline
        if not re.search(r'Load\w*Annotation', _transform_type_name(t))
    ]


def _image_to_input(image: np.ndarray) -> Dict[str, Any]:
    """Fallback packing for models whose config has no pipeline."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    meta = dict(ori_shape=image.shape[:2], img_shape=image.shape[:2])
    return dict(inputs=[tensor], data_samples=None, meta=meta)


def _sample_meta(data_samples: Any, image: np.ndarray) -> Dict[str, Any]:
    meta: Dict[str, Any] = {}
    if data_samples:
        sample = data_samples[0]
        info = sample.metainfo if hasattr(sample, 'metainfo') else sample
        if isinstance(info, dict):
            meta = {k: info[k] for k in ALIGNMENT_META_KEYS if k in info}
    meta.setdefault('ori_shape', tuple(image.shape[:2]))
    return meta


class ProbeBuilder:
    """Turns probe specifications into cached :class:`Probe` objects.

    Args:
        cfg (Config | dict): The full config of the run.
        pipeline (list[dict], optional): Overrides the config's test
            pipeline. Defaults to None.
        build_dataset (callable, optional): ``f(dataset_cfg)`` building a
            dataset in the right registry scope; needed for dataset probes.
    """

    def __init__(self,
                 cfg: Any,
                 pipeline: Optional[List[dict]] = None,
                 build_dataset: Optional[Any] = None) -> None:
        self.cfg = cfg
        self.pipeline_cfg = (
            copy.deepcopy(pipeline)
            if pipeline is not None else find_test_pipeline(cfg))
        self._build_dataset = build_dataset
        self._datasets: Dict[str, Any] = {}

    @staticmethod
    def normalize_spec(spec: ProbeSpec) -> List[Union[str, Dict]]:
        """Check a probe spec and return it as a list of entries.

        Raises:
            ValueError: For a malformed dataset entry or an empty list.
            TypeError: For entries that are neither paths nor dicts.
        """
        if spec is None:
            return [dict(dataset='val', index=0)]
        entries = [spec] if isinstance(spec, (str, dict)) else list(spec)
        if not entries:
            raise ValueError('probe is an empty list: give an image path, a '
                             "list of paths or dict(dataset='val', index=0).")
        for entry in entries:
            if isinstance(entry, dict):
                split = entry.get('dataset')
                if split not in DATASET_SPLITS or not isinstance(
                        entry.get('index', 0), int):
                    raise ValueError(
                        f'Invalid dataset probe {entry!r}: expected '
                        f"dict(dataset=one of {DATASET_SPLITS}, index=int).")
            elif not isinstance(entry, str):
                raise TypeError(f'A probe must be an image path or a dict, '
                                f'got {type(entry).__name__}: {entry!r}.')
        return entries

    def _dataset(self, split: str) -> Any:
        if split not in self._datasets:
            loader = self.cfg.get(f'{split}_dataloader')
            if not loader or not loader.get('dataset'):
                raise ValueError(
                    f"probe asks for the {split!r} dataset, but the config "
                    f'has no {split}_dataloader.dataset.')
            if self._build_dataset is None:
                raise ValueError('Dataset probes need a dataset builder.')
            dataset_cfg = copy.deepcopy(loader['dataset'])
            self._datasets[split] = self._build_dataset(dataset_cfg)
        return self._datasets[split]

    def _data_info(self, entry: Union[str, Dict]) -> Dict[str, Any]:
        if isinstance(entry, str):
            return dict(img_path=entry, img_id=0)
        dataset = self._dataset(entry['dataset'])
        index = entry.get('index', 0)
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
        if not -len(dataset) <= index < len(dataset):
            raise ValueError(f"probe index {index} is out of range for the "
                             f"{entry['dataset']!r} dataset of "
                             f'{len(dataset)} samples.')
        info = copy.deepcopy(dataset.get_data_info(index))
        if 'img_path' not in info:
            raise ValueError(
                f'Sample {index} of the {entry["dataset"]!r} dataset has no '
                "'img_path'; give the probe as an image path instead.")
        return info

    def build(self, spec: ProbeSpec, model: nn.Module) -> List[Probe]:
        """Prepare every probe of ``spec`` for ``model``.

        Args:
            spec: A path, a list of paths or dataset entries, or None for the
                first validation sample.
            model (nn.Module): The unwrapped model; its ``data_preprocessor``
                runs in inference mode.

        Returns:
            list[Probe]: One probe per entry.
        """
        entries = self.normalize_spec(spec)
        backend_args = self._backend_args()
        probes: List[Probe] = []
        for index, entry in enumerate(entries):
            info = self._data_info(entry)
            image = read_rgb(info['img_path'], backend_args)
            packed = self._pack(
                info, image, keep_annotations=isinstance(entry, dict))
            data = self._preprocess(model, packed)
            source = (
                info['img_path'] if isinstance(entry, str) else
                f"{entry['dataset']}[{entry.get('index', 0)}]")
            name = probe_name(info['img_path'], index,
                              [p.name for p in probes])
            meta = _sample_meta(data.get('data_samples'), image)
            meta.update(packed.get('meta', {}))
            probes.append(Probe(name, image, data, meta, source))
        return probes

    def _backend_args(self) -> Optional[dict]:
        for transform in self.pipeline_cfg or []:
            if isinstance(transform, dict) and 'backend_args' in transform:
                return transform['backend_args']
        return None

    def _pack(self, info: Dict[str, Any], image: np.ndarray,
              keep_annotations: bool) -> Dict[str, Any]:
        if not self.pipeline_cfg:
            return _image_to_input(image)
        pipeline_cfg = self.pipeline_cfg
        if not keep_annotations:
            pipeline_cfg = without_annotation_loading(pipeline_cfg)
        pipeline = Compose([
            ConfigDict(t) if isinstance(t, dict) else t for t in pipeline_cfg
        ])
        packed = pipeline(copy.deepcopy(info))
        if packed is None:
            raise ValueError(f'The test pipeline dropped the probe '
                             f"{info['img_path']!r}.")
        return dict(
            inputs=[packed['inputs']],
            data_samples=[packed['data_samples']]
            if 'data_samples' in packed else None)

    @staticmethod
    def _preprocess(model: nn.Module, packed: Dict[str, Any]) -> Dict:
        batch = dict(
            inputs=packed['inputs'], data_samples=packed['data_samples'])
        preprocessor = getattr(model, 'data_preprocessor', None)
        with torch.no_grad():
            if preprocessor is None:
                inputs = torch.stack(batch['inputs']).float()
                return dict(inputs=inputs, data_samples=None)
            data = preprocessor(batch, False)
        if isinstance(data, (tuple, list)):
            data = dict(inputs=data[0], data_samples=data[1])
        return dict(data)


def class_names(model: nn.Module,
                cfg: Any = None,
                visualizer: Any = None) -> Optional[List[str]]:
    """Class names for drawn predictions.

    From the model's (the checkpoint's) dataset meta, else the
    visualizer's, else the config's test dataset ``metainfo``, else the
    dataset class's ``METAINFO`` (no files read).
    """
    for owner in (model, visualizer):
        meta = getattr(owner, 'dataset_meta', None) or {}
        if meta.get('classes'):
            return list(meta['classes'])
    if cfg is None:
        return None
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    while isinstance(dataset,
                     dict) and 'dataset' in dataset and ('metainfo'
                                                         not in dataset):
        dataset = dataset['dataset']  # dataset wrappers
    if not isinstance(dataset, dict):
        return None
    metainfo = dataset.get('metainfo') or {}
    if metainfo.get('classes'):
        return list(metainfo['classes'])
    kind = dataset.get('type')
    try:
        # The root registry does not look into the default scope's child
        # registry by itself; building does this switch too.
        with DATASETS.switch_scope_and_registry(None) as registry:
            cls = registry.get(kind) if isinstance(kind, str) else kind
    except Exception:  # an unknown dataset type: no names, plain labels
        cls = None
    classes = getattr(cls, 'METAINFO', {}).get('classes') if cls else None
    return list(classes) if classes else None
