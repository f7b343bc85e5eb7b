"""`clearhouse serve` is killed (SIGKILL) while a channel call is in flight: the payment it had
accepted is not lost. The attempt was stored before the call, so after the crash the poller of a
fresh process finds it, asks the channel, and books the payment once."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from clearhouse.api.client import MerchantClient
from clearhouse.bootstrap import App, build_app, gateway_for, upgrade_database
from clearhouse.clock import FixedClock, SystemClock
from clearhouse.config import Settings
from clearhouse.db.schema import journal_entries, payment_attempts
from clearhouse.db.transaction import run_in_transaction
from clearhouse.gateway.channels.config import ports_from_document
from clearhouse.gateway.merchants import create_merchant
from clearhouse.gateway.model import AttemptStatus, IntentStatus
from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.runner import SandboxCredentials, Sandboxes
from clearhouse.sandbox.serving import ServedApp
from tests.integration.test_crash import ROOT, env_for

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rows(app: App, table) -> int:  # type: ignore[no-untyped-def]
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_killed_server_loses_no_accepted_payment(app, database_url, tmp_path: Path):
    upgrade_database(app)
    credentials = SandboxCredentials.generate()
    # Every channel call is answered 5 s late: the server is killed while it waits.
    sandboxes = Sandboxes(
        credentials,
        SystemClock(),
        FaultPlan(rates_ppm={Fault.TIMEOUT: 1_000_000}),
        timeout_delay_s=5.0,
    )
    port = free_port()
    with ServedApp(sandboxes.apps()["wechatpay"]) as wechat:
        document = credentials.merchant_document(
            {"wechatpay": wechat.base_url, "alipay": "http://127.0.0.1:9"}
        )
        channels = tmp_path / "channels.json"
        channels.write_text(json.dumps({"wechatpay": document["wechatpay"]}))
        serving = gateway_for(app, {}, "unused")  # the sealer the server uses too
        serving.close()  # only its sealer is needed
        _m, key, _w = run_in_transaction(
            app.engine,
            lambda c: create_merchant(
                c,
                app.chart,
                serving.sealer,
                name="Crash Tea",
                currency="CNY",
                commission_bps=500,
                webhook_url=None,
                pii_key=app.settings.pii_key,
                now=SystemClock().now(),
            ),
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clearhouse",
                "serve",
                "--port",
                str(port),
                "--channels",
                str(channels),
            ],
            cwd=ROOT,
            env=env_for(database_url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

            def pay() -> None:
                with httpx.Client(base_url=base, timeout=30) as http:
                    client = MerchantClient(http, key.key_id, key.secret)
                    # The server dies under the request: the merchant sees an error.
                    with contextlib.suppress(httpx.HTTPError):
                        client.post(
                            "/v1/payments",
                            {
                                "merchant_order_id": "crash-1",
                                "amount": 8_800,
                                "currency": "CNY",
                                "description": "Tieguanyin 125 g",
                                "channel": "wechatpay",
                                "method": "native",
                            },
                        )

            caller = threading.Thread(target=pay)
            caller.start()
            # Killed once the attempt is stored and the channel holds the order, while the
            # channel's answer is on its way.
            while rows(app, payment_attempts) == 0 or not sandboxes.wechatpay.orders:
                assert time.monotonic() < deadline, "the payment never reached the channel"
                time.sleep(0.02)
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=10)
            caller.join(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()

        with app.engine.connect() as conn:
            attempt = conn.execute(select(payment_attempts)).one()
        assert attempt.status == AttemptStatus.CREATED.value  # stored, never answered
        time.sleep(5.2)  # the sandbox finishes the order it was holding
        sandboxes.pay("wechatpay", attempt.id)  # the payer paid; the notification never came

        # A fresh process: its poller asks the channel about the attempt the dead one left.
        clock = FixedClock(SystemClock().now() + timedelta(seconds=31))
        ports = ports_from_document({"wechatpay": document["wechatpay"]}, clock, timeout=10)
        fresh = build_app(Settings(database_url=database_url), clock)
        restarted = gateway_for(fresh, ports, "http://127.0.0.1:9")
        try:
            report = restarted.poller.run_once()
            intent = restarted.payments.get(_m.id, attempt.intent_id)
        finally:
            restarted.close()
            fresh.close()
    assert report.changed == 1
    assert intent.status is IntentStatus.SUCCEEDED
    assert rows(app, journal_entries) == 2  # payment + fee, once
    assert app.ledger.check() == []
