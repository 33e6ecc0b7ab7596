"""The HTTP API, the live WebSocket feed and the console: ``create_app(settings)``."""

from factory5g.api.app import API_PREFIX, create_app
from factory5g.api.settings import Settings

__all__ = ["API_PREFIX", "Settings", "create_app"]
