"""``GET /debug_token``: what Graph knows about a token (validity, type, scopes, expiry), sync and async.

It authenticates with the app token ``{app-id}|{app-secret}``, sent in the ``Authorization`` header so it
never appears in a URL. The inspected token has to go in the query string (the endpoint is GET-only): the
log redaction installed here keeps it out of httpx's request log line. An invalid or expired token still
gets HTTP 200 with ``is_valid: false`` and the reason; only a refused call (bad app token...) raises.
"""

from __future__ import annotations

import httpx

from tokenstore import Token, fingerprint_of

from ._config import DEFAULT_API_VERSION, DEFAULT_BASE_URL, DEFAULT_TIMEOUT, check_api_version, check_base_url
from ._exceptions import OutcomeUnknown, SendError
from ._http import default_headers, error_for_response, json_body, network_error, ssl_context
from ._models import TokenInfo
from ._redact import install_log_redaction

__all__ = ["adebug_token", "debug_token"]


def _value(secret: Token | str, what: str) -> str:
    value = secret.reveal() if isinstance(secret, Token) else secret
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} is empty")
    return value.strip()


def _prepare(
    input_token: Token | str, app_id: str, app_secret: Token | str, base_url: str, api_version: str
) -> tuple[str, dict[str, str], dict[str, str], list[str], str]:
    for problem, name in ((check_base_url(base_url), "base_url"), (check_api_version(api_version), "api_version")):
        if problem:
            raise ValueError(f"{name} {problem}")
    if not str(app_id).strip().isdigit():
        raise ValueError("app_id must be the numeric Meta app id")
    token = _value(input_token, "the token to inspect")
    secret = _value(app_secret, "the app secret")
    url = f"{base_url.rstrip('/')}/{api_version}/debug_token"
    headers = {**default_headers(), "Authorization": f"Bearer {str(app_id).strip()}|{secret}"}
    return url, {"input_token": token}, headers, [token, secret], fingerprint_of(token)


def _parse(response: httpx.Response, scrub: list[str], fingerprint: str, what: str) -> TokenInfo:
    if response.status_code != 200:
        raise error_for_response(response, secrets=scrub, what=what)
    body = json_body(response)
    if not isinstance(body, dict):
        raise OutcomeUnknown(f"{what} answered HTTP 200 without JSON", http_status=200)
    try:
        return TokenInfo.from_response(body, fingerprint=fingerprint)
    except ValueError as exc:
        raise SendError(f"{what}: {exc}", http_status=200) from None


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

    Raises :class:`~sender.SendError` subclasses when the call itself is refused or fails.
    """
    install_log_redaction()
    url, params, headers, scrub, fingerprint = _prepare(input_token, app_id, app_secret, base_url, api_version)
    what = f"GET /{api_version}/debug_token"
    own = client is None
    http = client or httpx.Client(timeout=timeout or DEFAULT_TIMEOUT, verify=ssl_context(ca_bundle))
    try:
        response = http.get(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        error = network_error(exc, what=what)
        raise error from exc
    finally:
        if own:
            http.close()
    return _parse(response, scrub, fingerprint, what)


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
    install_log_redaction()
    url, params, headers, scrub, fingerprint = _prepare(input_token, app_id, app_secret, base_url, api_version)
    what = f"GET /{api_version}/debug_token"
    own = client is None
    http = client or httpx.AsyncClient(timeout=timeout or DEFAULT_TIMEOUT, verify=ssl_context(ca_bundle))
    try:
        response = await http.get(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        error = network_error(exc, what=what)
        raise error from exc
    finally:
        if own:
            await http.aclose()
    return _parse(response, scrub, fingerprint, what)
