"""``PayoutPort`` over the bank's HTTP interface (``protocol.py``). Never raises for the bank's
answer: no answer, or one that does not verify or parse, is ``answered=False`` / ``UNKNOWN``
(the items may have been paid; only a query can say)."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from typing import Any

import httpx

from clearhouse.clock import Clock, SystemClock
from clearhouse.errors import ClearhouseError, ConfigurationError
from clearhouse.gateway.channels import transport
from clearhouse.gateway.channels.transport import NoAnswer
from clearhouse.money import Money
from clearhouse.wallet.bank import BatchAnswer, ItemResult, ItemStatus, PayoutBatch
from clearhouse.wallet.bankwire import protocol
from clearhouse.wallet.bankwire.protocol import BankCredentials

log = logging.getLogger(__name__)


STATEMENT_PATH = "/statements/"


class _BadAnswer(Exception):
    pass


class StatementUnavailable(ClearhouseError):
    """A day's statement could not be fetched or did not verify (``details["reason"]``)."""

    code = "STATEMENT_UNAVAILABLE"


class BankAdapter:
    def __init__(
        self,
        credentials: BankCredentials,
        base_url: str,
        *,
        timeout: float = 10.0,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.credentials = credentials
        self.clock = clock or SystemClock()
        self.client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def submit(self, batch: PayoutBatch) -> BatchAnswer:
        total = batch.total
        body = json.dumps(
            {
                "batch_no": batch.batch_id,
                "rail": batch.rail.value,
                "currency": total.currency,
                "count": len(batch.items),
                "total": str(total.to_decimal()),
                "items": [
                    {
                        "ref": item.ref,
                        "amount": str(item.amount.to_decimal()),
                        "account_no": item.card_number,
                        "account_name": item.holder_name,
                    }
                    for item in batch.items
                ],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        log.debug("payout batch %s: %d items", batch.batch_id, len(batch.items))
        try:
            status, data, raw = self._call("POST", protocol.BATCH_PATH, body)
            if status != 200:
                return BatchAnswer(False, raw=raw, error_code=str(data.get("code", status)))
            items = tuple(_item(entry, total.currency) for entry in data["items"])
        except NoAnswer as exc:
            return BatchAnswer(False, raw=exc.raw, error_code=exc.error_code)
        except (_BadAnswer, KeyError, TypeError, ValueError, ClearhouseError) as exc:
            return BatchAnswer(False, raw=f"bad answer: {exc}", error_code="BAD_RESPONSE")
        return BatchAnswer(True, items, raw=raw)

    def query(self, ref: str) -> ItemResult:
        try:
            status, data, raw = self._call("GET", protocol.ITEM_PATH + ref, b"")
            if status == 404 and data.get("code") == "NOT_FOUND":
                return ItemResult(ref, ItemStatus.NOT_FOUND, "NOT_FOUND", raw=raw)
            if status != 200 or data.get("ref") != ref:
                return ItemResult(ref, ItemStatus.UNKNOWN, str(data.get("code", status)), raw=raw)
            return _item(data, str(data["currency"]))
        except NoAnswer as exc:
            return ItemResult(ref, ItemStatus.UNKNOWN, exc.error_code, raw=exc.raw)
        except (_BadAnswer, KeyError, TypeError, ValueError, ClearhouseError) as exc:
            return ItemResult(ref, ItemStatus.UNKNOWN, "BAD_RESPONSE", raw=f"bad answer: {exc}")

    def download_statement(self, day: date, fmt: str = "camt053") -> bytes:
        """The settlement account's statement of ``day`` (the bank's day) as the bank renders
        it, ``camt053`` or ``mt940``, its signature checked. Raises ``StatementUnavailable``:
        reason ``TIMEOUT``/``NETWORK``, ``HTTP_<status>`` without a signed answer, the bank's
        code with one, ``BAD_SIGNATURE``."""
        path = f"{STATEMENT_PATH}{day.isoformat()}"
        headers = protocol.request_headers(self.credentials, "GET", path, b"", self.clock.now())
        try:
            response = transport.request(
                self.client, "GET", path, params={"format": fmt}, headers=headers
            )
        except NoAnswer as exc:
            raise StatementUnavailable(exc.raw, reason=exc.error_code) from None
        try:
            protocol.verify_answer(self.credentials, dict(response.headers), response.content)
        except protocol.SignatureError:
            reason = f"HTTP_{response.status_code}" if response.status_code >= 500 else None
            raise StatementUnavailable(response.text, reason=reason or "BAD_SIGNATURE") from None
        if response.status_code != 200:
            data = transport.json_object(response.content) or {}
            code = str(data.get("code") or f"HTTP_{response.status_code}")
            raise StatementUnavailable(response.text, reason=code)
        return response.content

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any], str]:
        headers = protocol.request_headers(self.credentials, method, path, body, self.clock.now())
        if body:
            headers["Content-Type"] = "application/json"
        response = transport.request(self.client, method, path, content=body, headers=headers)
        try:
            protocol.verify_answer(self.credentials, dict(response.headers), response.content)
        except protocol.SignatureError as exc:
            raise _BadAnswer(exc.message) from None
        data = json.loads(response.content)
        if not isinstance(data, dict):
            raise _BadAnswer("not a JSON object")
        return response.status_code, data, response.text


def _item(entry: dict[str, Any], currency: str) -> ItemResult:
    status = ItemStatus(entry["status"])
    if status not in (ItemStatus.PAID, ItemStatus.FAILED):
        raise _BadAnswer(f"item status {status}")
    paid_at = entry.get("paid_at")
    return ItemResult(
        ref=str(entry["ref"]),
        status=status,
        code=entry.get("code"),
        bank_txn_id=entry.get("bank_txn_id"),
        paid_at=None if paid_at is None else datetime.fromisoformat(paid_at),
        amount=Money.parse(str(entry["amount"]), currency),
        raw=json.dumps(entry, ensure_ascii=False, sort_keys=True),
    )


def bank_from_document(
    document: dict[str, Any], clock: Clock, timeout: float = 10.0
) -> BankAdapter | None:
    """The payout bank of a channels document (its ``bank`` entry: base URL and credentials),
    or None when it has none."""
    entry = document.get("bank")
    if entry is None:
        return None
    try:
        creds = BankCredentials.from_dict(entry["credentials"])
        return BankAdapter(creds, str(entry["base_url"]), timeout=timeout, clock=clock)
    except (KeyError, TypeError) as exc:
        raise ConfigurationError("bank: needs base_url and credentials") from exc
