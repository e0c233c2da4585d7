"""`make demo`, shortened: the same script on a smaller data set, and its
pictures measured.

The hook draws with ``alpha=1`` into PNG files and no boxes, so that every
pixel's level on the colour scale reads back exactly: the test checks
that no picture saturates or is flat, and that the checkpoint series
shares one range that covers every checkpoint.
"""
import glob
import json
import os
import os.path as osp
import re
import subprocess

import cv2
import pytest
from PIL import Image

from mmfeatvis.testing import read_tensorboard, readability

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: At most this share of a picture's pixels at either end of the scale.
MAX_AT_AN_END = 0.15
MEASURED = ('custom_hooks.1.alpha=1.0 custom_hooks.1.image_format=png '
            'custom_hooks.1.draw_pred=False custom_hooks.1.per_layer=True')


@pytest.mark.slow
def test_demo_script_trains_and_draws(tmp_path):
    demo_dir = str(tmp_path / 'demo')
    env = dict(os.environ, DEMO_DIR=demo_dir, DEMO_EPOCHS='2',
               DEMO_NUM_TRAIN='16', DEMO_NUM_VAL='4', DEMO_CKPT_INTERVAL='1',
               DEMO_HOOK_OPTIONS=MEASURED)
    done = subprocess.run(['bash', 'scripts/run_demo.sh'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in ('[demo 1/3]', '[demo 2/3]', '[demo 3/3]', 'Demo finished',
                 f'tensorboard --logdir {demo_dir}', 'featvis_*.png'):
        assert step in done.stdout
    run_dir = glob.glob(osp.join(demo_dir, '2*', 'vis_data'))[0]
    images, scalars = read_tensorboard(run_dir)
    # 2 epochs of 2 iterations: the baseline and the final state (step 4),
    # also after validation (no duplicate).
    assert images['featvis/000000/overview'] == [0, 4]
    assert images['featvis/000000/cam/layercam'] == [0, 4]
    assert 'coco/bbox_mAP' in scalars
    files = glob.glob(osp.join(run_dir, 'vis_image', 'featvis_000000_*'))
    # 3 backbone + 3 neck maps, the overview and the CAMs.
    assert len(files) == 2 * 8

    # Every per-layer picture is readable: few pixels at either end of the
    # colour scale, and not flat.
    layers = [p for p in files if 'overview' not in p and '_cam_' not in p]
    assert len(layers) == 2 * 6
    for path in layers:
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        measured = readability(image)
        name = osp.basename(path)
        assert max(measured.low, measured.high) <= MAX_AT_AN_END, (
            name, measured)
        assert not measured.flat(), (name, measured)

    series = osp.join(demo_dir, 'featvis', '000000')
    assert sorted(os.listdir(series)) == [
        'epoch_1.jpg', 'epoch_2.jpg', 'series.gif', 'series_ranges.json',
        'series_strip.jpg'
    ]
    assert Image.open(osp.join(series, 'series.gif')).n_frames == 2
    # One range per layer for every checkpoint, covering every one.
    with open(osp.join(series, 'series_ranges.json')) as f:
        ranges = json.load(f)
    assert len(ranges) == 6
    for layer, drawn in ranges.items():
        own = list(drawn['checkpoints'].values())
        assert len(own) == 2
        assert drawn['shared'] == [min(r[0] for r in own),
                                   max(r[1] for r in own)], layer
    # The closing message names files that exist.
    pattern = re.search(r'Hook images.*?(\S+featvis_\*\.png)', done.stdout)
    assert glob.glob(pattern.group(1))
