"""tools/featvis.py run as a user runs it, on a real photograph.

Checkpoints are saved from randomly initialised models built from the
configs shipped in the installed mmyolo, mmdet and mmseg. The commands of
a group run concurrently (each is mostly a single-threaded start-up), and
the tests then check the pictures they wrote and their exit status.
"""
import math
import os
import os.path as osp
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import pytest
import torch
from mmengine.runner import save_checkpoint

from mmfeatvis.cli.inputs import resolve_config
from mmfeatvis.cli.model import build_model, load_config, load_weights
from mmfeatvis.options import DrawOptions
from mmfeatvis.orchestrator import FeatmapOrchestrator
from mmfeatvis.probe import ProbeBuilder, content_region
from mmfeatvis.render import colour_bar_height, compose_panels, get_lut

# Every test here runs the command line in a subprocess, or builds the
# models it draws (pytest -m "not slow" leaves it out).
pytestmark = pytest.mark.slow

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'featvis.py')
YOLO = 'mmyolo::yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py'
RETINANET = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
DETR = 'mmdet::detr/detr_r18_8xb2-500e_coco.py'
FAST_SCNN = 'mmseg::fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py'
#: grace_hopper.jpg is 600 x 512 (h x w); pictures keep the original size.
IMAGE_HW = (600, 512)
WORKERS = 3


