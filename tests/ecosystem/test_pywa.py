"""pywa (from PyPI, written by others) sending through our token layer, against the sandbox.

pywa takes an ``httpx.Client`` (``pywa_async``: an ``httpx.AsyncClient``) as ``session``. We give it one with
``sender.TokenAuth`` (the token from the store on every request, 190 -> refetch -> resend once) and
``sender.RedirectTransport`` (pywa pins https://graph.facebook.com; the transport sends its requests to the
sandbox instead). pywa's own ``token`` argument gets a placeholder: the auth flow replaces its static header
on every request, so the real token is never handed to pywa.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import sender
import tokenstore
from sender.sandbox import Sandbox
from tests.conftest import need
from tests.ecosystem.conftest import TO
from tests.sender.conftest import Store, log_text

try:
    from pywa import WhatsApp
    from pywa.errors import WhatsAppError
    from pywa.types.templates import TemplateLanguage
    from pywa_async import WhatsApp as AsyncWhatsApp
except ImportError:  # the autouse fixture below skips (fails in CI)
    WhatsApp = AsyncWhatsApp = WhatsAppError = TemplateLanguage = None


@pytest.fixture(autouse=True)
def _pywa_installed() -> None:
    need(WhatsApp is not None, "pywa (pip install pywa)")


#: what pywa gets as ``token``: any non-empty string; TokenAuth overwrites the header it makes of it
PLACEHOLDER = "set-by-tokenstore"


def known_fingerprints(*values: str) -> set[str]:
    return {tokenstore.fingerprint_of(v) for v in values}


@pytest.fixture
def pywa_client(sandbox: Sandbox, store: Store) -> Iterator[tuple[Any, sender.TokenAuth, tokenstore.TokenProvider]]:
    provider = store.cached()
    auth = sender.TokenAuth(provider)
    session = httpx.Client(auth=auth, transport=sender.RedirectTransport(sandbox.url), timeout=10)
    wa = WhatsApp(phone_id=sandbox.phone_number_id, token=PLACEHOLDER, session=session, api_version="26.0")
    yield wa, auth, provider
    session.close()
    provider.close()


def test_pywa_sends_through_our_auth_and_survives_rotation_with_revocation(
    sandbox: Sandbox, store: Store, pywa_client: tuple[Any, sender.TokenAuth, Any], caplog: pytest.LogCaptureFixture
) -> None:
    wa, auth, provider = pywa_client
    before = [wa.send_message(to=TO, text=f"before {i}") for i in range(3)]
    template = wa.send_template(to=TO, name="hello_world", language=TemplateLanguage.ENGLISH_US)

    new = store.rotate()  # a new token in the store, the old one revoked at Graph; nothing restarts

    after = [wa.send_message(to=TO, text=f"after {i}") for i in range(3)]

    ids = [m.id for m in [*before, template, *after]]
    assert all(i.startswith("wamid.") for i in ids) and len(set(ids)) == len(ids)
    # no lost message, none twice: every send arrived exactly once
    counts = sandbox.received_counts()
    assert counts == {**{f"before {i}": 1 for i in range(3)}, None: 1, **{f"after {i}": 1 for i in range(3)}}
    assert [m.message_id for m in sandbox.received] == ids
    # one 401 (the first send after the revocation), answered by one resend with the new token
    assert [r.status for r in sandbox.requests] == [200] * 4 + [401] + [200] * 3
    assert (auth.rejections, auth.resends, auth.failures) == (1, 1, 0)
    assert tokenstore.provider_metrics(provider)["resends"] == 1
    # pywa's placeholder never reached Graph: only the store's tokens did
    assert {r.token_fingerprint for r in sandbox.requests} == known_fingerprints(store.initial, new)
    assert sandbox.requests[-1].token_fingerprint == tokenstore.fingerprint_of(new)
    log = log_text(caplog)
    assert store.initial not in log and new not in log


def test_pywa_alone_loses_the_send_after_a_revocation(sandbox: Sandbox, store: Store) -> None:
    """The contrast: pywa with the token captured at start-up (its documented use) fails once it is revoked."""
    session = httpx.Client(transport=sender.RedirectTransport(sandbox.url), timeout=10)
    try:
        wa = WhatsApp(phone_id=sandbox.phone_number_id, token=store.initial, session=session, api_version="26.0")
        wa.send_message(to=TO, text="first")
        store.rotate()
        with pytest.raises(WhatsAppError) as info:
            wa.send_message(to=TO, text="second")
        assert info.value.code == 190
    finally:
        session.close()
    assert sandbox.received_counts() == {"first": 1}


def test_pywa_gets_a_clear_error_when_the_store_still_holds_the_revoked_token(
    sandbox: Sandbox, store: Store, pywa_client: tuple[Any, sender.TokenAuth, Any]
) -> None:
    wa, auth, _ = pywa_client
    wa.send_message(to=TO, text="ok")
    sandbox.revoke_token(store.initial)
    with pytest.raises(sender.AuthenticationError) as info:
        wa.send_message(to=TO, text="lost")
    assert "rotate the token in the store" in str(info.value)
    assert store.initial not in str(info.value)
    assert [r.status for r in sandbox.requests] == [200, 401]
    assert auth.failures == 1


async def test_pywa_async_sends_through_our_auth_and_survives_rotation(sandbox: Sandbox, store: Store) -> None:
    provider = store.cached()
    auth = sender.TokenAuth(provider)
    async with httpx.AsyncClient(auth=auth, transport=sender.RedirectTransport(sandbox.url), timeout=10) as session:
        wa = AsyncWhatsApp(phone_id=sandbox.phone_number_id, token=PLACEHOLDER, session=session, api_version="26.0")
        first = await wa.send_message(to=TO, text="async before")
        new = store.rotate()
        second = await wa.send_message(to=TO, text="async after")
        third = await wa.send_template(to=TO, name="hello_world", language=TemplateLanguage.ENGLISH_US)
    assert first.id != second.id != third.id
    assert sandbox.received_counts() == {"async before": 1, "async after": 1, None: 1}
    assert [r.status for r in sandbox.requests] == [200, 401, 200, 200]
    assert (auth.rejections, auth.resends, auth.failures) == (1, 1, 0)
    assert {r.token_fingerprint for r in sandbox.requests} == known_fingerprints(store.initial, new)
    await provider.aclose()
