"""A stateful WeChat Pay API v3 simulator: ``state`` (the account), ``app`` (HTTP), ``bills``."""