def run_cli(args: Sequence[str], cwd: str,
            drop_env: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run the command line as a user would, in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if k not in drop_env}
    # Concurrent commands share two cores: one thread each.
    env['OMP_NUM_THREADS'] = '1'
    return subprocess.run([sys.executable, TOOL, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def run_all(commands: Dict[str, Tuple[List[str], str, Tuple[str, ...]]]
            ) -> Dict[str, subprocess.CompletedProcess]:
    """Run named commands concurrently; returns each one's result."""
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {
            name: pool.submit(run_cli, args, cwd, drop)
            for name, (args, cwd, drop) in commands.items()
        }
        return {name: future.result() for name, future in futures.items()}


def read_rgb(path: str) -> np.ndarray:
    image = cv2.imread(path)
    assert image is not None, f'{path} was not written'
    return image[..., ::-1]


def layout(num: int, tile_hw: Tuple[int, int]) -> Tuple[int, int, int]:
    """(height, width, cols) of compose_panels' picture of num panels,
    without the colour bar below it."""
    cols = math.ceil(math.sqrt(num))
    blank = np.zeros((*tile_hw, 3), np.uint8)
    picture = compose_panels([('t', blank)] * num)
    return picture.shape[0], picture.shape[1], cols


def without_colour_bar(picture: np.ndarray) -> np.ndarray:
    """The picture above its colour bar (which every overview has)."""
    return picture[:-colour_bar_height(picture.shape[1])]


def filled_cells(picture: np.ndarray, rows: int, cols: int,
                 title: int = 40) -> int:
    """Grid cells holding a picture (not the plain white background)."""
    height, width = picture.shape[:2]
    cell_h, cell_w = height // rows, width // cols
    count = 0
    for r in range(rows):
        for c in range(cols):
            # Past the title band, inside the cell's margins.
            cell = picture[r * cell_h + title:(r + 1) * cell_h - 8,
                           c * cell_w + 8:(c + 1) * cell_w - 8]
            count += int(cell.std() > 10)
    return count


def assert_panels(picture: np.ndarray, num: int,
                  tile_hw: Tuple[int, int] = IMAGE_HW,
                  colour_bar: bool = True) -> None:
    """The picture is compose_panels' layout of exactly num panels, above
    a colour bar unless every panel is RGB (PCA)."""
    height, width, cols = layout(num, tile_hw)
    if colour_bar:
        picture = without_colour_bar(picture)
    assert picture.shape[:2] == (height, width)
    rows = math.ceil(num / cols)
    assert filled_cells(picture, rows, cols) == num


def checked(result: subprocess.CompletedProcess,
            code: int = 0) -> subprocess.CompletedProcess:
    assert result.returncode == code, (
        f'exit {result.returncode}\n{result.stdout[-3000:]}\n'
        f'{result.stderr[-3000:]}')
    return result


# -- checkpoints saved from randomly initialised models --
def save_random_checkpoints(config: str, folder: str,
                            epochs: Sequence[int]) -> List[str]:
    """Save the model of ``config``, perturbed more at later epochs.

    The perturbation stands in for training: later checkpoints have
    different (and larger) activations.
    """
    model = build_model(load_config(resolve_config(config)), 'cpu')
    base = {k: v.clone() for k, v in model.state_dict().items()}
    os.makedirs(folder, exist_ok=True)
    paths = []
    for epoch in epochs:
        torch.manual_seed(epoch)
        state = {}
        for key, value in base.items():
            if value.is_floating_point() and value.numel() > 1:
                noise = torch.randn_like(value) * value.std()
                value = value * (1 + 0.1 * epoch) + 0.3 * noise
            state[key] = value
        path = osp.join(folder, f'epoch_{epoch}.pth')
        save_checkpoint(
            dict(meta=dict(epoch=epoch,
                           dataset_meta=dict(classes=('a', 'b'))),
                 state_dict=state), path)
        paths.append(path)
    return paths


@pytest.fixture(scope='session')
def yolo_work_dir(tmp_path_factory) -> str:
    """A work_dir with epoch_1, epoch_2 and epoch_10 of YOLOv5-s."""
    folder = str(tmp_path_factory.mktemp('work_dirs') / 'yolov5_s')
    save_random_checkpoints(YOLO, folder, (1, 2, 10))
    return folder


@pytest.fixture(scope='session')
def yolo_ckpt(yolo_work_dir) -> str:
    return osp.join(yolo_work_dir, 'epoch_1.pth')


# -- the five examples of MMYOLO's documentation, and --preview-model --
@pytest.fixture(scope='module')
def seed_runs(tmp_path_factory, probe_image_path, yolo_ckpt):
    # As MMYOLO's documentation writes them, relative to an mmyolo checkout;
    # the CLI finds them in the installed mmyolo.
    config = 'configs/yolov5/yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py'
    typo = 'configs/yolov5/yolov5_s-v61_fast_syncbn_8xb16-300e_coco.py'
    img = probe_image_path
    cwd = {}
    for name in ('ex1', 'ex2', 'ex3', 'ex3_fixed', 'ex4', 'ex5', 'preview',
                 'unknown_layer'):
        cwd[name] = str(tmp_path_factory.mktemp(name))
    device = ['--device', 'cpu']
    commands = {
        'ex1': [img, config, yolo_ckpt, '--target-layers', 'backbone',
                '--channel-reduction', 'select_max'],
        'ex2': [img, config, yolo_ckpt, '--target-layers', 'neck',
                '--channel-reduction', 'squeeze_mean'],
        'ex3': [img, typo, yolo_ckpt, '--target-layers', 'backbone.stage4',
                'backbone.stage3', '--channel-reduction', 'squeeze_mean'],
        'ex3_fixed': [img, config, yolo_ckpt, '--target-layers',
                      'backbone.stage4', 'backbone.stage3',
                      '--channel-reduction', 'squeeze_mean'],
        'ex4': [img, config, yolo_ckpt, '--target-layers',
                'backbone.stage3', 'backbone.stage4', '--channel-reduction',
                'None', '--topk', '3', '--arrangement', '2', '2',
                '--out-file', '4.jpg'],
        'ex5': [img, config, yolo_ckpt, '--target-layers', 'backbone',
                '--channel-reduction', 'select_max', '--out-file',
                'featmap_backbone'],
        'preview': [img, YOLO, yolo_ckpt, '--preview-model'],
        'unknown_layer': [img, YOLO, yolo_ckpt, '--target-layers',
                          'backbone.stage4', 'backbone.stag3'],
    }
    results = run_all({
        name: (args + device, cwd[name], ())
        for name, args in commands.items()
    })
    return {name: (results[name], cwd[name]) for name in commands}


def test_example_1_backbone_select_max_three_panels(seed_runs):
    result, cwd = seed_runs['ex1']
    checked(result)
    # Without --out-file the picture goes to ./output, named as the image.
    picture = read_rgb(osp.join(cwd, 'output', 'grace_hopper.jpg'))
    assert_panels(picture, 3)


def test_example_2_neck_squeeze_mean_three_panels(seed_runs):
    result, cwd = seed_runs['ex2']
    checked(result)
    assert_panels(read_rgb(osp.join(cwd, 'output', 'grace_hopper.jpg')), 3)


def test_example_3_config_typo_suggests_the_real_config(seed_runs):
    result, cwd = seed_runs['ex3']
    checked(result, 2)
    assert 'usage:' in result.stderr
    message = result.stderr.splitlines()[-1]
    assert 'yolov5_s-v61_fast_syncbn_8xb16-300e_coco.py' in message
    assert 'does not exist' in message
    suggestions = message.split('Did you mean:')[1]
    first = suggestions.split(',')[0].strip()
    assert first.endswith('yolov5_s-v61_syncbn_fast_8xb16-300e_coco.py')
    assert not osp.exists(osp.join(cwd, 'output'))


def test_example_3_with_the_real_config_two_panels(seed_runs):
    result, cwd = seed_runs['ex3_fixed']
    checked(result)
    assert_panels(read_rgb(osp.join(cwd, 'output', 'grace_hopper.jpg')), 2)


def test_example_4_top3_channels_in_2x2_grids(seed_runs):
    result, cwd = seed_runs['ex4']
    checked(result)
    grid_hw = (IMAGE_HW[0] * 2, IMAGE_HW[1] * 2)
    picture = read_rgb(osp.join(cwd, '4.jpg'))
    assert_panels(picture, 2, grid_hw)
    # Each layer's grid: 3 channels in a 2x2 arrangement, one cell blank.
    height, width, cols = layout(2, grid_hw)
    cell_w = (width - 4) // cols
    for index in range(2):
        top = height - 4 - grid_hw[0]
        left = 4 + index * cell_w
        grid = picture[top:top + grid_hw[0], left:left + grid_hw[1]]
        assert filled_cells(grid, 2, 2, title=30) == 3
        assert grid[grid_hw[0] // 2 + 20:, grid_hw[1] // 2 + 20:].min() > 200


def test_example_5_out_file_gets_an_extension(seed_runs):
    result, cwd = seed_runs['ex5']
    checked(result)
    assert os.listdir(cwd) == ['featmap_backbone.jpg']
    picture = read_rgb(osp.join(cwd, 'featmap_backbone.jpg'))
    # The same command as example 1: the same picture.
    same = read_rgb(
        osp.join(seed_runs['ex1'][1], 'output', 'grace_hopper.jpg'))
    assert picture.shape == same.shape
    assert np.abs(picture.astype(int) - same).mean() < 1


def test_preview_model_lists_layers_with_output_shapes(seed_runs):
    result, cwd = seed_runs['preview']
    checked(result)
    lines = result.stdout.splitlines()

    def line_of(name: str) -> str:
        return next(line for line in lines if line.split()[0] == name)

    assert '(1, 3, 640, 640)' in lines[0]
    assert 'YOLOv5CSPDarknet' in line_of('backbone')
    assert line_of('backbone[0]').endswith('(1, 128, 80, 80)')
    assert line_of('backbone[2]').endswith('(1, 512, 20, 20)')
    assert line_of('backbone.stage4').endswith('(1, 512, 20, 20)')
    assert line_of('neck[1]').endswith('(1, 256, 40, 40)')
    assert line_of('bbox_head.head_module.convs_pred.0').endswith(
        '(1, 255, 80, 80)')
    assert 'not called by forward' in line_of('data_preprocessor')
    assert os.listdir(cwd) == []  # nothing drawn


def test_unknown_layer_names_the_closest_layers(seed_runs):
    result, cwd = seed_runs['unknown_layer']
    checked(result, 2)
    assert "Unknown layer 'backbone.stag3'" in result.stderr
    assert 'Closest names: backbone.stage3' in result.stderr
    assert os.listdir(cwd) == []


# -- bad commands fail before the model is built --
def test_usage_errors_exit_2_with_a_clear_message(tmp_path, probe_image_path,
                                                  yolo_ckpt):
    img = probe_image_path
    cwd = tmp_path / 'cwd'
    cwd.mkdir()
    second = str(tmp_path / 'second.jpg')
    shutil.copy(img, second)
    missing_img = str(tmp_path / 'dog.jpg')
    missing_ckpt = osp.join(osp.dirname(yolo_ckpt), 'epoch_3.pth')
    cases = {
        'missing image': ([missing_img, YOLO, yolo_ckpt],
                          f"IMG '{missing_img}' does not exist"),
        'missing checkpoint': ([img, YOLO, missing_ckpt],
                               f'Did you mean: {yolo_ckpt}'),
        'missing config': ([img, 'configs/yolov5/yolov5_s-v61_syncbn_fast'
                            '_8xb16-300e_cocoo.py', yolo_ckpt],
                           'Did you mean: mmyolo::yolov5/yolov5_s-v61_'
                           'syncbn_fast_8xb16-300e_coco.py'),
        'bad reduction': ([img, YOLO, yolo_ckpt, '--channel-reduction',
                           'max'], "invalid choice: 'max' (choose from "
                          "'select_max', 'squeeze_mean', 'None'"),
        'topk too large': ([img, YOLO, yolo_ckpt, '--channel-reduction',
                            'None', '--topk', '5'],
                           '--arrangement (2, 2) holds 4 tiles, fewer than '
                           '--topk=5'),
        'bad value range': ([img, YOLO, yolo_ckpt, '--value-range', 'max'],
                            'expected one of per_image, union, last'),
        'out-file for two images': ([img, second, YOLO, yolo_ckpt,
                                     '--out-file', 'x.jpg'],
                                    '--out-file names one picture but 2 '
                                    'images are given'),
        'glob matching nothing': ([img, YOLO, str(tmp_path / 'epoch_*.pth')],
                                  'matches no file'),
    }
    if not torch.cuda.is_available():
        cases['no cuda'] = ([img, YOLO, yolo_ckpt, '--device', 'cuda:0'],
                            'CUDA is not available on this machine')
    results = run_all({
        name: (args, str(cwd), ())
        for name, (args, _) in cases.items()
    })
    for name, (_, expected) in cases.items():
        result = results[name]
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.startswith('usage:'), (name, result.stderr)
        assert expected in result.stderr, (name, result.stderr)
    assert os.listdir(cwd) == []


# -- checkpoint series, folders, and models of mmdet and mmseg --
@pytest.fixture(scope='session')
def other_checkpoints(tmp_path_factory) -> Dict[str, str]:
    folder = tmp_path_factory.mktemp('other_models')
    return {
        name: save_random_checkpoints(config, str(folder / name), (1, ))[0]
        for name, config in (('retinanet', RETINANET), ('detr', DETR),
                             ('fast_scnn', FAST_SCNN))
    }


@pytest.fixture(scope='module')
def more_runs(tmp_path_factory, probe_image_path, yolo_work_dir, yolo_ckpt,
              other_checkpoints):
    img = probe_image_path
    images = tmp_path_factory.mktemp('images')
    # Same file names in different sub-folders, and one broken file.
    for sub in ('a', osp.join('b', 'c')):
        os.makedirs(images / sub)
        shutil.copy(img, images / sub / 'hopper.jpg')
    flipped = cv2.flip(cv2.imread(img), 1)
    cv2.imwrite(str(images / 'b' / 'c' / 'hopper.jpg'), flipped)
    (images / 'b' / 'broken.png').write_bytes(b'not an image')
    cwd = {name: str(tmp_path_factory.mktemp(name))
           for name in ('series', 'folder', 'retinanet', 'detr', 'mmseg')}
    # Halved test scales keep the detectors and the segmentor quick.
    small = ['--cfg-options', 'test_dataloader.dataset.pipeline.1.scale='
             '(667,400)']
    commands = {
        'series': ([img, YOLO, osp.join(yolo_work_dir, 'epoch_*.pth'),
                    '--target-layers', 'backbone', '--out-dir', 'maps'],
                   ()),
        'folder': ([str(images), YOLO, yolo_ckpt, '--show',
                    '--target-layers', 'neck.out_layers.*'],
                   ('DISPLAY', 'WAYLAND_DISPLAY')),
        'retinanet': ([img, RETINANET, other_checkpoints['retinanet'],
                       '--target-layers', 'neck', '--score-thr', '0.05',
                       '--out-file', 'retinanet.png'] + small, ()),
        'detr': ([img, DETR, other_checkpoints['detr'], '--target-layers',
                  'encoder', 'encoder.layers.[05]', '--no-pred',
                  '--out-file', 'detr.png'] + small, ()),
        'mmseg': ([img, FAST_SCNN, other_checkpoints['fast_scnn'],
                   '--target-layers', 'backbone', '--channel-reduction',
                   'pca', '--out-file', 'seg.png', '--cfg-options',
                   'test_dataloader.dataset.pipeline.1.scale=(1024,512)'],
                  ()),
    }
    results = run_all({
        name: (args + ['--device', 'cpu'], cwd[name], drop)
        for name, (args, drop) in commands.items()
    })
    return {name: (results[name], cwd[name]) for name in commands}


def test_checkpoint_series_glob_ordered_by_epoch(more_runs, yolo_work_dir):
    result, cwd = more_runs['series']
    checked(result)
    folder = osp.join(cwd, 'maps', 'grace_hopper')
    assert sorted(os.listdir(folder)) == [
        'epoch_1.jpg', 'epoch_10.jpg', 'epoch_2.jpg', 'series.gif',
        'series_ranges.json', 'series_strip.jpg'
    ]
    frames = [
        read_rgb(osp.join(folder, f'epoch_{e}.jpg')) for e in (1, 2, 10)
    ]
    # Each frame: the 3 backbone maps under the checkpoint's name.
    assert all(f.shape == frames[0].shape for f in frames)
    # Maps differ between checkpoints (the same checkpoint drawn twice
    # gives identical files; JPEG noise alone stays far below this).
    for a, b in ((0, 1), (1, 2), (0, 2)):
        diff = np.abs(frames[a].astype(int) - frames[b]).mean()
        assert diff > 2, (a, b, diff)
    # The strip: checkpoints as columns, the 3 layers as rows.
    strip = without_colour_bar(
        read_rgb(osp.join(folder, 'series_strip.jpg')))
    gap, title = 4, 40
    cols, rows = 3, 3
    assert strip.shape[1] == cols * (IMAGE_HW[1] + gap) + gap
    assert filled_cells(strip, rows, cols, title) == 9
    # The GIF: one frame per checkpoint, in epoch order (1, 2, 10, not
    # the lexical 1, 10, 2).
    from PIL import Image, ImageSequence
    gif = Image.open(osp.join(folder, 'series.gif'))
    assert gif.n_frames == 3
    assert gif.info['loop'] == 0
    for index, frame in enumerate(ImageSequence.Iterator(gif)):
        frame = np.asarray(frame.convert('RGB')).astype(int)
        errors = [
            np.abs(cv2.resize(f, frame.shape[1::-1]) - frame).mean()
            for f in frames
        ]
        assert int(np.argmin(errors)) == index, errors


def test_series_union_range_is_the_union_of_every_checkpoints_maps(
        more_runs, yolo_work_dir, probe_image_path):
    """The range the series was drawn with, computed again from the maps:
    per checkpoint the min and max of each map over the image content,
    then their union."""
    import json
    _, cwd = more_runs['series']
    with open(osp.join(cwd, 'maps', 'grace_hopper',
                       'series_ranges.json')) as f:
        used = json.load(f)
    cfg = load_config(resolve_config(YOLO))
    model = build_model(cfg, 'cpu')
    pipeline = FeatmapOrchestrator(['backbone'], DrawOptions(draw_pred=False))
    probe = ProbeBuilder(cfg).build([probe_image_path], model)[0]
    expected: Dict[str, List[float]] = {}
    for epoch in (1, 2, 10):
        load_weights(model, osp.join(yolo_work_dir, f'epoch_{epoch}.pth'))
        _, features, _ = pipeline.capture(model, [probe])[0]
        for item in pipeline.reduce(probe, features).layers:
            maps = item.reduced.maps.numpy()
            y0, y1, x0, x1 = content_region(probe.meta, maps.shape[1:])
            content = maps[:, math.floor(y0):math.ceil(y1),
                           math.floor(x0):math.ceil(x1)]
            own = [float(content.min()), float(content.max())]
            assert used[item.layer]['checkpoints'][f'epoch_{epoch}'] == (
                pytest.approx(own, rel=1e-5))
            low, high = expected.get(item.layer, own)
            expected[item.layer] = [min(low, own[0]), max(high, own[1])]
    assert sorted(used) == sorted(expected) == [
        'backbone[0]', 'backbone[1]', 'backbone[2]'
    ]
    for layer, value_range in expected.items():
        assert used[layer]['shared'] == pytest.approx(value_range, rel=1e-5)
    # The checkpoints differ, so the union is wider than some of them.
    assert any(used[layer]['checkpoints'][label] != used[layer]['shared']
               for layer in used for label in used[layer]['checkpoints'])


def exact_levels(picture: np.ndarray, colormap: str = 'jet') -> np.ndarray:
    """Levels of the pixels drawn exactly in ``colormap``'s colours (the
    heat map with --alpha 1), leaving out titles, margins and the colour
    bar."""
    picture = without_colour_bar(picture[:-4])  # the frame's margin
    lut = get_lut(colormap)[:, 0].astype(np.int64)
    codes = lut[:, 0] << 16 | lut[:, 1] << 8 | lut[:, 2]
    level_of = dict(zip(codes.tolist(), range(256)))
    flat = picture.reshape(-1, 3).astype(np.int64)
    pixels = (flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]).tolist()
    return np.array([level_of[p] for p in pixels if p in level_of])


def test_series_of_1x_4x_16x_activations_shares_the_largest_scale(
        tmp_path, yolo_ckpt, probe_image_path):
    """Three checkpoints whose drawn layer's activations are exactly 1x,
    4x and 16x: on the shared range the 16x frame uses the whole scale
    without saturating, and the weaker ones are darker in proportion."""
    checkpoint = torch.load(yolo_ckpt, map_location='cpu',
                            weights_only=False)
    for factor in (1, 4, 16):
        state = dict(checkpoint['state_dict'])
        # A conv without bias (a BatchNorm follows): output x factor.
        state['backbone.stem.conv.weight'] = (
            state['backbone.stem.conv.weight'] * factor)
        torch.save(dict(checkpoint, state_dict=state),
                   str(tmp_path / f'epoch_{factor}.pth'))
    result = checked(run_cli([
        probe_image_path, YOLO, str(tmp_path / 'epoch_*.pth'),
        '--target-layers', 'backbone.stem.conv', '--channel-reduction',
        'norm', '--alpha', '1', '--no-pred', '--out-file', 'series.png',
        '--device', 'cpu'
    ], str(tmp_path)))
    assert 'Wrote' in result.stdout + result.stderr
    levels = {
        factor: exact_levels(read_rgb(str(tmp_path /
                                          f'series_epoch_{factor}.png')))
        for factor in (1, 4, 16)
    }
    assert all(len(v) > 0.5 * IMAGE_HW[0] * IMAGE_HW[1]
               for v in levels.values())
    strongest = levels[16]
    assert (strongest == 255).mean() < 0.01  # not saturated
    assert np.percentile(strongest, 99) > 128  # uses the upper scale
    means = {factor: float(v.mean()) for factor, v in levels.items()}
    assert means[1] < means[4] < means[16], means
    # 'norm' is >= 0 and scales exactly: a map of a quarter (a sixteenth)
    # of the values stays in the lower quarter (sixteenth) of the scale.
    assert np.percentile(levels[4], 99) < 255 * 0.3
    assert np.percentile(levels[1], 99) < 255 / 8


def test_folder_mirrors_sub_folders_and_reports_broken_files(more_runs):
    result, cwd = more_runs['folder']
    # The broken file makes the run fail (exit 1), after the others.
    checked(result, 1)
    assert 'broken.png' in result.stderr.splitlines()[-1]
    assert 'usage:' not in result.stderr
    out = osp.join(cwd, 'output')
    written = sorted(
        osp.relpath(osp.join(root, f), out)
        for root, _, files in os.walk(out) for f in files)
    assert written == ['a/hopper.jpg', 'b/c/hopper.jpg']
    a = read_rgb(osp.join(out, 'a', 'hopper.jpg'))
    b = read_rgb(osp.join(out, 'b', 'c', 'hopper.jpg'))
    assert_panels(a, 3)
    assert np.abs(a.astype(int) - b).mean() > 5  # the flipped image
    # --show without a display: a warning, and the files are written.
    assert 'no display is available' in result.stdout + result.stderr
    assert '3/3' in result.stdout  # the progress bar


def test_mmdet_fpn_detector(more_runs):
    result, cwd = more_runs['retinanet']
    checked(result)
    # RetinaNet's FPN has 5 levels; maps keep the original image size.
    assert_panels(read_rgb(osp.join(cwd, 'retinanet.png')), 5)


def test_detr_encoder_tokens_drawn_as_maps(more_runs):
    result, cwd = more_runs['detr']
    checked(result)
    assert 'is not drawn' not in result.stdout + result.stderr
    assert_panels(read_rgb(osp.join(cwd, 'detr.png')), 3)


def test_detr_encoder_tokens_fold_into_the_feature_grid(
        other_checkpoints, probe_image_path):
    # What the CLI does with DETR's (1, N, C) encoder output, checked on
    # the maps themselves: they take the grid of the encoder's input.
    cfg = load_config(resolve_config(DETR),
                      {'test_dataloader.dataset.pipeline.1.scale': (667,
                                                                    400)})
    model = build_model(cfg, 'cpu')
    load_weights(model, other_checkpoints['detr'])
    probe = ProbeBuilder(cfg).build([probe_image_path], model)[0]
    pipeline = FeatmapOrchestrator(['neck', 'encoder'],
                                   DrawOptions(draw_pred=False))
    (_, features, _), = pipeline.capture(model, [probe])
    tokens = features['encoder']
    assert tokens.ndim == 3 and tokens.shape[0] == 1
    maps = pipeline.reduce(probe, features)
    reduced = {item.layer: item.reduced for item in maps.layers}
    assert reduced['encoder'].hw == reduced['neck[0]'].hw
    assert reduced['encoder'].hw[0] * reduced['encoder'].hw[1] == (
        tokens.shape[1])


def test_mmseg_syncbn_config_runs_on_cpu(more_runs):
    result, cwd = more_runs['mmseg']
    checked(result)
    assert_panels(read_rgb(osp.join(cwd, 'seg.png')), 3, colour_bar=False)


def test_console_module_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'mmfeatvis.cli', '--help'], cwd=REPO,
        capture_output=True, text=True, timeout=120)
    checked(result)
    assert result.stdout.startswith('usage: mmfeatvis [options] IMG')
    for option in ('--target-layers', '--preview-model', '--channel-reduction',
                   '--topk', '--arrangement', '--out-dir', '--out-file',
                   '--device', '--score-thr', '--no-pred', '--show',
                   '--cfg-options', '--value-range', '--checkpoints'):
        assert option in result.stdout


