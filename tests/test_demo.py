"""`make demo`, shortened: the same script on a smaller data set."""
import glob
import os
import os.path as osp
import subprocess

from PIL import Image

from mmfeatvis.testing import read_tensorboard

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_demo_script_trains_and_draws(tmp_path):
    demo_dir = str(tmp_path / 'demo')
    env = dict(os.environ, DEMO_DIR=demo_dir, DEMO_EPOCHS='2',
               DEMO_NUM_TRAIN='16', DEMO_NUM_VAL='4', DEMO_CKPT_INTERVAL='1')
    done = subprocess.run(['bash', 'scripts/run_demo.sh'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in ('[demo 1/3]', '[demo 2/3]', '[demo 3/3]', 'Demo finished',
                 f'tensorboard --logdir {demo_dir}'):
        assert step in done.stdout
    run_dir = glob.glob(osp.join(demo_dir, '2*', 'vis_data'))[0]
    images, scalars = read_tensorboard(run_dir)
    # 2 epochs of 2 iterations: the baseline and the final state (step 4),
    # also after validation (no duplicate).
    assert images['featvis_000000_overview'] == [0, 4]
    assert 'coco/bbox_mAP' in scalars
    pngs = glob.glob(osp.join(run_dir, 'vis_image', 'featvis_000000_*'))
    assert len(pngs) == 2 * 7  # 3 backbone + 3 neck maps + overview
    series = osp.join(demo_dir, 'featvis', '000000')
    assert sorted(os.listdir(series)) == [
        'epoch_1.jpg', 'epoch_2.jpg', 'series.gif', 'series_strip.jpg'
    ]
    assert Image.open(osp.join(series, 'series.gif')).n_frames == 2
