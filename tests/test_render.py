"""Tests of the host-side stage: colormaps, alignment, grids, panels."""
import cv2
import numpy as np
import pytest

from mmfeatvis.probe import content_region
from mmfeatvis.render import (apply_colormap, colormap_names, compose_panels,
                              crop_to_content, get_lut, tile_grid, to_uint8,
                              warp_to_image)

# mmyolo LetterResize of a 300x400 image to 640x640: scaled by 1.6 to
# 480x640 and padded 80 rows top and bottom (img_shape includes padding).
YOLO_META = dict(
    ori_shape=(300, 400),
    img_shape=(640, 640),
    scale_factor=(1.6, 1.6),
    pad_param=np.array([80., 80., 0., 0.], dtype=np.float32),
    batch_input_shape=(640, 640))
# mmdet Resize(1333, 800, keep_ratio) of a 427x640 image, then the data
# preprocessor pads bottom/right to a multiple of 32.
DET_META = dict(
    ori_shape=(427, 640),
    img_shape=(800, 1199),
    scale_factor=(1199 / 640, 800 / 427),
    pad_shape=(800, 1216),
    batch_input_shape=(800, 1216))


def _box_of(mask):
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _feature_map_with_box(meta, feat_hw, box, scale, offset):
    """Map whose cells are 1 where their centre shows the original-image
    box (y0, y1, x0, x1); scale/offset give network = ori * scale + offset.
    """
    sy = meta['batch_input_shape'][0] / feat_hw[0]
    sx = meta['batch_input_shape'][1] / feat_hw[1]
    cy = ((np.arange(feat_hw[0]) + 0.5) * sy - offset[0]) / scale[0]
    cx = ((np.arange(feat_hw[1]) + 0.5) * sx - offset[1]) / scale[1]
    inside_y = (cy >= box[0]) & (cy < box[1])
    inside_x = (cx >= box[2]) & (cx < box[3])
    return (inside_y[:, None] & inside_x[None]).astype(np.float32)


# ---------------------------------------------------------------- colormap
def test_lut_matches_opencv_jet_in_rgb():
    ramp = np.arange(256, dtype=np.uint8)[:, None]
    bgr = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
    assert np.array_equal(get_lut('JeT'), bgr[:, :, ::-1])
    values = np.random.default_rng(0).integers(0, 256, (7, 9), np.uint8)
    assert np.array_equal(
        apply_colormap(values, 'viridis'),
        cv2.cvtColor(
            cv2.applyColorMap(values, cv2.COLORMAP_VIRIDIS),
            cv2.COLOR_BGR2RGB))


def test_unknown_colormap_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_lut('jett')
    assert 'jet' in str(err.value) and 'viridis' in str(err.value)
    assert 'turbo' in colormap_names()


def test_to_uint8_minmax_truncates_and_fixed_range_clips():
    values = np.array([[0., 0.5, 1.0], [0.2, 0.999, 0.25]], np.float32)
    assert to_uint8(values).tolist() == [[0, 127, 255], [51, 254, 63]]
    fixed = to_uint8(values * 2 - 0.5, (0., 1.))
    assert fixed.tolist() == [[0, 127, 255], [0, 255, 0]]
    assert not to_uint8(np.full((2, 2), 3., np.float32)).any()


# --------------------------------------------------------------- alignment
def test_valid_region_letterbox_and_bottom_right_padding():
    assert content_region(YOLO_META, (80, 80)) == (10., 70., 0., 80.)
    y0, y1, x0, x1 = content_region(DET_META, (100, 152))
    assert (y0, y1, x0) == (0., 100., 0.)
    assert x1 == pytest.approx(1199 / 8)


def test_valid_region_accepts_data_sample_like_objects():

    class Sample:
        metainfo = YOLO_META

    assert content_region(Sample(), (20, 20)) == (2.5, 17.5, 0., 20.)


def test_crop_to_valid_shapes():
    yolo = np.arange(80 * 80).reshape(80, 80)
    cropped = crop_to_content(yolo, YOLO_META)
    assert cropped.shape == (60, 80) and cropped[0, 0] == yolo[10, 0]
    # Fractional borders round outwards: 2.5..17.5 -> rows 2..17.
    three = crop_to_content(np.zeros((20, 20, 3)), YOLO_META)
    assert three.shape == (16, 20, 3)
    assert crop_to_content(np.zeros((100, 152)), DET_META).shape == (100, 150)


def test_meta_without_shapes_rejected_and_without_img_shape_unpadded():
    with pytest.raises(ValueError, match='needs "img_shape".*scale'):
        crop_to_content(np.zeros((4, 4)), dict(scale_factor=(1., 1.)))
    only_ori = dict(ori_shape=(40, 80))
    assert content_region(only_ori, (4, 8)) == (0., 4., 0., 8.)