# -- checkpoints that do not fit, and pictures that cannot be written --
YOLO_N = 'mmyolo::yolov5/yolov5_n-v61_syncbn_fast_8xb16-300e_coco.py'


def _mount(*args) -> None:
    done = subprocess.run(['mount', *args], capture_output=True, text=True)
    assert done.returncode == 0, (
        f'mount {" ".join(args)} failed ({done.stderr.strip()}): these '
        'tests need root with the right to mount, as in CI')


@pytest.fixture(scope='module')
def fault_runs(tmp_path_factory, probe_image_path, yolo_ckpt):
    img = probe_image_path
    cwd = {name: str(tmp_path_factory.mktemp(name))
           for name in ('other_size', 'other_head', 'not_a_dir', 'full',
                        'read_only')}
    with open(osp.join(cwd['not_a_dir'], 'notes.txt'), 'w') as f:
        f.write('a file, not a folder')
    full = osp.join(cwd['full'], 'disk')
    os.makedirs(full)
    _mount('-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', full)
    source = osp.join(cwd['read_only'], 'source')
    read_only = osp.join(cwd['read_only'], 'ro')
    os.makedirs(source)
    os.makedirs(read_only)
    _mount('--bind', source, read_only)
    _mount('-o', 'remount,ro,bind', read_only)
    layers = ['--target-layers', 'backbone', '--device', 'cpu']
    commands = {
        # YOLOv5-s weights with the YOLOv5-n config.
        'other_size': ([img, YOLO_N, yolo_ckpt] + layers, ()),
        # The same model with another number of classes: only the head's
        # prediction convolutions differ, after the drawn backbone.
        'other_head': ([img, YOLO, yolo_ckpt, '--cfg-options',
                        'model.bbox_head.head_module.num_classes=3'] + layers,
                       ()),
        'not_a_dir': ([img, YOLO, yolo_ckpt, '--out-dir', 'notes.txt/maps']
                      + layers, ()),
        'full': ([img, YOLO, yolo_ckpt, '--out-dir', full] + layers, ()),
        'read_only': ([img, YOLO, yolo_ckpt, '--out-file',
                       osp.join(read_only, 'maps.jpg')] + layers, ()),
    }
    try:
        results = run_all({
            name: (args, cwd[name], drop)
            for name, (args, drop) in commands.items()
        })
        listed = {'full': sorted(os.listdir(full)),
                  'read_only': sorted(os.listdir(read_only))}
    finally:
        subprocess.run(['umount', full], check=True)
        subprocess.run(['umount', read_only], check=True)
    return {name: (results[name], cwd[name], listed.get(name))
            for name in commands}


