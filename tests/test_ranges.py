"""Value ranges kept across firings."""
import pytest

from mmfeatvis.ranges import ValueRangeTracker


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
