"""The risk check point every payment passes before it is sent (P2). Rules come later; the
decision values and the place in the flow are fixed now."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from clearhouse.money import Money


class Verdict(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"  # proceed, and put the payment in front of a person afterwards
    CHALLENGE = "challenge"  # the payer must verify first (SMS, password): refused until then
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class RiskSubject:
    merchant_id: str
    amount: Money
    channel: str
    payer_id: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...] = ()


class RiskCheck(Protocol):
    def decide(self, subject: RiskSubject) -> Decision: ...


class AllowAll:
    """The default until rules are configured: every payment is allowed, with that reason."""

    def decide(self, subject: RiskSubject) -> Decision:
        return Decision(Verdict.ALLOW, ("no rules configured",))
