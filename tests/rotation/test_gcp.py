"""The Secret Manager SECRET_ROTATE handler against the local gRPC Secret Manager (the real client library) and
the Graph sandbox as Meta.

Messages carry the documented notification attributes (``eventType``, ``secretId``, ``dataFormat``) and the Secret
resource as base64 JSON, delivered as a Cloud Run push envelope, a Cloud Functions CloudEvent, or a first-generation
background event; settings come from ``$TOKENSTORE_CONFIG``, the app secret from its own Secret Manager secret.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from sender.rotation import GcpRotation, RotationFailed, gcp_pubsub_handler
from tests.contract import assert_clean
from tests.rotation.conftest import GCP_PROJECT, GcpRig, assert_logs_clean, issue, log_text, status
from tokenstore import fingerprint_of

pytestmark = pytest.mark.backend("gcp")


def test_secret_rotate_adds_the_refreshed_token(gcp: GcpRig, caplog: pytest.LogCaptureFixture) -> None:
    push = gcp.push()
    result = gcp_pubsub_handler(push)
    new = gcp.latest()
    assert result["action"] == "refreshed" and result["version"] == "2" and len(gcp.versions()) == 2
    assert new != gcp.initial and result["new_fingerprint"] == fingerprint_of(new)
    assert status(gcp.sandbox, new) == "valid" and status(gcp.sandbox, gcp.initial) == "valid"
    # Pub/Sub delivers at least once: the same message again finds a token issued after it was published
    again = gcp_pubsub_handler(json.dumps(push))
    assert again["action"] == "nothing" and "already rotated" in again["notes"][0]
    assert len(gcp.versions()) == 2 and gcp.sandbox.route_counts()["oauth.access_token"] == 1
    assert_logs_clean(caplog, gcp.sandbox)


def test_a_cloud_event_and_a_background_event(gcp: GcpRig, caplog: pytest.LogCaptureFixture) -> None:
    class CloudEvent:  # what functions_framework hands a @cloud_event function for a Pub/Sub trigger
        def __init__(self, data: dict[str, Any]) -> None:
            self.data = data

        def __getitem__(self, key: str) -> str:
            return {"type": "google.cloud.pubsub.topic.v1.messagePublished"}[key]

    assert GcpRotation()(CloudEvent(gcp.push()))["action"] == "refreshed"

    class Context:  # first-generation background functions: (event, context)
        timestamp = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)).isoformat()

    background = gcp.message()
    del background["publishTime"]
    assert gcp_pubsub_handler(background, Context())["action"] == "refreshed"
    assert len(gcp.versions()) == 3
    assert_logs_clean(caplog, gcp.sandbox)


def test_revoke_after_a_configured_grace(gcp: GcpRig, caplog: pytest.LogCaptureFixture) -> None:
    gcp.write_config(rotation={"revoke_old_after": 12})
    waits: list[float] = []
    result = GcpRotation(sleep=waits.append)(gcp.push())
    assert waits == [12.0] and result["revoked"] == [fingerprint_of(gcp.initial)]
    assert status(gcp.sandbox, gcp.initial) == "revoked" and status(gcp.sandbox, gcp.latest()) == "valid"
    assert_logs_clean(caplog, gcp.sandbox)


def test_the_project_may_come_as_a_number(gcp: GcpRig) -> None:
    assert gcp_pubsub_handler(gcp.push(project="123456789012"))["action"] == "refreshed"


# -- bad input: a clear logged failure, the latest version untouched ----------------------------------------------
def failing(gcp: GcpRig, caplog: pytest.LogCaptureFixture, message: Any, match: str) -> RotationFailed:
    before = gcp.versions()
    with pytest.raises(RotationFailed, match=match) as info:
        gcp_pubsub_handler(message)
    assert gcp.versions() == before
    assert any(r.levelname == "ERROR" and r.name == "sender.rotation" for r in caplog.records)
    assert_logs_clean(caplog, gcp.sandbox)
    assert_clean(str(info.value), gcp.app_secret, *(r.value for r in gcp.sandbox.tokens()))
    return info.value


def test_a_message_for_a_secret_not_configured(gcp: GcpRig, caplog: pytest.LogCaptureFixture) -> None:
    failing(gcp, caplog, gcp.push(secret=gcp.secret + "-other"), "is not configured here")
    failing(gcp, caplog, gcp.push(project="another-project"), "is not configured here")
    assert gcp.sandbox.route_counts()["oauth.access_token"] == 0


def test_a_missing_app_secret(gcp: GcpRig, caplog: pytest.LogCaptureFixture) -> None:
    gcp.write_config(app_secret=None)
    failing(gcp, caplog, gcp.push(), r"app_secret.*required for the Secret Manager SECRET_ROTATE handler")


def test_a_stored_token_graph_rejects(gcp: GcpRig, caplog: pytest.LogCaptureFixture) -> None:
    gcp.sandbox.revoke_token(gcp.initial)
    failing(gcp, caplog, gcp.push(), "refused: nothing was changed")
    assert gcp.sandbox.route_counts()["oauth.access_token"] == 0


def test_a_notification_of_another_type_changes_nothing(gcp: GcpRig, caplog: pytest.LogCaptureFixture) -> None:
    result = gcp_pubsub_handler(gcp.push(kind="SECRET_VERSION_ADD"))  # what our own write publishes
    assert result["action"] == "ignored" and len(gcp.versions()) == 1
    assert "ignored a SECRET_VERSION_ADD notification" in log_text(caplog)
    assert gcp.sandbox.route_counts()["debug_token"] == 0


def test_not_a_pubsub_message(gcp: GcpRig, caplog: pytest.LogCaptureFixture) -> None:
    failing(gcp, caplog, "{not json", "not JSON")
    failing(gcp, caplog, {"message": {"data": ""}}, "not a Pub/Sub message")
    bad = gcp.push()
    bad["message"]["attributes"]["secretId"] = "secrets/x"
    failing(gcp, caplog, bad, "is not projects/PROJECT/secrets/NAME")


def test_a_tenants_secret_is_rotated_and_only_that_one(gcp: GcpRig, caplog: pytest.LogCaptureFixture) -> None:
    run = uuid.uuid4().hex[:8]
    for tenant in ("acme", "globex"):
        gcp.server.add_version(GCP_PROJECT, f"wa-{run}-{tenant}", issue(gcp.sandbox, age=30 * 86400))
    template = {"backend": "gcp", "gcp": {**gcp.data["token"]["gcp"], "secret": f"wa-{run}-{{tenant}}"}}
    gcp.write_config(token=None, tenants={"token": template})
    result = gcp_pubsub_handler(gcp.push(secret=f"wa-{run}-globex"))
    assert result["action"] == "refreshed" and result["tenant"] == "globex"
    assert len(gcp.server.versions(GCP_PROJECT, f"wa-{run}-globex")) == 2
    assert len(gcp.server.versions(GCP_PROJECT, f"wa-{run}-acme")) == 1
    with pytest.raises(RotationFailed, match="is not configured here"):
        gcp_pubsub_handler(gcp.push(secret=gcp.secret))  # the old single secret: no longer configured
    assert len(gcp.versions()) == 1
    assert_logs_clean(caplog, gcp.sandbox)
