"""Binding over real HTTP: real-name verification with 3 or 4 elements (credit: + expiry and
CVN2), the SMS code and its limits, tokens, unbinding, and that a CVN2 is never kept, logged or
sent back anywhere."""

from __future__ import annotations

import inspect
import logging
import re
import threading
import types
from dataclasses import fields, is_dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest

from clearhouse.clock import FixedClock
from clearhouse.gateway.channels.port import ChannelStatus
from clearhouse.gateway.channels.quickpay.adapter import CardStatus, QuickpayAdapter
from clearhouse.sandbox.notifier import Notifier
from clearhouse.sandbox.quickpay import QuickpaySandbox
from clearhouse.sandbox.serving import ServedApp
from tests.channels.receiver import VerifyingReceiver

from .conftest import (
    CREDIT,
    DEBIT,
    EXPIRED,
    Recorder,
    bind,
    cny,
    credit_elements,
    elements,
    order,
)


def test_bind_with_three_elements(adapter: QuickpayAdapter, sandbox: QuickpaySandbox) -> None:
    challenge = adapter.bind_start(elements(DEBIT))
    assert challenge.status is CardStatus.OK
    # Three elements: the code goes to the phone the bank has on record.
    assert challenge.masked_phone == "138****0001"
    assert challenge.expires_at is not None
    sent = sandbox.sms_outbox(DEBIT.phone)
    assert len(sent) == 1
    assert re.fullmatch(r"[0-9]{6}", sent[0].code)
    assert sent[0].code in sent[0].text
    bound = adapter.bind_confirm(challenge.request_id, sent[0].code)
    assert bound.status is CardStatus.OK
    assert bound.token
    assert bound.token != DEBIT.card_no
    assert bound.masked_card_no == "621999*********0010"
    assert (bound.bank, bound.card_type) == ("沙箱商业银行", "debit")
    assert (bound.single_limit, bound.daily_limit) == (cny("5000.00"), cny("20000.00"))
    assert (bound.issuer_single_limit, bound.issuer_daily_limit) == (
        cny("50000.00"),
        cny("50000.00"),
    )
    assert DEBIT.card_no not in bound.raw
    found = adapter.query_binding(bound.token)
    assert (found.status, found.token, found.masked_card_no) == (
        CardStatus.OK,
        bound.token,
        bound.masked_card_no,
    )
    # A confirmation sent again (its answer lost) gives the same binding.
    again = adapter.bind_confirm(challenge.request_id, "000000")
    assert again.token == bound.token
    # Binding the same card again gives the same token: one per card and merchant.
    assert bind(adapter, sandbox, elements(DEBIT)).token == bound.token


def test_bind_with_four_elements_checks_the_phone(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox
) -> None:
    assert bind(adapter, sandbox, elements(DEBIT, four=True)).status is CardStatus.OK
    wrong_phone = adapter.bind_start(elements(DEBIT, phone="13900000000"))
    assert (wrong_phone.status, wrong_phone.error_code) == (
        CardStatus.REFUSED,
        "CARD_ELEMENTS_MISMATCH",
    )


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"holder_name": "张四"}, "CARD_ELEMENTS_MISMATCH"),
        ({"id_number": "110101199003070018"}, "CARD_ELEMENTS_MISMATCH"),
        ({"card_no": "6219990000000000028"}, "CARD_NUMBER_INVALID"),
    ],
)
def test_wrong_element_is_refused_by_class(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, changes: dict[str, str], code: str
) -> None:
    refused = adapter.bind_start(elements(DEBIT, **changes))
    assert (refused.status, refused.error_code) == (CardStatus.REFUSED, code)
    assert sandbox.sms_outbox(DEBIT.phone) == []