@pytest.mark.slow
def test_a_checkpoint_of_another_model_size_is_refused(fault_runs):
    result, cwd, _ = fault_runs['other_size']
    checked(result, 1)
    assert 'does not fit the layers drawn' in result.stderr
    # It names a tensor with both shapes.
    assert 'backbone.stem.conv.weight (checkpoint (32, 3, 6, 6), model ' \
        '(16, 3, 6, 6))' in result.stderr
    assert not osp.exists(osp.join(cwd, 'output', 'grace_hopper.jpg'))


@pytest.mark.slow
def test_a_head_with_other_classes_warns_and_draws(fault_runs):
    result, cwd, _ = fault_runs['other_head']
    checked(result)
    output = result.stdout + result.stderr
    assert 'after the drawn layers' in output
    assert 'bbox_head.head_module.convs_pred' in output
    assert_panels(read_rgb(osp.join(cwd, 'output', 'grace_hopper.jpg')), 3)


@pytest.mark.slow
def test_unwritable_outputs_are_named_with_the_reason(fault_runs):
    result, _, _ = fault_runs['not_a_dir']
    checked(result, 2)
    assert "--out-dir 'notes.txt/maps'" in result.stderr
    assert 'Not a directory' in result.stderr
    result, _, listed = fault_runs['read_only']
    checked(result, 2)
    assert 'Read-only file system' in result.stderr
    assert listed == []
    # A disk that fills while writing: the reason, and no partial file.
    result, _, listed = fault_runs['full']
    checked(result, 1)
    assert 'cannot write' in result.stderr
    assert 'No space left on device' in result.stderr
    assert listed == []


