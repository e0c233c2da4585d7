"""The CAMs localise: on the demo's YOLOv5-n, trained as ``make demo``
trains it, each box's map peaks inside the box (the pointing game)."""
import glob
import os.path as osp

import pytest
from conftest import yolo_cfg
from mmengine.runner import Runner

from mmfeatvis.options import CamOptions, DrawOptions
from mmfeatvis.orchestrator import FeatmapOrchestrator
from mmfeatvis.orchestrator.cam import CamOrchestrator
from mmfeatvis.probe import ProbeBuilder
from mmfeatvis.reduce.cam import CAM_METHODS
from mmfeatvis.render.cam import cam_values
from mmfeatvis.testing import make_shapes_dataset, pointing_game

# Trains the demo's detector (10 epochs on 128 images, about a minute).
pytestmark = pytest.mark.slow

#: Methods that weigh each position by its own gradient, so that a box's
#: map points at that box; Grad-CAM's channel weights light every object
#: of the class, and EigenCAM's one map cannot peak in every box.
BOX_SPECIFIC = ('layercam', 'hirescam')


@pytest.fixture(scope='module')
def demo_detector(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo'))
    shapes = make_shapes_dataset(osp.join(root, 'data'), num_train=128,
                                 num_val=32)
    cfg = yolo_cfg(shapes, osp.join(root, 'work'), [], max_epochs=10,
                   batch_size=8)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=10_000)
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model
    images = sorted(glob.glob(osp.join(root, 'data', 'val', '*.jpg')))
    return model, ProbeBuilder(cfg).build(images, model)


def test_the_pointing_game(demo_detector):
    model, probes = demo_detector
    shares = {}
    for method in CAM_METHODS:
        orchestrator = CamOrchestrator(
            CamOptions(method=method, topk=100, score_thr=0.3))
        result = pointing_game(orchestrator, model, probes)
        shares[method] = result['share']
        print(f'pointing game, {method}: {result["hits"]}/{result["boxes"]}'
              f' = {result["share"]:.0%}')
        # A trained detector: several boxes above 0.3 per image.
        assert result['boxes'] >= len(probes)
    for method in BOX_SPECIFIC:
        assert shares[method] >= 0.8, shares


@pytest.mark.parametrize('method', BOX_SPECIFIC)
def test_the_box_maps_are_readable(demo_detector, method):
    # Over the image, each box's map reaches the top of the scale on
    # a spot, not on a saturated blob, and shows a region, not a pixel.
    model, probes = demo_detector
    orchestrator = CamOrchestrator(CamOptions(method=method, topk=100))
    panels = 0
    for probe in probes[:8]:
        cams, = orchestrator.fire(model, [probe])
        for panel in cams.panels:
            values = cam_values(panel, probe.meta, probe.image.shape[:2],
                                1.0)
            panels += 1
            # Warped bilinearly, so a little under the map's own peak.
            assert values.max() >= 0.9
            assert (values >= 0.95).mean() <= 0.05
            assert (values >= 0.25).sum() >= 20
    assert panels >= 8


def test_head_score_maps_show_where_each_class_fires(demo_detector):
    # YOLOv5's prediction convolutions, drawn per class: the class of the
    # best box scores highest, and its map peaks inside that box.
    model, probes = demo_detector
    orchestrator = FeatmapOrchestrator(
        ['bbox_head.head_module.convs_pred.*'],
        DrawOptions(channel_reduction='class_topk', topk=3,
                    arrangement=(1, 3), draw_pred=True))
    hits = images = 0
    for probe in probes:
        maps, = orchestrator.fire(model, [probe])
        best = maps.prediction.pred_instances
        if not len(best) or float(best.scores.max()) < 0.3:
            continue
        top = int(best.scores.argmax())
        label, box = int(best.labels[top]), best.bboxes[top].tolist()
        # The level whose map of that class peaks highest.
        layer = max(maps.layers, key=lambda item: float(
            item.reduced.maps[item.reduced.channels.tolist().index(label)]
            .max()) if label in item.reduced.channels.tolist() else -1)
        assert layer.norm_range == (0.0, 1.0)
        index = layer.reduced.channels.tolist().index(label)
        peak = layer.reduced.maps[index]
        y, x = divmod(int(peak.argmax()), peak.shape[1])
        # Feature pixel centre -> original image pixels.
        values = warp_point(probe.meta, peak.shape, (y, x))
        images += 1
        hits += int(box[0] <= values[1] <= box[2]
                    and box[1] <= values[0] <= box[3])
    assert images >= len(probes) // 2
    assert hits / images >= 0.8, (hits, images)


def warp_point(meta, feat_hw, yx):
    """A feature pixel's centre in original image pixels."""
    from mmfeatvis.probe.geometry import input_geometry
    geo = input_geometry(meta)
    out = []
    for axis, offset in ((0, geo.top), (1, geo.left)):
        stride = geo.input_hw[axis] / feat_hw[axis]
        scale = geo.content_hw[axis] / geo.ori_hw[axis]
        out.append(((yx[axis] + 0.5) * stride - offset) / scale)
    return out
