"""The CAMs localise: on the demo's YOLOv5-n, trained as ``make demo``
trains it, each box's map peaks inside the box (the pointing game)."""
import glob
import os.path as osp

import pytest
from conftest import yolo_cfg
from mmengine.runner import Runner

from mmfeatvis.options import CamOptions
from mmfeatvis.orchestrator.cam import CamOrchestrator
from mmfeatvis.probe import ProbeBuilder
from mmfeatvis.reduce.cam import CAM_METHODS
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
