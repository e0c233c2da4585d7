"""A probe's CAMs drawn as users read them: the letterbox cut, the map on
the original image where the network saw it, boxes, a map scaled within
its box, a grid or one panel."""
import numpy as np

from mmfeatvis.probe import Probe
from mmfeatvis.reduce.cam import CamPanel, ProbeCams
from mmfeatvis.render import compose_panels, get_lut
from mmfeatvis.render.cam import normalized_in_boxes, render_cams
from mmfeatvis.render.layout import colour_bar_height

# A 200x100 (h x w) image letterboxed into a 64x64 input: scaled by 0.32
# to 64x32, 16 columns of padding left and right.
META = dict(ori_shape=(200, 100), img_shape=(64, 64),
            scale_factor=(0.32, 0.32), pad_param=[0, 0, 16, 16],
            batch_input_shape=(64, 64))


def _probe() -> Probe:
    return Probe('p', np.full((200, 100, 3), 128, np.uint8), {}, META)


def _panel(y: int, x: int, boxes=()) -> CamPanel:
    """A map at the input's 1/4 (16x16) with one hot feature pixel."""
    cam = np.zeros((16, 16), np.float32)
    cam[y, x] = 1.0
    return CamPanel(cam, 'target', list(boxes))


def _hottest(picture: np.ndarray) -> tuple:
    red = picture[..., 0].astype(int) - picture[..., 2].astype(int)
    return np.unravel_index(int(np.argmax(red)), red.shape)


def test_the_map_lies_where_the_network_saw_it():
    # Feature pixel (4, 6) covers input rows 16-20, columns 24-28, that is
    # image columns (24 - 16) / 0.32 = 25 to 37, rows 50 to 62.
    cams = ProbeCams(_probe(), 'layercam', [_panel(4, 6)])
    picture = render_cams(cams, alpha=1.0)
    title_h = compose_panels([('t', np.zeros((200, 100, 3), np.uint8))
                              ]).shape[0] - 200 - 8
    y, x = _hottest(picture[title_h + 4:title_h + 204, 4:104])
    assert 50 <= y <= 62 and 25 <= x <= 37
    # Nothing of the padding reaches the picture: a map hot only in the
    # left padding draws the whole image at the scale's low end.
    cams = ProbeCams(_probe(), 'layercam', [_panel(8, 1)])
    image = render_cams(cams, alpha=1.0)[title_h + 4:title_h + 204, 4:104]
    low = get_lut('jet')[0, 0]
    assert np.abs(image[:, 10:].astype(int) - low).max() <= 2


def test_boxes_are_drawn_and_the_map_can_be_scaled_within_its_box():
    box = ((40.0, 60.0, 80.0, 140.0), 1, 0.9)
    values = np.zeros((200, 100), np.float32)
    values[100, 50] = 0.2  # inside the box, weak
    values[10, 10] = 1.0  # outside, strong
    scaled = normalized_in_boxes(values, [box[0]])
    assert scaled[100, 50] == 1.0 and scaled[10, 10] == 0.0
    assert scaled[:60].max() == 0 and scaled[:, :40].max() == 0
    cams = ProbeCams(_probe(), 'layercam', [_panel(4, 6, [box])])
    plain = render_cams(cams, alpha=0.5, class_names=['a', 'dog'])
    inside = render_cams(cams, alpha=0.5, norm_in_box=True)
    assert plain.shape == inside.shape
    # The box outline (white under its colour) is drawn on the panel.
    assert (plain == 255).all(axis=-1).sum() > 200


def test_a_grid_of_targets_or_all_in_one_panel():
    panels = [_panel(4, 6), _panel(10, 8), _panel(12, 10)]
    cams = ProbeCams(_probe(), 'gradcam', panels)
    grid = render_cams(cams)
    single = render_cams(cams, layout='single')
    tile = np.zeros((200, 100, 3), np.uint8)
    three = compose_panels([('t', tile)] * 3)
    one = compose_panels([('t', tile)])
    assert grid.shape[:2] == (three.shape[0] + colour_bar_height(
        three.shape[1]), three.shape[1])
    assert single.shape[:2] == (one.shape[0] + colour_bar_height(
        one.shape[1]), one.shape[1])


def test_no_target_draws_the_image_with_the_reason():
    cams = ProbeCams(_probe(), 'layercam', note='no box above 0.30')
    picture = render_cams(cams)
    assert picture.shape[:2] == compose_panels([('t', _probe().image)
                                                ]).shape[:2]
    # The photo itself, untinted.
    assert np.all(picture[40:180, 20:90] == 128)


def test_a_huge_probe_is_drawn_at_most_800_pixels_a_panel():
    probe = Probe('big', np.full((4000, 2000, 3), 90, np.uint8), {},
                  dict(ori_shape=(4000, 2000)))
    cams = ProbeCams(probe, 'layercam', [_panel(4, 6)])
    picture = render_cams(cams)
    assert max(picture.shape[:2]) < 800 + 120
