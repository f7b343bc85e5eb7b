"""Manual import on SQLite and PostgreSQL: every format in, the same file twice changes nothing,
and a refused file stores nothing at all (no row, no Parquet)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from clearhouse.bootstrap import App
from clearhouse.db.schema import statement_files
from clearhouse.reconciliation import formats, intake
from clearhouse.reconciliation.statements.errors import StatementCode, StatementError
from clearhouse.reconciliation.store import StatementStore
from tests.unit.reconciliation.intake_support import (
    DAY,
    STRIPE_ACCOUNT,
    Sample,
    every_format,
)

SAMPLES = every_format()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "recon"


@pytest.fixture
def store(app: App, root: Path) -> StatementStore:
    return StatementStore(app.engine, root, app.clock)


def rows(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(statement_files)).scalar_one())


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_every_format_imports_by_channel_and_again_changes_nothing(
    app: App, store: StatementStore, root: Path, tmp_path: Path
) -> None:
    plain = [s for s in SAMPLES if not s.file.endswith(".gz")]
    for n, sample in enumerate(plain):
        source = formats.get(sample.fmt).source
        path = tmp_path / sample.file
        path.write_bytes(sample.data)
        [first] = intake.import_file(store, path, channel=source, by="ops", **sample.args)
        assert (first.format, first.source, first.lines, first.already) == (
            sample.fmt,
            source,
            sample.lines,
            False,
        )
        # The same bytes again, from memory and named otherwise: nothing changes.
        [again] = intake.import_file(
            store, sample.data, fmt=sample.fmt, by="someone else", file="copy", **sample.args
        )
        assert again.already
        assert again.sha256 == first.sha256
        assert store.read(store.current(source, first.business_date, sample.fmt)).num_rows == (
            sample.lines
        )
        assert rows(app) == n + 1
    assert len(files(root)) == rows(app)
    with app.engine.connect() as conn:
        who = set(conn.execute(select(statement_files.c.imported_by)).scalars())
        named = set(conn.execute(select(statement_files.c.file)).scalars())
    assert who == {"ops"}
    assert "copy" not in named
    # WeChat's gzip download is the same bill as the plain one.
    gz = next(s for s in SAMPLES if s.file.endswith(".gz"))
    [same] = intake.import_file(store, gz.data, channel="wechatpay", by="ops", **gz.args)
    assert same.already
    assert rows(app) == len(plain)


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.file)
def test_a_truncated_file_is_refused_naming_it_and_stores_nothing(
    app: App, store: StatementStore, root: Path, sample: Sample
) -> None:
    with pytest.raises(StatementError) as caught:
        intake.import_file(
            store, truncated(sample.data), fmt=sample.fmt, by="ops", file=sample.file, **sample.args
        )
    assert caught.value.file.startswith(sample.file)
    assert caught.value.code in {
        StatementCode.TRUNCATED,
        StatementCode.TOTALS_MISMATCH,
        StatementCode.BAD_VALUE,
        StatementCode.MISSING_COLUMN,
        StatementCode.UNSUPPORTED,
    }
    assert rows(app) == 0
    assert files(root) == []


def test_totals_that_do_not_add_up_store_nothing(
    app: App, store: StatementStore, root: Path
) -> None:
    trade = next(s for s in SAMPLES if s.fmt == formats.WECHATPAY_TRADE)
    text = trade.data.decode("utf-8")
    summary_at = text.rindex("\n`", 0, len(text) - 1)
    head, summary = text[:summary_at], text[summary_at:]
    fields = summary.split(",")
    fields[0] = "\n`999"  # the declared count of trades
    bad = (head + ",".join(fields)).encode("utf-8")
    with pytest.raises(StatementError) as caught:
        intake.import_file(store, bad, channel="wechatpay", by="ops", business_date=DAY)
    assert caught.value.code is StatementCode.TOTALS_MISMATCH
    assert caught.value.line is not None
    assert rows(app) == 0
    assert files(root) == []


def test_wrong_encoding_unknown_bytes_and_missing_arguments_store_nothing(
    app: App, store: StatementStore, root: Path
) -> None:
    trade = next(s for s in SAMPLES if s.fmt == formats.WECHATPAY_TRADE)
    gbk = trade.data.decode("utf-8").encode("gb18030")
    with pytest.raises(StatementError) as encoding:
        intake.import_file(
            store, gbk, fmt=formats.WECHATPAY_TRADE, by="ops", business_date=DAY, file="gbk.csv"
        )
    assert encoding.value.code is StatementCode.ENCODING
    with pytest.raises(StatementError) as unknown:
        intake.import_file(store, b"date,amount\n2024-03-01,1.00\n", channel="alipay", by="ops")
    assert unknown.value.code is StatementCode.UNSUPPORTED
    stripe = next(s for s in SAMPLES if s.fmt == formats.STRIPE)
    with pytest.raises(formats.ArgumentMissing):
        intake.import_file(store, stripe.data, channel="stripe", by="ops", account=STRIPE_ACCOUNT)
    assert rows(app) == 0
    assert files(root) == []