@pytest.mark.parametrize('feat_hw', [(80, 80), (40, 40)])
def test_warp_places_letterboxed_heat_on_original_pixels(feat_hw):
    box = (20, 120, 120, 260)  # y0, y1, x0, x1 in the 300x400 image
    fmap = _feature_map_with_box(YOLO_META, feat_hw, box, (1.6, 1.6),
                                 (80, 0))
    out = warp_to_image(fmap, YOLO_META)
    assert out.shape == (300, 400)
    stride = 640 / feat_hw[0] / 1.6  # one feature pixel in original pixels
    got = _box_of(out > 0.5)
    assert np.allclose(got, box, atol=stride / 2 + 1)
    # Stretching the padded map over the image, as mmengine does, misses.
    naive = cv2.resize(fmap, (400, 300))
    assert abs(_box_of(naive > 0.5)[0] - box[0]) > 25


def test_warp_places_heat_with_bottom_right_padding():
    box = (100, 200, 500, 620)
    scale = (800 / 427, 1199 / 640)
    fmap = _feature_map_with_box(DET_META, (100, 152), box, scale, (0, 0))
    out = warp_to_image(fmap, DET_META)
    assert out.shape == (427, 640)
    assert np.allclose(_box_of(out > 0.5), box, atol=8 / scale[1] / 2 + 1)
    # Output at another resolution keeps the same relative placement.
    half = warp_to_image(fmap, DET_META, (214, 320))
    assert np.allclose(_box_of(half > 0.5), np.array(box) / 2, atol=3)


# ------------------------------------------------------------------ layout
def test_tile_grid_geometry_and_white_empty_cells():
    tiles = [np.full((10, 20, 3), v, np.uint8) for v in (10, 20, 30)]
    grid = tile_grid(tiles, 2, 2)
    assert grid.shape == (20, 40, 3)
    assert (grid[:10, 20:] == 20).all() and (grid[10:, :20] == 30).all()
    assert (grid[10:, 20:] == 255).all()
    with pytest.raises(ValueError, match='do not fit a 1x2 grid'):
        tile_grid(tiles, 1, 2)


def test_tile_grid_labels_only_touch_top_left():
    tiles = [np.full((60, 200, 3), 128, np.uint8)]
    grid = tile_grid(tiles, 1, 1, labels=['channel: 7'])
    changed = (grid != 128).any(2)
    assert changed.any()
    assert not changed[30:].any() and not changed[:, 150:].any()


def test_compose_panels_keeps_every_panel_when_count_does_not_divide():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0),
               (0, 255, 255)]
    panels = [(f'layer{i}', np.full((40, 60, 3), c, np.uint8))
              for i, c in enumerate(colours)]
    out = compose_panels(panels, cols=2)
    flat = out.reshape(-1, 3)
    for colour in colours:
        assert (flat == colour).all(1).sum() >= 40 * 60 * 0.9
    # 3 rows of 2; a 4th row would be blank, 2 rows would drop a panel.
    assert out.shape[1] < 3 * 60 and 3 * 40 < out.shape[0] < 4 * 40 + 100


def test_compose_panels_mixed_sizes_and_grey():
    panels = [('a', np.zeros((100, 50, 3), np.uint8)),
              ('b', np.full((20, 80), 200, np.uint8)),
              ('c', np.full((64, 64, 3), 90, np.uint8))]
    out = compose_panels(panels)
    assert out.dtype == np.uint8 and out.ndim == 3
    assert (out == 200).all(2).sum() > 0 and (out == 90).all(2).sum() > 0
    # Default tile is the largest height and width: (100, 80).
    assert out.shape[1] == 2 * (80 + 4) + 4


def test_compose_panels_bad_input():
    with pytest.raises(ValueError, match='at least one panel'):
        compose_panels([])
    with pytest.raises(ValueError, match='panel 0 image must be a uint8'):
        compose_panels([('x', np.zeros((4, 4, 3), np.float32))])
    with pytest.raises(ValueError, match=r'\(title, image\) pair'):
        compose_panels([np.zeros((4, 4, 3), np.uint8)])


def test_a_range_title_tells_its_ends_apart():
    from mmfeatvis.render import format_range
    assert format_range(0.0, 5.291) == '0.00 to 5.29'
    assert format_range(1.2e-4, 3.4e-4) == '1.20e-04 to 3.40e-04'
    # A narrow range gets the digits it needs, not '0.01 to 0.01'.
    assert format_range(0.0093, 0.0107) == '0.009 to 0.011'
    low, high = format_range(8.921e-3, 8.925e-3).split(' to ')
    assert low != high and float(low) < float(high)
    assert format_range(2.0, 2.0) == '2.00 to 2.00'  # a dead map
