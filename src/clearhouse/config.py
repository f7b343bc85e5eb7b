"""Settings, read once from the environment. Nothing else in Clearhouse reads os.environ."""

from __future__ import annotations

import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clearhouse.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite:///clearhouse.db"
# Only good enough for the demo and tests; production sets CLEARHOUSE_PII_KEY.
DEFAULT_PII_KEY = "clearhouse-development-key-change-me"
# Seals stored secrets (API key and webhook secrets); production sets CLEARHOUSE_SECRET_KEY.
DEFAULT_SECRET_KEY = "clearhouse-development-secret-change-me"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Business days of the general ledger are cut in this zone (a marketplace in China closes its
    # books on Asia/Shanghai days, as its channels' bills do).
    ledger_timezone: str = "UTC"
    # Keyed digest of real-name ID numbers, so uniqueness holds without storing them in clear.
    pii_key: bytes = DEFAULT_PII_KEY.encode()
    secret_key: bytes = DEFAULT_SECRET_KEY.encode()
    # Where channel notifications reach this server, as the channels see it; None: the
    # address `clearhouse serve` listens on.
    public_url: str | None = None
    # The channels document (base URL and credentials per channel) a serving process reads.
    channels_file: str | None = None
    # Where the sandboxes keep their keys (test mode: generated on first use, kept after).
    sandbox_dir: str = ".clearhouse-sandbox"
    # The reconciliation store: imported statements' lines as Parquet (their register is in the
    # database, which must point at the same store).
    recon_dir: str = ".clearhouse-recon"

    @property
    def ledger_zone(self) -> ZoneInfo:
        return ZoneInfo(self.ledger_timezone)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if environ is None else environ
    settings = Settings(
        database_url=env.get("CLEARHOUSE_DATABASE_URL", DEFAULT_DATABASE_URL),
        ledger_timezone=env.get("CLEARHOUSE_LEDGER_TIMEZONE", "UTC"),
        pii_key=env.get("CLEARHOUSE_PII_KEY", DEFAULT_PII_KEY).encode(),
        secret_key=env.get("CLEARHOUSE_SECRET_KEY", DEFAULT_SECRET_KEY).encode(),
        public_url=env["CLEARHOUSE_PUBLIC_URL"].rstrip("/")
        if env.get("CLEARHOUSE_PUBLIC_URL")
        else None,
        sandbox_dir=env.get("CLEARHOUSE_SANDBOX_DIR", ".clearhouse-sandbox"),
        recon_dir=env.get("CLEARHOUSE_RECON_DIR", ".clearhouse-recon"),
        channels_file=env.get("CLEARHOUSE_CHANNELS_FILE") or None,
    )
    try:
        settings.ledger_zone  # noqa: B018 - validate the zone name now, not at the first close
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"CLEARHOUSE_LEDGER_TIMEZONE={settings.ledger_timezone!r} is not a known time zone"
        ) from exc
    return settings