# -- --cam: class activation maps, MMYOLO's boxam_vis_demo options --
@pytest.fixture(scope='module')
def cam_runs(tmp_path_factory, probe_image_path, yolo_work_dir, yolo_ckpt,
             other_checkpoints):
    img = probe_image_path
    cwd = {
        name: str(tmp_path_factory.mktemp(name))
        for name in ('one', 'series', 'norm_single', 'retinanet',
                     'scorecam', 'no_gradient', 'bad_topk', 'no_box')
    }
    # Random weights score every box low: explain what there is.
    any_box = ['--score-thr', '0']
    commands = {
        'one': [img, YOLO, yolo_ckpt, '--cam', 'layercam', '--topk', '2',
                '--out-file', 'cam.png'] + any_box,
        'series': [img, YOLO, osp.join(yolo_work_dir, 'epoch_*.pth'),
                   '--cam', 'gradcam', '--topk', '1', '--out-dir', 'cams'
                   ] + any_box,
        'norm_single': [img, YOLO, yolo_ckpt, '--cam', 'hirescam',
                        '--norm-in-bbox', '--cam-layout', 'single',
                        '--topk', '3', '--out-file', 'single.png'] + any_box,
        'retinanet': [img, RETINANET, other_checkpoints['retinanet'],
                      '--cam', 'eigencam', '--out-file', 'retinanet.png',
                      '--cfg-options', 'test_dataloader.dataset.pipeline.1.'
                      'scale=(667,400)'] + any_box,
        'scorecam': [img, YOLO, yolo_ckpt, '--cam', 'scorecam'],
        'no_gradient': [img, YOLO, yolo_ckpt, '--cam', 'gradcam',
                        '--target-layers', 'data_preprocessor'],
        'bad_topk': [img, YOLO, yolo_ckpt, '--cam', 'layercam', '--topk',
                     '0'],
        'no_box': [img, YOLO, yolo_ckpt, '--cam', 'layercam',
                   '--score-thr', '0.99', '--out-file', 'none.png'],
    }
    results = run_all({
        name: (args + ['--device', 'cpu'], cwd[name], ())
        for name, args in commands.items()
    })
    return {name: (results[name], cwd[name]) for name in commands}


