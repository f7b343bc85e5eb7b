"""A simulated payout bank (a corporate payout interface) that the wallet's bank adapter
talks to over HTTP."""

from clearhouse.sandbox.bank.app import create_app
from clearhouse.sandbox.bank.state import PayoutBank

__all__ = ["PayoutBank", "create_app"]
