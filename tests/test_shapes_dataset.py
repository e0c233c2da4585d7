"""Tests of the generated shapes data set and of the demo config using it."""
import importlib.util
import json
import os.path as osp
from typing import Dict

import cv2
import numpy as np
import pytest

from mmfeatvis.testing import (make_shapes_dataset, render_sample,
                               shapes_cfg_options)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'demo', 'yolov5_n_shapes.py')
NUM_TRAIN, NUM_VAL = 5, 3
IMAGE_SIZE = (96, 128)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    """A small PNG data set, lossless so that pixels can be checked."""
    return make_shapes_dataset(
        str(tmp_path_factory.mktemp('shapes')),
        num_train=NUM_TRAIN,
        num_val=NUM_VAL,
        image_size=IMAGE_SIZE,
        img_ext='.png')


def _load(path: str) -> dict:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def test_writes_promised_files(shapes: Dict[str, object]) -> None:
    assert shapes['classes'] == ('circle', 'square', 'triangle')
    for split, count in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        coco = _load(shapes[f'{split}_ann'])
        assert len(coco['images']) == count
        for img in coco['images']:
            path = osp.join(shapes[f'{split}_img_dir'], img['file_name'])
            assert cv2.imread(path).shape == IMAGE_SIZE + (3, )
            assert (img['height'], img['width']) == IMAGE_SIZE


def test_annotations_load_with_pycocotools(shapes: Dict[str,
                                                        object]) -> None:
    coco_api = pytest.importorskip('pycocotools.coco')
    coco = coco_api.COCO(shapes['train_ann'])
    names = [cat['name'] for cat in coco.loadCats(coco.getCatIds())]
    assert names == list(shapes['classes'])
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        # Placement may skip an object that finds no room, never all of them.
        assert 1 <= len(anns) <= 4
        img = coco.loadImgs([img_id])[0]
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= img['width'] and y + h <= img['height']
            assert ann['iscrowd'] == 0 and 0 < ann['area'] <= w * h


def test_boxes_match_drawn_pixels(shapes: Dict[str, object]) -> None:
    coco = _load(shapes['val_ann'])
    files = {img['id']: img['file_name'] for img in coco['images']}
    for ann in coco['annotations']:
        img = cv2.imread(osp.join(shapes['val_img_dir'],
                                  files[ann['image_id']]))
        x, y, w, h = (int(v) for v in ann['bbox'])
        # One pixel of margin, so that a shape leaking out of its box fails.
        x0, y0 = max(x - 1, 0), max(y - 1, 0)
        crop = img[y0:y + h + 1, x0:x + w + 1].reshape(-1, 3)
        colours, counts = np.unique(crop, axis=0, return_counts=True)
        # Shapes are saturated; grey clutter lines may repeat one colour
        # as often as a small shape does.
        grey = np.ptp(colours.astype(int), axis=1) < 80
        shape_colour = colours[np.where(grey, 0, counts).argmax()]
        mask = (img[y0:y + h + 1, x0:x + w + 1] == shape_colour).all(-1)
        ys, xs = np.nonzero(mask)
        assert [xs.min() + x0, ys.min() + y0, xs.max() + x0 + 1,
                ys.max() + y0 + 1] == [x, y, x + w, y + h]
        assert mask.sum() == ann['area']


def test_render_sample_masks() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        img, objects = render_sample(rng, (64, 80))
        assert img.shape == (64, 80, 3) and img.dtype == np.uint8
        for obj in objects:
            ys, xs = np.nonzero(obj['mask'])
            x, y, w, h = obj['bbox']
            assert (xs.min(), ys.min(), xs.max() + 1,
                    ys.max() + 1) == (x, y, x + w, y + h)
            assert len(np.unique(img[obj['mask']], axis=0)) == 1


