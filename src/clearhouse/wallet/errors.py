"""The wallet's exception tree. Each ``code`` is stable and published (``api/errors.py``)."""

from __future__ import annotations

from clearhouse.errors import ClearhouseError


class WalletError(ClearhouseError):
    code = "WALLET_ERROR"


class InvalidMovement(WalletError):
    """Well-formed, but not a movement we can make (amount, currency, description)."""

    code = "INVALID_MOVEMENT"


class AccountNotFound(WalletError):
    """No such account, or it holds no buyer balance in the movement's currency."""

    code = "ACCOUNT_NOT_FOUND"


class AccountNotActive(WalletError):
    """The account, its customer or its balance is frozen or closed."""

    code = "ACCOUNT_NOT_ACTIVE"


class SameAccount(WalletError):
    code = "SAME_ACCOUNT"


class InsufficientBalance(WalletError):
    code = "INSUFFICIENT_BALANCE"


class KycLimitExceeded(WalletError):
    """The movement would take the identity (all its accounts together) over a KYC limit;
    ``period`` names which, ``headroom`` is what is left of it."""

    code = "KYC_LIMIT_EXCEEDED"


class DuplicateTransfer(WalletError):
    """The caller's transfer id is taken by a different transfer."""

    code = "DUPLICATE_TRANSFER"


class DuplicateWithdrawal(WalletError):
    code = "DUPLICATE_WITHDRAWAL"


class WithdrawalNotFound(WalletError):
    code = "WITHDRAWAL_NOT_FOUND"


class CardNotOwned(WalletError):
    """The card belongs to another customer than the balance it would be paid from."""

    code = "CARD_NOT_OWNED"


class PayoutUnavailable(WalletError):
    """The platform's bank reserve cannot cover the payout now: nothing was kept; retry later."""

    code = "PAYOUT_UNAVAILABLE"


class InvalidWithdrawalState(WalletError):
    code = "INVALID_STATE"
