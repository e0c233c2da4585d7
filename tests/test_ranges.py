"""Value ranges kept across firings."""
import pytest
import torch

from mmfeatvis.reduce.ranges import (REANCHOR_SHARE, SeriesRanges,
                                     ValueRangeTracker, range_floats,
                                     union_range)


def test_first_range_replayable():
    tracker = ValueRangeTracker('first')
    assert tracker.update('a', (0.0, 1.0)) == (0.0, 1.0)
    assert tracker.update('a', (0.0, 10.0)) == (0.0, 1.0)
    assert tracker.update('b', (2.0, 3.0)) == (2.0, 3.0)


def test_running_range_moves_slowly_and_per_image_keeps_nothing():
    tracker = ValueRangeTracker('running', momentum=0.5)
    tracker.update('a', (0.0, 2.0))
    assert tracker.update('a', (0.0, 4.0)) == (0.0, 3.0)
    per_image = ValueRangeTracker('per_image')
    assert per_image.update('a', (0.0, 1.0)) == (0.0, 1.0)
    assert per_image.update('a', (0.0, 5.0)) == (0.0, 5.0)
    assert per_image.ranges == {} and per_image.replayable('a')


def test_constant_first_map_gets_a_usable_range_and_state_round_trips():
    tracker = ValueRangeTracker('first')
    low, high = tracker.update(('dog', 'backbone[0]'), (1.0, 1.0))
    assert high > low
    restored = ValueRangeTracker('first')
    restored.load_state_dict(tracker.state_dict())
    assert restored.ranges == tracker.ranges


def test_bad_mode_names_choices():
    with pytest.raises(ValueError, match='per_image'):
        ValueRangeTracker('minmax')


# Observed ranges as measured on a device: float32 (2,) tensors.
OBSERVED = [(0.1, 2.7), (-0.3, 3.1), (0.25, 2.9), (1.5, 1.5), (-1e-3, 4.0)]


def _as_tensor(observed):
    return torch.tensor(observed, dtype=torch.float32)


@pytest.mark.parametrize('mode', ['first', 'running'])
def test_tensor_ranges_give_the_float_numbers(mode):
    with_floats = ValueRangeTracker(mode, momentum=0.3)
    with_tensors = ValueRangeTracker(mode, momentum=0.3)
    for observed in OBSERVED:
        # What the host would get from the same float32 measurement.
        floats = tuple(_as_tensor(observed).tolist())
        expected = with_floats.update('k', floats)
        got = with_tensors.update('k', _as_tensor(observed))
        assert isinstance(got, torch.Tensor) and got.shape == (2, )
        assert range_floats(got) == expected
    assert with_tensors.state_dict() == with_floats.state_dict()
    restored = ValueRangeTracker(mode)
    restored.load_state_dict(with_tensors.state_dict())
    assert restored.ranges == with_floats.ranges


def test_constant_tensor_range_is_widened_on_device():
    tracker = ValueRangeTracker('first')
    got = tracker.update('k', _as_tensor((2.0, 2.0)))
    assert range_floats(got) == (2.0, 2.0 + 1e-6)
    assert tracker.update('k', _as_tensor((0.0, 9.0))) is got


def test_running_mixes_a_restored_float_range_with_tensors():
    saved = ValueRangeTracker('running', momentum=0.5)
    saved.update(('p', 'x'), (0.0, 2.0))
    resumed = ValueRangeTracker('running', momentum=0.5)
    resumed.load_state_dict(saved.state_dict())
    got = resumed.update(('p', 'x'), _as_tensor((1.0, 4.0)))
    assert range_floats(got) == (0.5, 3.0)
    assert resumed.state_dict() == {'p\x1fx': [0.5, 3.0]}


def test_settle_keeps_the_host_copy_only_if_unchanged():
    tracker = ValueRangeTracker('running')
    first = tracker.update('k', _as_tensor((0.0, 1.0)))
    tracker.settle('k', first, (0.0, 1.0))
    assert tracker.ranges['k'] == (0.0, 1.0)
    second = tracker.update('k', _as_tensor((0.0, 2.0)))
    tracker.settle('k', first, (5.0, 6.0))  # stale: ignored
    assert tracker.ranges['k'] is second


def test_union_range_of_floats_and_tensors():
    assert union_range((0.0, 1.0), (-1.0, 0.5)) == (-1.0, 1.0)
    mixed = union_range((0.0, 1.0), _as_tensor((-1.0, 0.5)))
    assert range_floats(mixed) == (-1.0, 1.0)
    both = union_range(_as_tensor((0.0, 3.0)), _as_tensor((-1.0, 0.5)))
    assert range_floats(both) == (-1.0, 3.0)