def test_deterministic_for_a_seed(tmp_path) -> None:
    runs = [
        make_shapes_dataset(
            str(tmp_path / name), 3, 2, image_size=64, seed=seed)
        for name, seed in (('a', 7), ('b', 7), ('c', 8))
    ]
    for key in ('train_ann', 'val_ann'):
        assert _load(runs[0][key]) == _load(runs[1][key])
        assert _load(runs[0][key]) != _load(runs[2][key])
    for name in ('000000.jpg', '000002.jpg'):
        with open(osp.join(runs[0]['train_img_dir'], name), 'rb') as f:
            first = f.read()
        with open(osp.join(runs[1]['train_img_dir'], name), 'rb') as f:
            assert f.read() == first


def test_val_split_ignores_num_train(tmp_path) -> None:
    small = make_shapes_dataset(str(tmp_path / 'small'), 1, 2, image_size=64)
    large = make_shapes_dataset(str(tmp_path / 'large'), 4, 2, image_size=64)
    assert _load(small['val_ann']) == _load(large['val_ann'])


def test_rejects_unknown_shapes(tmp_path) -> None:
    with pytest.raises(ValueError, match='star'):
        make_shapes_dataset(str(tmp_path), 1, 1, classes=('circle', 'star'))


def test_cli_writes_data_set(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location(
        'make_shapes_dataset',
        osp.join(REPO, 'tools', 'misc', 'make_shapes_dataset.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cli.main([
        str(tmp_path), '--num-train', '2', '--num-val', '1', '--size', '64'
    ])
    val = _load(str(tmp_path / 'annotations' / 'val.json'))
    assert len(val['images']) == 1 and val['images'][0]['height'] == 64


@pytest.fixture(scope='module')
def demo_cfg(shapes: Dict[str, object]):
    """The demo config, pointed at the generated data."""
    pytest.importorskip('mmyolo')
    from mmengine.config import Config
    from mmyolo.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(shapes_cfg_options(shapes['data_root']))
    return cfg


def test_demo_config_targets_three_classes(demo_cfg) -> None:
    assert demo_cfg.model.bbox_head.head_module.num_classes == 3
    assert demo_cfg.train_dataloader.dataset.metainfo.classes == (
        'circle', 'square', 'triangle')
    assert demo_cfg.model.use_syncbn is False
    assert demo_cfg.train_dataloader.num_workers == 0
    assert osp.isfile(demo_cfg.val_evaluator.ann_file)


def test_demo_config_builds_the_model(demo_cfg) -> None:
    import torch
    from mmyolo.registry import MODELS
    model = MODELS.build(demo_cfg.model)
    # No SyncBN anywhere: training on a CPU has no process group.
    assert not any(
        isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    with torch.no_grad():
        scores = model.eval()(torch.zeros(1, 3, 64, 64), mode='tensor')[0]
    # Three anchors per location, each scoring the three classes.
    assert scores[0].shape[1] == 3 * 3


@pytest.mark.parametrize('split', ['train', 'val'])
def test_demo_config_datasets_yield_samples(demo_cfg, split: str) -> None:
    from mmengine.registry import init_default_scope
    from mmyolo.registry import DATASETS
    init_default_scope('mmyolo')
    dataset = DATASETS.build(demo_cfg[f'{split}_dataloader'].dataset)
    assert len(dataset) == {'train': NUM_TRAIN, 'val': NUM_VAL}[split]
    assert dataset.metainfo['classes'] == ('circle', 'square', 'triangle')
    sample = dataset[0]
    img = sample['inputs']
    if split == 'train':
        assert tuple(img.shape) == (3, 320, 320)
    else:
        # mmyolo's batch shapes letterbox to a multiple of 32 plus padding.
        assert img.shape[0] == 3 and max(img.shape[1:]) >= 320
        assert img.shape[1] % 32 == 0 and img.shape[2] % 32 == 0
    instances = sample['data_samples'].gt_instances
    assert len(instances) >= 1
    assert instances.labels.max() < 3