def assert_cam_panels(picture: np.ndarray, num: int) -> None:
    """The picture is ``num`` titled panels of the photo, in
    compose_panels' layout, above a colour bar."""
    height, width, _ = layout(num, IMAGE_HW)
    assert picture.shape[:2] == (height + colour_bar_height(width), width)


def test_cam_one_panel_per_box_over_the_image(cam_runs):
    result, cwd = cam_runs['one']
    checked(result)
    assert 'Drawing layercam CAMs of dense detector targets at neck' in (
        result.stdout + result.stderr)
    # Two panels of the 600x512 photo side by side, above a colour bar.
    assert_cam_panels(read_rgb(osp.join(cwd, 'cam.png')), 2)


def test_cam_series_strip_and_gif(cam_runs):
    result, cwd = cam_runs['series']
    checked(result)
    assert sorted(os.listdir(osp.join(cwd, 'cams', 'grace_hopper'))) == [
        'epoch_1.jpg', 'epoch_10.jpg', 'epoch_2.jpg', 'series.gif',
        'series_strip.jpg'
    ]
    strip = read_rgb(osp.join(cwd, 'cams', 'grace_hopper',
                              'series_strip.jpg'))
    # The three checkpoints' pictures in a row.
    assert 3 * IMAGE_HW[1] < strip.shape[1] < 3 * IMAGE_HW[1] + 80


