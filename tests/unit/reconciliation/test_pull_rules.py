"""The pull rules without a network: backoff, which reasons are worth another try, and Stripe's
report run polled until it has succeeded."""

from __future__ import annotations

from datetime import date

import pytest

from clearhouse.errors import ConfigurationError
from clearhouse.reconciliation.pull import NotThere, Retry, StripeFetcher, _is_transient


def test_backoff_is_exponential_bounded_and_one_fewer_than_the_tries() -> None:
    assert list(Retry(attempts=6, first_delay=2, factor=3, max_delay=40).delays()) == [
        2,
        6,
        18,
        40,
        40,
    ]
    assert list(Retry(attempts=1).delays()) == []
    with pytest.raises(ConfigurationError):
        Retry(attempts=0)


@pytest.mark.parametrize(
    ("reason", "transient"),
    [
        ("TIMEOUT", True),
        ("NETWORK", True),
        ("HTTP_502", True),
        ("HTTP 500", True),  # Alipay's download
        ("HTTP_429", True),
        ("ReadTimeout", True),  # Alipay's download names the httpx exception
        ("ConnectError", True),
        ("BAD_HASH", True),
        ("HTTP_404", False),
        ("HTTP_401", False),
        ("PARAM_ERROR", False),
        ("SIGN_ERROR", False),
        ("HTTPStatusError", False),  # an httpx error, but not a transport one
    ],
)
def test_which_reasons_are_tried_again(reason: str, transient: bool) -> None:
    assert _is_transient(reason) is transient


class PendingRuns:
    """A Stripe adapter whose report runs stay pending for ``pending`` polls."""

    def __init__(self, pending: int) -> None:
        self.pending, self.polls, self.started = pending, 0, 0

    def start_report_run(self, **_: object) -> str:
        self.started += 1
        return "frr_1"

    def report_file(self, run_id: str) -> bytes | None:
        self.polls += 1
        return None if self.polls <= self.pending else b"balance_transaction_id\n"


def test_a_report_run_is_polled_until_it_succeeds_and_is_not_there_while_pending() -> None:
    sleeps: list[float] = []
    adapter = PendingRuns(pending=2)
    fetcher = StripeFetcher(
        adapter,  # type: ignore[arg-type]
        "acct_1",
        "America/Los_Angeles",
        polls=4,
        poll_delay=3.0,
        sleep=sleeps.append,
    )
    fetched = fetcher.fetch("stripe", date(2026, 11, 2))
    assert (fetched.data, fetched.account, adapter.polls, sleeps) == (
        b"balance_transaction_id\n",
        "acct_1",
        3,
        [3.0, 3.0],
    )
    slow = PendingRuns(pending=10)
    sleeps.clear()
    fetcher = StripeFetcher(slow, "acct_1", "UTC", polls=3, sleep=sleeps.append)  # type: ignore[arg-type]
    with pytest.raises(NotThere):
        fetcher.fetch("stripe", date(2026, 11, 2))
    assert (slow.started, slow.polls, len(sleeps)) == (1, 3, 2)
