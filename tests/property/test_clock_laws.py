"""The laws of vector clocks, checked with hypothesis.

merge is the least upper bound of the happened-before partial order, compare
agrees with <=, tick moves strictly forward, and the JSON form round-trips.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vclock import Ordering, VectorClock
from vclock.clock import merge_all

from ..helpers import small_clocks, small_ids, wire_clocks

laws = settings(max_examples=150, deadline=None)


# merge is a join (least upper bound)


@laws
@given(small_clocks, small_clocks)
def test_merge_is_commutative(a, b):
    assert a.merge(b) == b.merge(a)


@laws
@given(small_clocks, small_clocks, small_clocks)
def test_merge_is_associative(a, b, c):
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@laws
@given(small_clocks)
def test_merge_is_idempotent(a):
    assert a.merge(a) == a


@laws
@given(small_clocks, small_clocks, small_clocks)
def test_merge_is_the_least_upper_bound(a, b, c):
    m = a.merge(b)
    assert a <= m and b <= m
    if a <= c and b <= c:
        assert m <= c


@laws
@given(small_clocks, small_clocks)
def test_the_upper_bound_of_ordered_clocks_is_the_later_one(a, b):
    later = a.merge(b)
    assert a.merge(later) == later


@laws
@given(st.lists(small_clocks, max_size=5))
def test_merge_all_equals_merging_one_by_one(clocks):
    expected = VectorClock()
    for clock in clocks:
        expected = expected.merge(clock)
    assert merge_all(clocks) == expected


# compare and the operators agree with <=


@laws
@given(small_clocks, small_clocks)
def test_compare_agrees_with_less_or_equal_both_ways(a, b):
    le, ge = a <= b, b <= a
    expected = {
        (True, True): Ordering.EQUAL,
        (True, False): Ordering.BEFORE,
        (False, True): Ordering.AFTER,
        (False, False): Ordering.CONCURRENT,
    }[le, ge]
    assert a.compare(b) is expected
    assert a.concurrent(b) is (expected is Ordering.CONCURRENT)


@laws
@given(small_clocks, small_clocks)
def test_compare_is_antisymmetric(a, b):
    flipped = {
        Ordering.BEFORE: Ordering.AFTER,
        Ordering.AFTER: Ordering.BEFORE,
        Ordering.EQUAL: Ordering.EQUAL,
        Ordering.CONCURRENT: Ordering.CONCURRENT,
    }
    assert b.compare(a) is flipped[a.compare(b)]


@laws
@given(small_clocks, small_clocks)
def test_strict_operators_are_less_or_equal_without_equality(a, b):
    assert (a < b) == (a <= b and a != b)
    assert (a > b) == (b <= a and a != b)
    assert (a >= b) == (b <= a)
    assert (a == b) == (a <= b and b <= a)


@laws
@given(small_clocks, small_clocks)
def test_less_or_equal_is_pointwise(a, b):
    ids = set(a) | set(b)
    assert (a <= b) == all(a[pid] <= b[pid] for pid in ids)


@laws
@given(small_clocks, small_clocks, small_clocks)
def test_less_or_equal_is_transitive(a, b, c):
    if a <= b and b <= c:
        assert a <= c


# tick and receive move forward


@laws
@given(small_clocks, small_ids)
def test_tick_strictly_increases_the_clock(clock, pid):
    ticked = clock.tick(pid)
    assert clock < ticked
    assert ticked[pid] == clock[pid] + 1
    assert clock.compare(ticked) is Ordering.BEFORE


@laws
@given(small_clocks, small_clocks, small_ids)
def test_receive_is_after_both_clocks(mine, stamped, pid):
    received = mine.receive(stamped, pid)
    assert mine < received
    assert stamped < received


@laws
@given(small_clocks, small_clocks, small_ids, st.booleans())
def test_tick_merge_and_receive_leave_their_inputs_unchanged(a, b, pid, cached):
    """Immutability: every operation returns a new clock (or one of its inputs,
    unchanged), whatever the inputs had cached (their hash and total)."""
    if cached:
        hash(a), hash(b), a.total, b.total
    before = (a.to_dict(), b.to_dict(), hash(a), hash(b), a.total, b.total)
    results = [a.tick(pid), b.tick(pid), a.merge(b), b.merge(a), a.receive(b, pid)]
    assert (a.to_dict(), b.to_dict(), hash(a), hash(b), a.total, b.total) == before
    assert results[0][pid] == a[pid] + 1 and results[1][pid] == b[pid] + 1


@laws
@given(small_clocks, small_clocks, small_ids, st.booleans())
def test_a_new_clocks_total_and_hash_are_those_of_the_same_clock_built_afresh(a, b, pid, cached):
    """tick and merge leave total and hash to be computed when asked: the
    answers must be those of a clock built from the same entries."""
    if cached:
        hash(a), hash(b), a.total, b.total
    for made in (a.tick(pid), a.merge(b), a.receive(b, pid), a.tick(pid).tick(pid)):
        fresh = VectorClock(made.to_dict())
        assert made.total == fresh.total == sum(fresh.to_dict().values())
        assert hash(made) == hash(fresh)


# Hash, equality and the JSON form


@laws
@given(small_clocks, small_clocks)
def test_hash_is_consistent_with_equality(a, b):
    if a == b:
        assert hash(a) == hash(b)
    rebuilt = VectorClock({**a.to_dict(), "zero": 0})
    assert rebuilt == a and hash(rebuilt) == hash(a)


@laws
@given(wire_clocks)
def test_json_form_round_trips(clock):
    assert VectorClock.from_json(clock.to_json()) == clock
    assert VectorClock.from_json(clock.to_json().encode()) == clock


@laws
@given(wire_clocks)
def test_dict_form_round_trips(clock):
    assert VectorClock(clock.to_dict()) == clock
