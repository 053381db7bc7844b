"""``GET /debug_token``: what Graph knows about a token (validity, type, scopes, expiry), sync and async.

One-call helpers over :class:`~sender.GraphTokenClient` / :class:`~sender.AsyncGraphTokenClient`: the app
token ``{app-id}|{app-secret}`` goes in the ``Authorization`` header (never in a URL, and never the token
inspecting itself); the inspected token has to go in the query string (the endpoint is GET-only), and the
log redaction keeps it out of httpx's request log line. An invalid or expired token still gets HTTP 200 with
``is_valid: false`` and the reason; only a refused call (bad app token...) raises.
"""

from __future__ import annotations

import httpx

from tokenstore import Token

from ._config import DEFAULT_API_VERSION, DEFAULT_BASE_URL
from ._lifecycle import AsyncGraphTokenClient, GraphTokenClient
from ._models import TokenInfo

__all__ = ["adebug_token", "debug_token"]


def debug_token(
    input_token: Token | str,
    *,
    app_id: str,
    app_secret: Token | str,
    base_url: str = DEFAULT_BASE_URL,
    api_version: str = DEFAULT_API_VERSION,
    timeout: httpx.Timeout | float | None = None,
    ca_bundle: str | None = None,
    client: httpx.Client | None = None,
) -> TokenInfo:
    """Inspect ``input_token`` with the app token of ``app_id``/``app_secret``.

    Raises :class:`~sender.SendError` subclasses when the call itself is refused or fails
    (:class:`~sender.AppCredentialsError` when Graph rejects the app token).
    """
    with GraphTokenClient(
        app_id,
        app_secret,
        base_url=base_url,
        api_version=api_version,
        timeout=timeout,
        ca_bundle=ca_bundle,
        http_client=client,
    ) as graph:
        return graph.inspect(input_token)


async def adebug_token(
    input_token: Token | str,
    *,
    app_id: str,
    app_secret: Token | str,
    base_url: str = DEFAULT_BASE_URL,
    api_version: str = DEFAULT_API_VERSION,
    timeout: httpx.Timeout | float | None = None,
    ca_bundle: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> TokenInfo:
    """The async :func:`debug_token`."""
    async with AsyncGraphTokenClient(
        app_id,
        app_secret,
        base_url=base_url,
        api_version=api_version,
        timeout=timeout,
        ca_bundle=ca_bundle,
        http_client=client,
    ) as graph:
        return await graph.inspect(input_token)
