"""VectorClock: a sparse, immutable map with the happened-before partial order."""

from __future__ import annotations

import pytest

from vclock import ClockLimits, InvalidClock, Ordering, VClockError, VectorClock
from vclock.clock import merge_all

# Sparse: a missing entry is 0


def test_a_missing_entry_reads_as_zero():
    clock = VectorClock({"A": 2})
    assert clock["A"] == 2
    assert clock["Z"] == 0


def test_zero_entries_are_the_same_as_missing_ones():
    assert VectorClock({"A": 0}) == VectorClock({})
    assert hash(VectorClock({"A": 0})) == hash(VectorClock({}))
    assert VectorClock({"A": 0, "B": 1}) == VectorClock({"B": 1})
    assert hash(VectorClock({"A": 0, "B": 1})) == hash(VectorClock({"B": 1}))


def test_zero_entries_are_dropped_from_every_view():
    clock = VectorClock({"A": 0, "B": 3})
    assert len(clock) == 1
    assert list(clock) == ["B"]
    assert clock.items() == [("B", 3)]
    assert clock.to_dict() == {"B": 3}
    assert clock.to_json() == '{"B": 3}'


def test_no_argument_and_none_make_the_empty_clock():
    assert VectorClock() == VectorClock(None) == VectorClock({})
    assert len(VectorClock()) == 0


def test_iteration_yields_sorted_ids():
    clock = VectorClock({"C": 1, "A": 2, "B": 3})
    assert list(clock) == ["A", "B", "C"]
    assert clock.items() == [("A", 2), ("B", 3), ("C", 1)]
    assert list(clock.to_dict()) == ["A", "B", "C"]


def test_equal_clocks_work_as_one_dict_key_and_set_member():
    a = VectorClock({"A": 1, "B": 2})
    b = VectorClock({"B": 2, "A": 1, "C": 0})
    assert {a: "x"}[b] == "x"
    assert len({a, b}) == 1


def test_a_clock_is_never_equal_to_a_plain_dict():
    assert VectorClock({"A": 1}) != {"A": 1}
    assert not (VectorClock() == {})


# Operations


def test_tick_increments_one_entry_and_returns_a_new_clock():
    clock = VectorClock({"A": 1})
    ticked = clock.tick("A")
    assert ticked == VectorClock({"A": 2})
    assert clock == VectorClock({"A": 1})
    assert clock.tick("B") == VectorClock({"A": 1, "B": 1})


@pytest.mark.parametrize("pid", ["", None, 1, b"A", ["A"]])
def test_tick_refuses_an_invalid_process_id(pid):
    with pytest.raises(InvalidClock):
        VectorClock().tick(pid)


def test_merge_takes_the_pointwise_maximum():
    a = VectorClock({"A": 3, "B": 1})
    b = VectorClock({"B": 4, "C": 2})
    assert a.merge(b) == VectorClock({"A": 3, "B": 4, "C": 2})
    assert b.merge(a) == VectorClock({"A": 3, "B": 4, "C": 2})


def test_merge_leaves_both_inputs_unchanged():
    a = VectorClock({"A": 3})
    b = VectorClock({"A": 1, "B": 2, "C": 1})
    a.merge(b)
    b.merge(a)
    assert a == VectorClock({"A": 3})
    assert b == VectorClock({"A": 1, "B": 2, "C": 1})


def test_receive_merges_then_ticks_the_receiver():
    mine = VectorClock({"B": 2})
    stamped = VectorClock({"A": 5, "B": 1})
    assert mine.receive(stamped, "B") == VectorClock({"A": 5, "B": 3})


def test_merge_all_is_the_maximum_of_many_clocks():
    clocks = [VectorClock({"A": 1}), VectorClock({"B": 2}), VectorClock({"A": 3, "C": 1})]
    assert merge_all(clocks) == VectorClock({"A": 3, "B": 2, "C": 1})
    assert merge_all([]) == VectorClock()


