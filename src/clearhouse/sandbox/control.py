"""The ``/sandbox`` control routes every channel sandbox serves alike: the fault plan (read it,
replace it) and the notification pump. Unauthenticated: a sandbox is a test double, never
exposed. A channel's own control routes (its payer, its refunds, its files) stay in its app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from clearhouse.sandbox.faults import Fault, FaultPlan
from clearhouse.sandbox.notifier import Notifier

# What a body that is not a fault plan raises in ``faults_from_dict``.
_BAD_PLAN = (ValueError, KeyError, TypeError, AttributeError)


class _HasFaults(Protocol):
    @property
    def faults(self) -> FaultPlan: ...

    @faults.setter
    def faults(self, plan: FaultPlan) -> None: ...


class _HasNotifier(Protocol):
    @property
    def notifier(self) -> Notifier | None: ...


def faults_to_dict(plan: FaultPlan) -> dict[str, Any]:
    return {
        "seed": plan.seed,
        "rates_ppm": {fault.value: rate for fault, rate in plan.rates_ppm.items()},
        "forced": {fault.value: sorted(subjects) for fault, subjects in plan.forced.items()},
    }


def faults_from_dict(data: dict[str, Any]) -> FaultPlan:
    """``{"seed": 1, "rates_ppm": {"timeout": 1000}, "forced": {"wrong_fee": ["order-1"]}}``."""
    return FaultPlan(
        seed=int(data.get("seed", 0)),
        rates_ppm={Fault(k): int(v) for k, v in dict(data.get("rates_ppm", {})).items()},
        forced={Fault(k): frozenset(map(str, v)) for k, v in dict(data.get("forced", {})).items()},
    )


def bad_fault_plan(message: str) -> NoReturn:
    """The refusal of a body that is not a fault plan, for a channel without an error shape of
    its own to answer it in: 422 with FastAPI's ``{"detail": ...}``."""
    raise HTTPException(422, f"bad fault plan: {message}")


def fault_routes(
    app: FastAPI,
    sandbox: _HasFaults,
    refuse: Callable[[str], Response] = bad_fault_plan,
) -> None:
    """``GET /sandbox/faults`` and ``PUT /sandbox/faults`` (which answers the plan now in force);
    ``refuse(message)`` answers a body that is not a fault plan, in the channel's error shape."""

    @app.get("/sandbox/faults")
    async def get_faults() -> dict[str, Any]:
        return faults_to_dict(sandbox.faults)

    @app.put("/sandbox/faults")
    async def put_faults(request: Request) -> Response:
        try:
            sandbox.faults = faults_from_dict(json.loads(await request.body()))
        except _BAD_PLAN as exc:
            return refuse(str(exc))
        return JSONResponse(faults_to_dict(sandbox.faults))


def notification_routes(app: FastAPI, sandbox: _HasNotifier) -> None:
    """``POST /sandbox/notifications/run``: deliver what is due now; answers how many were
    acknowledged and the subjects still pending."""

    @app.post("/sandbox/notifications/run")
    async def deliver() -> dict[str, Any]:
        notifier = sandbox.notifier
        if notifier is None:
            return {"acked": 0, "pending": []}
        acked = await asyncio.to_thread(notifier.run_due)
        return {"acked": acked, "pending": notifier.pending()}