def test_cam_normalised_in_boxes_all_in_one_panel(cam_runs):
    result, cwd = cam_runs['norm_single']
    checked(result)
    assert_cam_panels(read_rgb(osp.join(cwd, 'single.png')), 1)


def test_cam_of_an_mmdet_detector(cam_runs):
    result, cwd = cam_runs['retinanet']
    checked(result)
    output = result.stdout + result.stderr
    assert 'eigencam CAMs of dense detector targets' in output
    assert_cam_panels(read_rgb(osp.join(cwd, 'retinanet.png')), 3)


def test_cam_with_no_box_says_so(cam_runs):
    result, cwd = cam_runs['no_box']
    checked(result)
    output = result.stdout + result.stderr
    assert 'no box above 0.99, nothing to explain' in output
    picture = read_rgb(osp.join(cwd, 'none.png'))
    height, width, _ = layout(1, IMAGE_HW)
    assert picture.shape[:2] == (height, width)  # the photo, no colour bar


def test_cam_bad_options_exit_2(cam_runs):
    for name, expected in (
            ('scorecam', "argument --cam: invalid choice: 'scorecam' "
             "(choose from 'gradcam', 'gradcam++', 'layercam'"),
            ('no_gradient', '--cam gradcam: cam: none of the target layers '
             'ran in the forward pass'),
            ('bad_topk', '--topk must be a positive integer, got 0')):
        result, cwd = cam_runs[name]
        checked(result, 2)
        assert expected in result.stderr, (name, result.stderr)
        assert os.listdir(cwd) == []
