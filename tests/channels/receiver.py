"""The merchant's end of a channel's notifications, served over real HTTP for the channel tests.

``verifying_receiver`` answers as the merchant would: with the adapter's own verification and
acknowledgement. ``scripted_receiver`` only records what arrives and answers with the statuses
a test scripts (for the sandbox's retries), whatever the body says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request, Response

from clearhouse.gateway.channels.port import BadNotification, ChannelPort, Notification
from clearhouse.sandbox.serving import ServedApp


@dataclass
class VerifyingReceiver:
    """What the merchant's endpoint received; ``accept`` decides the acknowledgement."""

    url: str = ""
    accept: bool = True
    bodies: list[bytes] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


@contextmanager
def verifying_receiver(merchant: ChannelPort, path: str) -> Iterator[VerifyingReceiver]:
    """Serve ``POST path``: verify each notification with ``merchant`` and acknowledge it."""
    state = VerifyingReceiver()
    app = FastAPI()

    @app.post(path)
    async def notify(request: Request) -> Response:
        body = await request.body()
        state.bodies.append(body)
        try:
            state.notifications.append(merchant.parse_notification(dict(request.headers), body))
            ack = merchant.ack(state.accept)
        except BadNotification as exc:
            state.rejected.append(exc.message)
            ack = merchant.ack(False)
        return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)

    with ServedApp(app) as served:
        state.url = f"{served.base_url}{path}"
        yield state


@dataclass
class ScriptedReceiver:
    """A merchant's endpoint that records what arrives and answers from a script: the status
    per delivery from ``answers``, then ``default_status``."""

    default_status: int
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    url: str = ""


@contextmanager
def scripted_receiver(path: str, default_status: int) -> Iterator[ScriptedReceiver]:
    state = ScriptedReceiver(default_status)
    app = FastAPI()

    @app.post(path)
    async def notify(request: Request) -> Response:
        state.received.append((dict(request.headers), await request.body()))
        status = state.answers.pop(0) if state.answers else state.default_status
        return Response(status_code=status)

    with ServedApp(app) as served:
        state.url = f"{served.base_url}{path}"
        yield state
