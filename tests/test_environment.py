"""The environment that ``make test`` builds runs the real OpenMMLab stack."""
import importlib
import os.path as osp

import pytest
import torch
from mmengine import Config

import mmfeatvis
from mmfeatvis.cli.inputs import resolve_config


def _config_path(package: str, relative: str) -> str:
    path = resolve_config(f'{package}::{relative}')
    assert osp.isfile(path), f'{package} does not ship {relative}'
    return path


def test_versions_are_the_tested_stack():
    import mmcv
    import mmdet
    import mmengine
    import mmseg
    import mmyolo
    assert torch.__version__.startswith('2.13.0')
    assert mmcv.__version__ == '2.0.1'
    assert mmengine.__version__ == '0.10.7'
    assert mmdet.__version__ == '3.3.0'
    assert mmyolo.__version__ == '0.6.0'
    assert mmseg.__version__ == '1.2.2'
    assert isinstance(mmfeatvis.__version__, str)


def test_mmcv_compiled_ops_run():
    from mmcv.ops import batched_nms, nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]],
                         dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept, keep_inds = nms(boxes, scores, iou_threshold=0.5)
    assert keep_inds.tolist() == [0, 2]
    # Boxes of different classes never suppress each other.
    dets, keep = batched_nms(boxes, scores, torch.tensor([0, 1, 0]),
                             dict(type='nms', iou_threshold=0.5))
    assert sorted(keep.tolist()) == [0, 1, 2]
    assert dets.shape == (3, 5)


@pytest.mark.parametrize('package, relative, registry_module', [
    ('mmyolo', 'yolov5/yolov5_n-v61_syncbn_fast_8xb16-300e_coco.py',
     'mmyolo'),
    ('mmdet', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', 'mmdet'),
    ('mmseg', 'pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',
     'mmseg'),
])
def test_models_build_from_shipped_configs(package, relative,
                                           registry_module):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope, init_default_scope
    cfg = Config.fromfile(_config_path(package, relative))
    # No weights can be downloaded here: drop pretrained initialisation.
    cfg.model.pop('pretrained', None)
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None
    init_default_scope(registry_module)
    registry = importlib.import_module(f'{registry_module}.registry')
    with DefaultScope.overwrite_default_scope(registry_module):
        model = revert_sync_batchnorm(registry.MODELS.build(cfg.model))
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(1, 3, 128, 128))
    feats = feats if isinstance(feats, (tuple, list)) else [feats]
    assert all(f.ndim == 4 and f.shape[0] == 1 for f in feats)