def _values(lo, hi, n=1000):
    return torch.linspace(lo, hi, n)


def test_adaptive_keeps_a_range_that_fits_and_reanchors_one_that_saturates():
    tracker = ValueRangeTracker('adaptive')
    first = tracker.update('k', (0.0, 1.0), _values(0.0, 1.0))
    assert range_floats(first) == (0.0, 1.0)
    assert tracker.was_reanchored('k') is None  # nothing was kept before
    # A map that still fits: same scale, slightly different.
    kept = tracker.update('k', (0.02, 0.98), _values(0.02, 0.98))
    assert range_floats(kept) == (0.0, 1.0)
    assert not bool(tracker.was_reanchored('k'))
    # Grown tenfold: 90% of it beyond the kept top, so a new range.
    grown = tracker.update('k', (0.0, 10.0), _values(0.0, 10.0))
    assert range_floats(grown) == (0.0, 10.0)
    assert bool(tracker.was_reanchored('k'))
    # Shrunk to a sliver of the kept width: also a new range.
    shrunk = tracker.update('k', (1.0, 1.5), _values(1.0, 1.5))
    assert range_floats(shrunk) == (1.0, 1.5)
    assert bool(tracker.was_reanchored('k'))


def test_adaptive_tolerates_a_few_saturated_pixels():
    tracker = ValueRangeTracker('adaptive')
    tracker.update('k', (0.0, 1.0), _values(0.0, 1.0))
    # A share just under the limit lies beyond the kept top: kept.
    share = REANCHOR_SHARE * 0.8
    values = torch.cat([_values(0.0, 1.0, 1000),
                        torch.full((int(1000 * share), ), 1.5)])
    assert range_floats(tracker.update('k', (0.0, 1.5), values)) == (0.0,
                                                                     1.0)
    values = torch.cat([_values(0.0, 1.0, 1000),
                        torch.full((int(1000 * REANCHOR_SHARE * 1.5), ),
                                   1.5)])
    assert range_floats(tracker.update('k', (0.0, 1.5), values)) == (0.0,
                                                                     1.5)


def test_policy_questions_the_pipeline_asks():
    first = ValueRangeTracker('first')
    assert first.needs_measurement('k') and not first.replayable('k')
    first.update('k', _as_tensor((0.0, 1.0)))
    assert not first.needs_measurement('k')
    assert not first.replayable('k')  # still on the device
    first.settle('k', first.kept('k'), (0.0, 1.0))
    assert first.replayable('k')
    fixed = ValueRangeTracker((0.0, 5.0))
    assert not fixed.needs_measurement('k') and fixed.replayable('k')
    assert fixed.update('k', None) == (0.0, 5.0)
    running = ValueRangeTracker('running')
    running.update('k', (0.0, 1.0), _values(0.0, 1.0))
    assert running.needs_measurement('k') and not running.replayable('k')
    # 'adaptive' keeps its tensor (on a GPU it updates it in place, and
    # a recorded reduction may replay; see test_sync_free).
    adaptive = ValueRangeTracker('adaptive')
    adaptive.update('k', _as_tensor((0.0, 1.0)), _values(0.0, 1.0))
    assert adaptive.needs_measurement('k')
    assert adaptive.to_settle('k') is None
    assert not adaptive.replayable('k')  # a CPU tensor: no graphs here
    kept = adaptive.kept('k')
    again = adaptive.update('k', _as_tensor((0.0, 9.0)), _values(0.0, 9.0))
    assert range_floats(again) == (0.0, 9.0)
    assert range_floats(kept) == (0.0, 1.0)  # a firing's copy stays
    assert ValueRangeTracker('adaptive').needs_values('k')
    assert not SeriesRanges('union').replayable('k')
    assert SeriesRanges('union').needs_measurement('k')


def test_bad_fixed_range_names_the_choices():
    with pytest.raises(ValueError, match='lo < hi.*adaptive'):
        ValueRangeTracker((2.0, 1.0))


@pytest.mark.parametrize('mode, expected', [('union', (-0.5, 16.0)),
                                            ('last', (0.5, 16.0))])
def test_series_ranges_share_one_range_over_every_checkpoint(mode, expected):
    series = SeriesRanges(mode)
    observed = [(0.0, 1.0), (-0.5, 4.0), (0.5, 16.0)]
    for value in observed:
        # Each checkpoint is drawn on its own range until apply().
        assert range_floats(series.update(('img', 'layer'),
                                          _as_tensor(value))) == value
    assert series.shared(('img', 'layer')) == expected
    series.start_recording()
    assert series.shared(('img', 'layer')) is None
