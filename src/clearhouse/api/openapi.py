"""The merchant API's OpenAPI document, as committed in docs/openapi.json."""

from __future__ import annotations

import json
from typing import Any, cast

from clearhouse.api.app import create_api
from clearhouse.gateway.service import Gateway


def document() -> dict[str, Any]:
    # The document depends on the routes only; no handler runs, so no gateway is needed.
    return create_api(cast(Gateway, None)).openapi()


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