# The partial order


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({"A": 1}, {"A": 2}, Ordering.BEFORE),
        ({"A": 1}, {"A": 1, "B": 1}, Ordering.BEFORE),
        ({}, {"A": 1}, Ordering.BEFORE),
        ({"A": 2}, {"A": 1}, Ordering.AFTER),
        ({"A": 1, "B": 1}, {"B": 1}, Ordering.AFTER),
        ({"A": 1, "B": 2}, {"B": 2, "A": 1}, Ordering.EQUAL),
        ({}, {"A": 0}, Ordering.EQUAL),
        ({"A": 1}, {"B": 1}, Ordering.CONCURRENT),
        ({"A": 2, "B": 1}, {"A": 1, "B": 2}, Ordering.CONCURRENT),
    ],
)
def test_compare_gives_the_happened_before_relation(a, b, expected):
    assert VectorClock(a).compare(VectorClock(b)) is expected
    assert VectorClock(a).concurrent(VectorClock(b)) is (expected is Ordering.CONCURRENT)


def test_operators_follow_the_partial_order_for_clocks_before_one_another():
    a, b = VectorClock({"A": 1}), VectorClock({"A": 1, "B": 1})
    assert a < b and a <= b and not a > b and not a >= b and a != b
    assert b > a and b >= a and not b < a and not b <= a


def test_operators_follow_the_partial_order_for_equal_clocks():
    a, b = VectorClock({"A": 1, "B": 0}), VectorClock({"A": 1})
    assert a == b and a <= b and a >= b
    assert not a < b and not a > b


def test_no_operator_holds_between_concurrent_clocks():
    a, b = VectorClock({"A": 1}), VectorClock({"B": 1})
    assert not (a < b or a <= b or a > b or a >= b or a == b)
    assert a.concurrent(b) and b.concurrent(a)


def test_ordering_a_clock_against_another_type_raises_type_error():
    with pytest.raises(TypeError):
        VectorClock() < 1  # noqa: B015
    with pytest.raises(TypeError):
        VectorClock() >= {"A": 1}  # noqa: B015


# Immutability and aliasing


def test_changing_the_input_dict_does_not_change_the_clock():
    entries = {"A": 1}
    clock = VectorClock(entries)
    entries["A"] = 99
    entries["B"] = 5
    assert clock == VectorClock({"A": 1})
    assert clock["A"] == 1


def test_changing_to_dict_output_does_not_change_the_clock():
    clock = VectorClock({"A": 1})
    view = clock.to_dict()
    view["A"] = 99
    view["B"] = 7
    assert clock.to_dict() == {"A": 1}
    assert clock.to_dict() is not clock.to_dict()


def test_a_clock_has_no_public_way_to_be_changed():
    clock = VectorClock({"A": 1})
    with pytest.raises(AttributeError):
        clock.extra = 1
    with pytest.raises(TypeError):
        clock["A"] = 2


def test_hash_is_stable_across_operations_on_other_clocks():
    clock = VectorClock({"A": 1})
    before = hash(clock)
    clock.tick("A")
    clock.merge(VectorClock({"A": 5}))
    assert hash(clock) == before
    assert clock == VectorClock({"A": 1})


# Text forms


def test_json_form_sorts_ids_and_uses_govector_spacing():
    assert VectorClock({"B": 3, "A": 1}).to_json() == '{"A": 1, "B": 3}'
    assert str(VectorClock({"B": 3, "A": 1})) == '{"A": 1, "B": 3}'
    assert VectorClock().to_json() == "{}"


def test_json_form_escapes_ids():
    assert VectorClock({'a"b': 1}).to_json() == '{"a\\"b": 1}'


def test_repr_shows_the_json_form():
    assert repr(VectorClock({"A": 1})) == 'VectorClock({"A": 1})'


def test_from_json_reads_the_json_form_back():
    assert VectorClock.from_json('{"A": 1, "B": 3}') == VectorClock({"A": 1, "B": 3})
    assert VectorClock.from_json(b'{"B":3,"A":1}') == VectorClock({"A": 1, "B": 3})
    assert VectorClock.from_json("{}") == VectorClock()


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[1, 2]", "3", "null", '{"A": -1}', '{"A": 1.5}', '{"A": "1"}', '{"": 1}'],
)
def test_from_json_refuses_anything_but_a_valid_clock_object(text):
    with pytest.raises(InvalidClock):
        VectorClock.from_json(text)


