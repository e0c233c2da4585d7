"""Value ranges kept across firings."""
import pytest
import torch

from mmfeatvis.ranges import ValueRangeTracker, range_floats, union_range


def test_first_range_is_frozen():
    tracker = ValueRangeTracker('first')
    assert tracker.update('a', (0.0, 1.0)) == (0.0, 1.0)
    assert tracker.update('a', (0.0, 10.0)) == (0.0, 1.0)
    assert tracker.update('b', (2.0, 3.0)) == (2.0, 3.0)


def test_running_range_moves_slowly_and_per_image_keeps_nothing():
    tracker = ValueRangeTracker('running', momentum=0.5)
    tracker.update('a', (0.0, 2.0))
    assert tracker.update('a', (0.0, 4.0)) == (0.0, 3.0)
    assert ValueRangeTracker('per_image').update('a', (0.0, 1.0)) is None


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
