"""``tokenstore demo`` part 3: status webhooks verified with the app secret from the store, an app-secret
reset mid-stream with no webhook lost, and an unknown outcome settled from its webhook; fingerprints only."""

from __future__ import annotations

import re

import pytest

from tests.lifecycle.conftest import TOKEN_SHAPED
from tokenstore.cli import main


def test_demo_shows_webhooks_and_an_app_secret_reset(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo"])
    out, err = capsys.readouterr()
    assert code == 0, err
    part = out[out.index("Webhooks: ") :]
    assert not TOKEN_SHAPED.search(out + err) and "CANARY" not in out
    assert "the GET handshake echoed hub.challenge" in part
    assert part.count("verified: ") == 15
    for n in (1, 2, 3, 4):
        assert [
            s
            for s in ("sent", "delivered", "read")
            if re.search(rf"verified: {s}\s+wamid\S+ \(biz_opaque_callback_data demo-{n}\)", part)
        ] == ["sent", "delivered", "read"]
    assert re.search(
        r"17\. app secret reset at Meta: webhooks are now signed with (sha256:[0-9a-f]{12}); the store still holds sha256:[0-9a-f]{12}",
        part,
    )
    assert "HTTP 401" in part and "18. the operator wrote" in part
    assert "raised OutcomeUnknown: True; its status webhook says sent, so it is not resent blind" in part
    assert re.search(r"20\. all 15 status webhooks delivered and verified, none lost \([1-9]\d* refused", part)
    # the sandbox's app secrets are 32 hex digits: never printed (the reconciler's reference is demo-<32 hex>)
    assert not re.search(r"(?<!demo-)\b[0-9a-f]{32}\b", part)