def test_credit_card_needs_expiry_and_cvv(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox
) -> None:
    good = credit_elements(sandbox)
    missing = adapter.bind_start(elements(CREDIT))
    assert missing.error_code == "MISSING_FIELD"
    wrong_cvv = adapter.bind_start(replace(good, cvv="000" if good.cvv != "000" else "001"))
    assert wrong_cvv.error_code == "CARD_SECURITY_MISMATCH"
    wrong_expiry = adapter.bind_start(replace(good, expiry="1129"))
    assert wrong_expiry.error_code == "CARD_SECURITY_MISMATCH"
    bound = bind(adapter, sandbox, good)
    assert (bound.card_type, bound.masked_card_no) == ("credit", "625999******0007")
    assert (bound.single_limit, bound.daily_limit) == (cny("10000.00"), cny("20000.00"))
    expired = adapter.bind_start(credit_elements(sandbox, EXPIRED))
    assert (expired.status, expired.error_code) == (CardStatus.REFUSED, "CARD_EXPIRED")


def test_wrong_then_right_sms_code(adapter: QuickpayAdapter, sandbox: QuickpaySandbox) -> None:
    challenge = adapter.bind_start(elements(DEBIT))
    code = sandbox.last_sms_code(DEBIT.phone)
    wrong = adapter.bind_confirm(challenge.request_id, "999999" if code != "999999" else "111111")
    assert (wrong.status, wrong.error_code) == (CardStatus.REFUSED, "SMS_CODE_WRONG")
    assert adapter.bind_confirm(challenge.request_id, code).status is CardStatus.OK


def test_expired_code_then_resend(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox, clock: FixedClock
) -> None:
    challenge = adapter.bind_start(elements(DEBIT))
    code = sandbox.last_sms_code(DEBIT.phone)
    clock.advance(timedelta(minutes=5))
    late = adapter.bind_confirm(challenge.request_id, code)
    assert (late.status, late.error_code) == (CardStatus.REFUSED, "SMS_CODE_EXPIRED")
    resent = adapter.bind_start(elements(DEBIT), request_id=challenge.request_id)
    assert resent.status is CardStatus.OK
    assert len(sandbox.sms_outbox(DEBIT.phone)) == 2
    fresh = sandbox.last_sms_code(DEBIT.phone)
    assert adapter.bind_confirm(challenge.request_id, fresh).status is CardStatus.OK


def test_five_wrong_codes_lock_the_request(
    adapter: QuickpayAdapter, sandbox: QuickpaySandbox
) -> None:
    challenge = adapter.bind_start(elements(DEBIT))
    code = sandbox.last_sms_code(DEBIT.phone)
    wrong = "123456" if code != "123456" else "654321"
    answers = [adapter.bind_confirm(challenge.request_id, wrong).error_code for _ in range(5)]
    assert answers == ["SMS_CODE_WRONG"] * 4 + ["SMS_CODE_LOCKED"]
    locked = adapter.bind_confirm(challenge.request_id, code)
    assert (locked.status, locked.error_code) == (CardStatus.REFUSED, "SMS_CODE_LOCKED")
    # A resend does not unlock it: the wrong tries stay counted.
    adapter.bind_start(elements(DEBIT), request_id=challenge.request_id)
    fresh = sandbox.last_sms_code(DEBIT.phone)
    assert adapter.bind_confirm(challenge.request_id, fresh).error_code == "SMS_CODE_LOCKED"


def test_unbind_then_pay_is_refused(adapter: QuickpayAdapter, sandbox: QuickpaySandbox) -> None:
    bound = bind(adapter, sandbox, elements(DEBIT))
    assert bound.token is not None
    assert adapter.unbind(bound.token).status is CardStatus.OK
    assert adapter.query_binding(bound.token).error_code == "CARD_NOT_BOUND"
    again = adapter.unbind(bound.token)
    assert (again.status, again.error_code) == (CardStatus.REFUSED, "CARD_NOT_BOUND")
    refused = adapter.pay(order("after-unbind", bound.token))
    assert (refused.status, refused.error_code) == (ChannelStatus.FAILED, "CARD_NOT_BOUND")
    # Bound again later, the card gets a new token.
    assert bind(adapter, sandbox, elements(DEBIT)).token != bound.token


