"""A bank's corporate payout interface over HTTP: the wire protocol (shared with the sandbox)
and the adapter behind ``PayoutPort``."""
