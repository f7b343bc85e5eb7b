"""What the API's route modules share: the error responses every route documents, request
parsing into the API's error shape, and the signature of a guarded handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from fastapi import Request, Response
from pydantic import BaseModel, ValidationError

from clearhouse.api import guard
from clearhouse.api.schemas import ErrorOut
from clearhouse.errors import ClearhouseError

M = TypeVar("M", bound=BaseModel)
MAX_ID = 2**63 - 1
Handler = Callable[[guard.Caller, bytes], tuple[int, Any]]

ERRORS_DOC: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 402, 403, 404, 409, 422, 503)
}


class Guarded(Protocol):
    """Authenticate the request, then run ``handler`` (under its Idempotency-Key if
    ``idempotent``) on a worker thread and render its answer or error."""

    def __call__(
        self, request: Request, handler: Handler, *, idempotent: bool
    ) -> Awaitable[Response]: ...


def parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise ClearhouseError("request body is not valid JSON", code="MALFORMED_JSON") from exc
        raise ClearhouseError(
            "request body does not match the schema", code="VALIDATION_ERROR", errors=errors
        ) from exc


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}