def test_sms_outbox_route(adapter: QuickpayAdapter, served: ServedApp) -> None:
    adapter.bind_start(elements(DEBIT))
    sent = httpx.get(f"{served.base_url}/sandbox/sms/{DEBIT.phone}").json()
    assert len(sent) == 1
    assert re.fullmatch(r"[0-9]{6}", sent[0]["code"])


# -- the CVN2 is never kept, logged or answered ------------------------------------------------

_SKIP = (httpx.Client, Notifier, logging.Logger, type(threading.Lock()), type(threading.RLock()))


def reachable_strings(root: object) -> list[str]:
    """Every string reachable from ``root`` through attributes, slots, containers, bound
    methods and closure cells (the notifier's queued deliveries are closures), plus the repr
    of every dataclass on the way."""
    seen: set[int] = set()
    found: list[str] = []
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (*_SKIP, type, types.ModuleType)):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.append(obj)
        elif isinstance(obj, bytes | int | float) or obj is None:
            found.append(repr(obj))
        elif isinstance(obj, dict):
            stack.extend([*obj.keys(), *obj.values()])
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif inspect.ismethod(obj):
            stack.extend([obj.__self__, obj.__func__])
        elif inspect.isfunction(obj):
            stack.extend(cell.cell_contents for cell in obj.__closure__ or ())
        else:
            if is_dataclass(obj):
                found.append(repr(obj))
                stack.extend(getattr(obj, f.name) for f in fields(obj))
            if hasattr(obj, "__dict__"):
                stack.extend(vars(obj).values())
    return found


def test_cvv_never_appears(
    adapter: QuickpayAdapter,
    sandbox: QuickpaySandbox,
    recorder: Recorder,
    receiver: VerifyingReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    card = credit_elements(sandbox)
    assert card.cvv is not None
    cvv = card.cvv
    assert cvv not in repr(card)
    assert cvv not in f"{card} {card!s}"
    bound = bind(adapter, sandbox, card)
    assert bound.token is not None
    adapter.pay(order("cvv-pay-1", bound.token, "88.00", receiver.url))
    adapter.send_pay_sms(bound.token, "cvv-pay-2", cny("300.00"))
    code = sandbox.last_sms_code(CREDIT.phone)
    adapter.pay(order("cvv-pay-2", bound.token, "300.00", receiver.url, verification=code))
    assert sandbox.notifier is not None
    sandbox.notifier.run_due()
    assert len(receiver.notifications) == 2
    adapter.pay(order("cvv-pay-3", bound.token, "6.00", receiver.url))  # its notification waits

    strings = reachable_strings(sandbox)
    # The walk does reach the card data the channel keeps and the queued notification.
    assert CREDIT.card_no in strings
    assert sandbox.notifier.pending() == ["cvv-pay-3"]
    assert "cvv-pay-3" in strings
    standalone = re.compile(rf"(?<![0-9A-Za-z]){cvv}(?![0-9A-Za-z])")
    # Not in the sandbox's state, nor the issuers', nor the queued notifications.
    leaks = [s for s in strings if standalone.search(s)]
    assert leaks == []
    assert not any("cvn2" in s.lower() for s in reachable_strings(sandbox.state))
    # Not in any answer or notification; in requests only encrypted (no clear cvn2 field).
    bodies = [*recorder.responses, *receiver.bodies]
    assert bodies
    for body in bodies:
        text = unquote_plus(body.decode())
        assert not standalone.search(text)
        assert "cvn2" not in text.lower()
    for body in recorder.requests:
        assert "cvn2" not in unquote_plus(body.decode()).lower()
    # Not in any log line, the adapter's or the sandbox's.
    assert caplog.records
    assert not any(standalone.search(record.getMessage()) for record in caplog.records)
    assert not standalone.search(caplog.text)
