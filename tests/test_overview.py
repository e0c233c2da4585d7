"""The overview drawn from small tiles, and images drawn only when written."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import TinyTokenNet, plain_runner
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

import mmfeatvis  # noqa: F401  (registers the hook)
from mmfeatvis.options import DrawOptions
from mmfeatvis.orchestrator import FeatmapOrchestrator
from mmfeatvis.probe import ProbeBuilder
from mmfeatvis.render import (OVERVIEW_TILE_SIDE, ProbeResult, draw_detections,
                              image_at)
from mmfeatvis.testing import read_tensorboard


def _reduced_maps(probe_image_path: str, **options):
    torch.manual_seed(0)
    model = TinyTokenNet()
    probes = ProbeBuilder({}).build(probe_image_path, model)
    pipeline = FeatmapOrchestrator(['backbone', 'tokens'],
                                   DrawOptions(**options))
    (probe, features, outputs), = pipeline.capture(model, probes)
    return pipeline, pipeline.reduce(probe, features, outputs)


@pytest.mark.parametrize('options', [
    dict(channel_reduction='squeeze_mean'),
    dict(channel_reduction=None, topk=4, arrangement=(2, 2)),
])
def test_overview_from_tiles_matches_shrunk_full_size_images(
        probe_image_path, options):
    pipeline, maps = _reduced_maps(probe_image_path, **options)
    both = pipeline.render(maps, overview_tile_side=OVERVIEW_TILE_SIDE)
    assert set(both.overview_tiles) == set(both.layer_images) == {
        'backbone', 'tokens'
    }
    rows, cols = (1, 1) if options['channel_reduction'] else (2, 2)
    for tile in both.overview_tiles.values():
        assert max(tile.shape[:2]) <= OVERVIEW_TILE_SIDE
        # The photo's aspect (600x512) is kept, cell by cell.
        cell_h, cell_w = tile.shape[0] / rows, tile.shape[1] / cols
        assert abs(cell_h / cell_w - 600 / 512) < 0.01
    for layer, tile in both.overview_tiles.items():
        # Drawn small, or drawn large and shrunk: the same picture.
        shrunk = cv2.resize(both.layer_images[layer], tile.shape[1::-1],
                            interpolation=cv2.INTER_AREA)
        tile, shrunk = tile.astype(float), shrunk.astype(float)
        assert np.abs(tile - shrunk).mean() < 6
        assert np.corrcoef(tile.ravel(), shrunk.ravel())[0, 1] > 0.95
    from_tiles = both.overview()
    from_full_size = ProbeResult(
        both.probe, layer_images=both.layer_images).overview()
    # Up to the rounding of tile sizes (a pixel per grid cell).
    assert from_tiles.shape[0] == from_full_size.shape[0]
    assert abs(from_tiles.shape[1] - from_full_size.shape[1]) <= 2 * cols


def test_only_what_is_written_is_drawn(probe_image_path):
    pipeline, maps = _reduced_maps(probe_image_path)
    tiles_only = pipeline.render(
        maps, layer_images=False, overview_tile_side=OVERVIEW_TILE_SIDE)
    assert tiles_only.layer_images == {}
    assert tiles_only.has_images
    assert tiles_only.overview().shape == pipeline.render(
        maps, overview_tile_side=OVERVIEW_TILE_SIDE).overview().shape
    full_only = pipeline.render(maps)
    assert full_only.overview_tiles == {}
    assert full_only.layer_images['backbone'].shape == (600, 512, 3)


def test_the_small_photo_is_resampled_once(probe_image_path):
    probe, = ProbeBuilder({}).build(probe_image_path, TinyTokenNet())
    small = image_at(probe.image, (300, 256), probe.resized)
    assert small.shape == (300, 256, 3)
    assert image_at(probe.image, (300, 256), probe.resized) is small
    assert image_at(probe.image, (600, 512), probe.resized) is probe.image
    # Area resampling keeps the picture: means agree to a grey level.
    assert abs(float(small.mean()) - float(probe.image.mean())) < 1


def test_predictions_on_a_smaller_copy_are_scaled():
    sample = DetDataSample()
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[100., 200., 300., 400.]]),
        scores=torch.tensor([0.9]),
        labels=torch.tensor([0]))
    blank = np.zeros((300, 256, 3), np.uint8)
    drawn = draw_detections(blank, sample, 0.3, ['person'], scale=0.5)
    assert blank.max() == 0  # the input is not drawn on
    # The box's left edge is at x = 50, its bottom edge at y = 200.
    assert drawn[150, 50].any() and drawn[200, 100].any()
    assert not drawn[150, 100].any()  # inside the box: untouched
    assert not drawn[250, 200].any()  # outside the scaled box


@pytest.mark.parametrize('per_layer, overview', [(False, True),
                                                 (True, False)])
def test_hook_writes_only_what_is_asked(tmp_path, probe_image_path,
                                        per_layer, overview):
    hook = dict(
        type='FeatmapVisHook',
        probe=probe_image_path,
        target_layers=['backbone', 'tokens'],
        interval=2,
        per_layer=per_layer,
        overview=overview)
    runner = plain_runner(str(tmp_path), [hook], max_iters=2)
    runner.train()
    vis_dir = osp.join(runner.log_dir, 'vis_data')
    files = sorted(
        osp.basename(p)
        for p in glob.glob(osp.join(vis_dir, 'vis_image', '*.jpg')))
    expected = (['featvis_grace_hopper_overview'] if overview else [
        'featvis_grace_hopper_backbone', 'featvis_grace_hopper_tokens'
    ])
    assert files == sorted(f'{name}_{step}.jpg' for name in expected
                           for step in (0, 2))
    # TensorBoard groups cards by the tag's first part: one 'featvis'
    # section, beside the scalars featvis/<probe>/<layer>/<stat>.
    images, scalars = read_tensorboard(vis_dir)
    assert sorted(images) == [
        name.replace('featvis_grace_hopper_', 'featvis/grace_hopper/')
        for name in expected
    ]
    assert all(steps == [0, 2] for steps in images.values())
    assert 'featvis/grace_hopper/backbone/mean' in scalars


def test_a_small_probe_is_drawn_once_for_both(tmp_path, probe_image_path):
    small = tmp_path / 'small.jpg'
    image = cv2.imread(probe_image_path)
    cv2.imwrite(str(small), cv2.resize(image, (160, 192)))
    pipeline, maps = _reduced_maps(str(small),
                                   channel_reduction='squeeze_mean')
    result = pipeline.render(maps, overview_tile_side=OVERVIEW_TILE_SIDE)
    for layer, picture in result.layer_images.items():
        assert picture.shape == (192, 160, 3)
        # At the overview's scale the tile is the full picture itself.
        assert result.overview_tiles[layer] is picture


def test_overview_cells_are_never_larger_than_the_model_input(
        probe_image_path):
    # YOLOv5-n at 320, as the demo config: the 600x512 photo is letterboxed
    # into a 320x320 input, so its maps hold no detail beyond 320 px.
    from mmengine.config import Config

    from mmfeatvis.cli.model import build_model
    cfg = Config.fromfile(
        osp.join(osp.dirname(__file__), '..', 'configs', 'demo',
                 'yolov5_n_shapes.py'))
    torch.manual_seed(0)
    model = build_model(cfg, 'cpu')
    probe, = ProbeBuilder(cfg).build(probe_image_path, model)
    assert max(probe.meta['img_shape'][:2]) == 320
    for options, grid in ((dict(channel_reduction='squeeze_mean'), (1, 1)),
                          (dict(channel_reduction=None, topk=4), (2, 2))):
        pipeline = FeatmapOrchestrator(['backbone', 'neck'],
                                       DrawOptions(**options))
        maps, = pipeline.fire(model, [probe])
        result = pipeline.render(
            maps, layer_images=False, overview_tile_side=OVERVIEW_TILE_SIDE)
        for tile in result.overview_tiles.values():
            cell = (tile.shape[0] / grid[0], tile.shape[1] / grid[1])
            assert max(cell) <= 320 + 1
            assert max(tile.shape[:2]) <= OVERVIEW_TILE_SIDE
        if grid == (1, 1):
            # The cap binds: 320, not the 400 of OVERVIEW_TILE_SIDE.
            assert max(max(t.shape[:2])
                       for t in result.overview_tiles.values()) == 320


def test_input_cell_scale_keeps_small_inputs_readable():
    from mmfeatvis.render import MIN_TILE_SIDE, input_cell_scale
    assert input_cell_scale((600, 512), dict(img_shape=(320, 320))) == (
        pytest.approx(320 / 600))
    # A tiny input still gets cells its titles fit above.
    assert input_cell_scale((600, 512), dict(img_shape=(64, 64))) == (
        pytest.approx(MIN_TILE_SIDE / 600))
    # No input shape known: no cap.
    assert input_cell_scale((600, 512), {}) == 1.0
