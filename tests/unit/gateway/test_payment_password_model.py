"""The payment password's pure rules: its format, the values refused as guessable, the count
of wrong tries and the lockout; and the expiry of unconfirmed bindings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clearhouse.errors import ClearhouseError
from clearhouse.gateway.card_model import (
    BINDING_TTL,
    MAX_PASSWORD_TRIES,
    PASSWORD_LOCK,
    PasswordTries,
    binding_expired,
    check_payment_password,
    weak_password,
)
from clearhouse.gateway.payment_passwords import CURRENT_KDF, Kdf

NOW = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize("pin", ["000000", "999999", "123456", "654321", "890123", "098765"])
def test_one_digit_or_a_run_is_weak(pin):
    assert weak_password(pin)


@pytest.mark.parametrize("pin", ["729164", "135791", "112233", "123457", "000001"])
def test_other_pins_are_not(pin):
    assert not weak_password(pin)


@pytest.mark.parametrize(
    "pin", ["12345", "1234567", "12345a", "\uff11\uff12\uff13\uff14\uff15\uff16", " 12345", ""]
)
def test_a_password_is_six_ascii_digits(pin):
    with pytest.raises(ClearhouseError) as raised:
        check_payment_password(pin)
    assert (raised.value.code, raised.value.details) == (
        "VALIDATION_ERROR",
        {"field": "payment_password"},
    )


def test_five_wrong_tries_in_a_row_lock_it_and_the_lock_runs_out():
    tries = PasswordTries(0, None)
    for n in range(1, MAX_PASSWORD_TRIES):
        tries = tries.after_wrong(NOW)
        assert (tries.failed, tries.locked_until, tries.tries_left) == (n, None, 5 - n)
        assert not tries.locked(NOW)
    tries = tries.after_wrong(NOW)
    assert (tries.locked_until, tries.tries_left) == (NOW + PASSWORD_LOCK, 0)
    assert tries.locked(NOW + PASSWORD_LOCK - timedelta(seconds=1))
    later = NOW + PASSWORD_LOCK
    assert not tries.locked(later)
    assert tries.current(later) == PasswordTries(0, None)
    # After the lock, the count starts again: one wrong try is one.
    assert tries.after_wrong(later) == PasswordTries(1, None)


def test_bindings_expire_fifteen_minutes_after_they_start():
    assert BINDING_TTL.total_seconds() == 15 * 60
    assert not binding_expired(NOW, NOW + BINDING_TTL - timedelta(microseconds=1))
    assert binding_expired(NOW, NOW + BINDING_TTL)


def test_the_kdf_parameters_are_kept_as_text():
    assert CURRENT_KDF.text() == "scrypt:n=32768,r=8,p=1"
    assert Kdf.parse(CURRENT_KDF.text()) == CURRENT_KDF
    with pytest.raises(ValueError, match="unknown"):
        Kdf.parse("bcrypt:cost=12")
