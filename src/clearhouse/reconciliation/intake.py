"""Manual import of a statement file (R1): resolve its format, parse all of it, then store it.

The order is the guarantee: a file is parsed whole (totals and footers checked) before the store
sees anything, so a refused file stores nothing; the store then writes the lines and commits the
file's row, and the same bytes a second time change nothing (``StatementStore.put``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from clearhouse.reconciliation import formats
from clearhouse.reconciliation.statements.model import Statement
from clearhouse.reconciliation.store import Imported, StatementStore


def read(
    source: Path | bytes,
    *,
    channel: str | None = None,
    fmt: str | None = None,
    business_date: date | None = None,
    account: str | None = None,
    file: str | None = None,
) -> tuple[formats.Format, Statement]:
    """Parse without storing: the format and the statement, or the typed refusal.
    ``file`` names the file in errors and in the register (default: the path's name)."""
    if isinstance(source, Path):
        data, name = source.read_bytes(), file or source.name
    else:
        data, name = source, file or "statement"
    found = formats.resolve(data, name, channel=channel, fmt=fmt)
    statement = found.parse(data, name, business_date=business_date, account=account)
    return found, statement


def import_file(
    store: StatementStore,
    source: Path | bytes,
    *,
    by: str,
    channel: str | None = None,
    fmt: str | None = None,
    business_date: date | None = None,
    account: str | None = None,
    file: str | None = None,
) -> list[Imported]:
    """Import one file given by path or bytes, as format ``fmt`` or as whatever ``channel``'s
    file the bytes show it to be. ``business_date`` and ``account`` are needed where the file
    does not state them (WeChat Pay's day, Stripe's account and day). One ``Imported`` per
    statement the file holds (one for every format supported now); ``already`` is set when the
    same file was imported before."""
    found, statement = read(
        source,
        channel=channel,
        fmt=fmt,
        business_date=business_date,
        account=account,
        file=file,
    )
    return [store.put(statement, found.name, by)]