def test_from_json_applies_the_limits_it_is_given():
    with pytest.raises(InvalidClock, match="entries"):
        VectorClock.from_json('{"A": 1, "B": 1}', limits=ClockLimits(max_entries=1))


# Validation


def test_invalid_clock_is_a_value_error_and_a_vclock_error():
    assert issubclass(InvalidClock, ValueError)
    assert issubclass(InvalidClock, VClockError)


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ({"A": -1}, "between 0 and"),
        ({"A": 1.0}, "must be an integer"),
        ({"A": True}, "must be an integer"),
        ({"A": False}, "must be an integer"),
        ({"A": "3"}, "must be an integer"),
        ({"A": None}, "must be an integer"),
        ({1: 1}, "non-empty string"),
        ({b"A": 1}, "non-empty string"),
        ({None: 1}, "non-empty string"),
        ({"": 1}, "non-empty string"),
        ({"A": 2**63}, "between 0 and"),
    ],
)
def test_a_bad_id_or_counter_raises_invalid_clock(entries, fragment):
    with pytest.raises(InvalidClock, match=fragment):
        VectorClock(entries)


def test_a_str_subclass_id_is_refused():
    class Name(str):
        pass

    with pytest.raises(InvalidClock):
        VectorClock({Name("A"): 1})


@pytest.mark.parametrize("entries", [[("A", 1)], "A", 5])
def test_a_non_mapping_raises_invalid_clock(entries):
    with pytest.raises(InvalidClock, match="mapping"):
        VectorClock(entries)


def test_too_many_entries_raise_invalid_clock():
    limits = ClockLimits(max_entries=2)
    assert len(VectorClock({"A": 1, "B": 1}, limits=limits)) == 2
    with pytest.raises(InvalidClock, match="more than the limit of 2"):
        VectorClock({"A": 1, "B": 1, "C": 1}, limits=limits)


def test_the_entry_limit_counts_zero_entries_too():
    with pytest.raises(InvalidClock):
        VectorClock({"A": 0, "B": 0, "C": 0}, limits=ClockLimits(max_entries=2))


def test_too_long_ids_raise_invalid_clock():
    limits = ClockLimits(max_id_length=3)
    assert VectorClock({"abc": 1}, limits=limits)["abc"] == 1
    with pytest.raises(InvalidClock, match="more than the limit of 3"):
        VectorClock({"abcd": 1}, limits=limits)


def test_the_default_limits_allow_64_character_ids():
    assert VectorClock({"x" * 64: 1})["x" * 64] == 1
    with pytest.raises(InvalidClock):
        VectorClock({"x" * 65: 1})


def test_counters_above_max_counter_raise_invalid_clock():
    limits = ClockLimits(max_counter=10)
    assert VectorClock({"A": 10}, limits=limits)["A"] == 10
    with pytest.raises(InvalidClock, match="between 0 and 10, got 11"):
        VectorClock({"A": 11}, limits=limits)


def test_the_default_max_counter_is_a_signed_64_bit_integer():
    assert VectorClock({"A": 2**63 - 1})["A"] == 2**63 - 1
    with pytest.raises(InvalidClock):
        VectorClock({"A": 2**63})


def test_ordering_values_are_readable_words():
    assert {o.value for o in Ordering} == {"before", "after", "equal", "concurrent"}


def test_a_clock_is_a_read_only_mapping() -> None:
    """Issue 15: dict(clock) works, and the clock stays immutable and hashable."""
    from collections.abc import Mapping

    clock = VectorClock({"B": 2, "A": 1})
    assert isinstance(clock, Mapping)
    assert dict(clock) == {"A": 1, "B": 2}
    assert list(clock) == ["A", "B"] and len(clock) == 2
    assert "A" in clock and "Z" not in clock
    assert clock["Z"] == 0 and clock.get("Z") is None and clock.get("Z", 7) == 7
    assert clock.get("A") == 1
    assert VectorClock(clock) == clock  # a clock is a valid mapping to build one from
    assert hash(clock) == hash(VectorClock({"A": 1, "B": 2}))
    with pytest.raises(TypeError):
        clock["A"] = 5  # type: ignore[index]
    with pytest.raises(AttributeError):
        clock.x = 1  # type: ignore[attr-defined]
