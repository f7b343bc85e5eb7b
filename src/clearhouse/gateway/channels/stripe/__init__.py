"""The Stripe channel: ``protocol`` (keys, webhook signatures, form encoding) and ``adapter``."""
