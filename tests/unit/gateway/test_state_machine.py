"""Properties of the payment attempt and refund state machines (pure, no database).

Whatever the channel says, in whatever order and however often, an attempt only moves forward:
final statuses absorb everything, nothing returns to CREATED or UNKNOWN, an UNKNOWN answer never
undoes knowledge, and duplicated answers are harmless.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from clearhouse.gateway.channels.port import ChannelStatus
from clearhouse.gateway.model import (
    FINAL_ATTEMPT,
    FINAL_REFUND,
    AttemptStatus,
    IntentStatus,
    RefundStatus,
    advance_attempt,
    advance_refund,
    can_move,
    intent_status_after,
)

# Forward order of attempt statuses: a status never moves to a lower or equal rank.
ATTEMPT_RANK = {
    AttemptStatus.CREATED: 0,
    AttemptStatus.UNKNOWN: 1,
    AttemptStatus.PENDING: 2,
    AttemptStatus.SUCCEEDED: 3,
    AttemptStatus.FAILED: 3,
    AttemptStatus.CLOSED: 3,
}
REFUND_RANK = {
    RefundStatus.UNKNOWN: 0,
    RefundStatus.PENDING: 1,
    RefundStatus.SUCCEEDED: 2,
    RefundStatus.FAILED: 2,
    RefundStatus.PAYOUT_REQUIRED: 2,
}
OBSERVED_AS = {
    ChannelStatus.PENDING: AttemptStatus.PENDING,
    ChannelStatus.SUCCEEDED: AttemptStatus.SUCCEEDED,
    ChannelStatus.FAILED: AttemptStatus.FAILED,
    ChannelStatus.CLOSED: AttemptStatus.CLOSED,
    ChannelStatus.UNKNOWN: AttemptStatus.UNKNOWN,
}

observations = st.lists(st.sampled_from(list(ChannelStatus)), max_size=30)
attempt_statuses = st.sampled_from(list(AttemptStatus))
refund_statuses = st.sampled_from(list(RefundStatus))


def attempt_path(observed: list[ChannelStatus]) -> list[AttemptStatus]:
    """Statuses of an attempt from CREATED after each observation (the start included)."""
    path = [AttemptStatus.CREATED]
    for o in observed:
        path.append(advance_attempt(path[-1], o))
    return path


def refund_path(start: RefundStatus, observed: list[ChannelStatus]) -> list[RefundStatus]:
    path = [start]
    for o in observed:
        path.append(advance_refund(path[-1], o))
    return path


def doubled(observed: list[ChannelStatus]) -> list[ChannelStatus]:
    return [o for o in observed for _ in range(2)]


def deduplicated(observed: list[ChannelStatus]) -> list[ChannelStatus]:
    return [o for o, _ in itertools.groupby(observed)]


# --- attempts -------------------------------------------------------------------------------


def test_rank_covers_every_status() -> None:
    assert set(ATTEMPT_RANK) == set(AttemptStatus)
    assert set(REFUND_RANK) == set(RefundStatus)
    assert {s for s, r in ATTEMPT_RANK.items() if r == 3} == FINAL_ATTEMPT
    assert {s for s, r in REFUND_RANK.items() if r == 2} == FINAL_REFUND


@given(observations)
def test_final_attempt_status_never_changes(observed: list[ChannelStatus]) -> None:
    path = attempt_path(observed)
    for i, status in enumerate(path):
        if status in FINAL_ATTEMPT:
            assert set(path[i:]) == {status}


@given(observations)
def test_attempt_status_never_goes_back(observed: list[ChannelStatus]) -> None:
    path = attempt_path(observed)
    for before, after in itertools.pairwise(path):
        assert before == after or ATTEMPT_RANK[after] > ATTEMPT_RANK[before]
    left_created = next((i for i, s in enumerate(path) if s is not AttemptStatus.CREATED), None)
    if left_created is not None:
        assert AttemptStatus.CREATED not in path[left_created:]
    known = next(
        (i for i, s in enumerate(path) if ATTEMPT_RANK[s] > ATTEMPT_RANK[AttemptStatus.UNKNOWN]),
        None,
    )
    if known is not None:
        assert AttemptStatus.UNKNOWN not in path[known:]


@given(attempt_statuses, st.sampled_from(list(ChannelStatus)))
def test_any_status_moves_forward_or_stays(current: AttemptStatus, observed: ChannelStatus) -> None:
    after = advance_attempt(current, observed)
    assert after is current or ATTEMPT_RANK[after] > ATTEMPT_RANK[current]
    # A move, when there is one, goes to what the channel said; never to a guess.
    assert after is current or after is OBSERVED_AS[observed]


@given(observations)
def test_unknown_never_changes_a_known_attempt(observed: list[ChannelStatus]) -> None:
    for status in attempt_path(observed):
        if status is AttemptStatus.PENDING or status in FINAL_ATTEMPT:
            assert advance_attempt(status, ChannelStatus.UNKNOWN) is status


@pytest.mark.parametrize(
    "status", [AttemptStatus.PENDING, AttemptStatus.UNKNOWN, *sorted(FINAL_ATTEMPT)]
)
def test_unknown_observation_keeps_every_status_but_created(status: AttemptStatus) -> None:
    assert advance_attempt(status, ChannelStatus.UNKNOWN) is status


def test_created_learns_everything_the_channel_says() -> None:
    for observed, status in OBSERVED_AS.items():
        assert advance_attempt(AttemptStatus.CREATED, observed) is status


def test_unknown_learns_it_was_pending_and_pending_never_returns_to_unknown() -> None:
    assert advance_attempt(AttemptStatus.UNKNOWN, ChannelStatus.PENDING) is AttemptStatus.PENDING
    assert not can_move(AttemptStatus.PENDING, AttemptStatus.UNKNOWN)
    assert not can_move(AttemptStatus.PENDING, AttemptStatus.CREATED)
    assert not can_move(AttemptStatus.UNKNOWN, AttemptStatus.CREATED)
    for final in FINAL_ATTEMPT:
        assert not any(can_move(final, target) for target in AttemptStatus)


@given(observations)
def test_every_step_is_no_move_or_an_allowed_move(observed: list[ChannelStatus]) -> None:
    for before, after in itertools.pairwise(attempt_path(observed)):
        assert after is before or can_move(before, after)


@given(attempt_statuses, attempt_statuses)
def test_can_move_agrees_with_the_rank(current: AttemptStatus, target: AttemptStatus) -> None:
    # Exactly the forward moves are allowed: UNKNOWN -> PENDING included, no self-loops.
    assert can_move(current, target) == (ATTEMPT_RANK[target] > ATTEMPT_RANK[current])


@given(observations)
def test_duplicated_observations_are_harmless(observed: list[ChannelStatus]) -> None:
    once = attempt_path(observed)
    twice = attempt_path(doubled(observed))
    assert twice[-1] is once[-1]
    # And step by step: the repeat of each observation changes nothing.
    assert twice[2::2] == once[1:]
    assert twice[1::2] == once[1:]


@given(observations)
def test_consecutive_duplicates_do_not_matter(observed: list[ChannelStatus]) -> None:
    assert attempt_path(observed)[-1] is attempt_path(deduplicated(observed))[-1]


@given(attempt_statuses, st.sampled_from(list(ChannelStatus)))
def test_advance_is_idempotent(current: AttemptStatus, observed: ChannelStatus) -> None:
    once = advance_attempt(current, observed)
    assert advance_attempt(once, observed) is once


@given(observations)
def test_intent_follows_its_attempt(observed: list[ChannelStatus]) -> None:
    final = attempt_path(observed)[-1]
    expected = {
        AttemptStatus.SUCCEEDED: IntentStatus.SUCCEEDED,
        AttemptStatus.FAILED: IntentStatus.FAILED,
        AttemptStatus.CLOSED: IntentStatus.CLOSED,
    }.get(final, IntentStatus.PROCESSING)
    assert intent_status_after(final) is expected


class AttemptMachine(RuleBasedStateMachine):
    """A model of what the attempt has learnt, checked against the machine after each answer."""

    def __init__(self) -> None:
        super().__init__()
        self.status = AttemptStatus.CREATED
        self.history: list[AttemptStatus] = [self.status]

    @rule(observed=st.sampled_from(list(ChannelStatus)))
    def channel_says(self, observed: ChannelStatus) -> None:
        before = self.status
        self.status = advance_attempt(before, observed)
        self.history.append(self.status)
        if before in FINAL_ATTEMPT:
            assert self.status is before
        elif observed is ChannelStatus.UNKNOWN:
            expected = AttemptStatus.UNKNOWN if before is AttemptStatus.CREATED else before
            assert self.status is expected
        else:
            assert self.status is OBSERVED_AS[observed]

    @rule(observed=st.sampled_from(list(ChannelStatus)))
    def channel_repeats_itself(self, observed: ChannelStatus) -> None:
        first = advance_attempt(self.status, observed)
        assert advance_attempt(first, observed) is first
        self.status = first
        self.history.append(first)

    @invariant()
    def history_is_monotone(self) -> None:
        ranks = [ATTEMPT_RANK[s] for s in self.history]
        assert ranks == sorted(ranks)
        finals = [s for s in self.history if s in FINAL_ATTEMPT]
        assert len(set(finals)) <= 1


TestAttemptMachine = AttemptMachine.TestCase
TestAttemptMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


# --- refunds --------------------------------------------------------------------------------


@given(refund_statuses, observations)
def test_final_refund_status_absorbs_everything(
    start: RefundStatus, observed: list[ChannelStatus]
) -> None:
    path = refund_path(start, observed)
    for i, status in enumerate(path):
        if status in FINAL_REFUND:
            assert set(path[i:]) == {status}


@given(refund_statuses, observations)
def test_refund_status_never_goes_back(start: RefundStatus, observed: list[ChannelStatus]) -> None:
    for before, after in itertools.pairwise(refund_path(start, observed)):
        assert before == after or REFUND_RANK[after] > REFUND_RANK[before]


@given(refund_statuses)
def test_unknown_never_moves_a_refund(current: RefundStatus) -> None:
    assert advance_refund(current, ChannelStatus.UNKNOWN) is current


@given(refund_statuses, observations)
def test_refund_duplicates_are_harmless(start: RefundStatus, observed: list[ChannelStatus]) -> None:
    once = refund_path(start, observed)
    assert refund_path(start, doubled(observed))[-1] is once[-1]
    assert refund_path(start, deduplicated(observed))[-1] is once[-1]


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (ChannelStatus.SUCCEEDED, RefundStatus.SUCCEEDED),
        (ChannelStatus.FAILED, RefundStatus.FAILED),
        (ChannelStatus.PENDING, RefundStatus.PENDING),
        (ChannelStatus.UNKNOWN, RefundStatus.UNKNOWN),
        (ChannelStatus.CLOSED, RefundStatus.UNKNOWN),
    ],
)
def test_unknown_refund_learns_from_the_channel(
    observed: ChannelStatus, expected: RefundStatus
) -> None:
    assert advance_refund(RefundStatus.UNKNOWN, observed) is expected


@pytest.mark.parametrize("final", sorted(FINAL_REFUND))
def test_final_refund_ignores_every_answer(final: RefundStatus) -> None:
    for observed in ChannelStatus:
        assert advance_refund(final, observed) is final
