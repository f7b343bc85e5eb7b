"""The merchant API of one serving process, built from the environment: the factory uvicorn
imports in each worker of ``clearhouse serve --workers N``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from clearhouse.api.app import create_api
from clearhouse.bootstrap import build_app, gateway_for
from clearhouse.clock import SystemClock
from clearhouse.config import load_settings
from clearhouse.errors import ConfigurationError
from clearhouse.gateway.channels.config import load_document, ports_from_document


def create() -> FastAPI:
    settings = load_settings()
    if settings.channels_file is None or settings.public_url is None:
        raise ConfigurationError(
            "a serving worker needs CLEARHOUSE_CHANNELS_FILE and CLEARHOUSE_PUBLIC_URL"
        )
    app = build_app(settings)
    document = load_document(Path(settings.channels_file))
    gateway = gateway_for(app, ports_from_document(document, SystemClock()), settings.public_url)
    return create_api(gateway)
