"""The Key Vault SecretNearExpiry handler against the local Key Vault fake (the real SDK over HTTPS, a real
ClientSecretCredential against the fake's Entra endpoint) and the Graph sandbox as Meta.

Events are built in Key Vault's documented shape (``data``: Id, VaultName, ObjectType, ObjectName, Version, NBF,
EXP), in the Event Grid schema and as CloudEvents 1.0; settings come from ``$TOKENSTORE_CONFIG``, the app secret
from its own Key Vault secret.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from sender.rotation import AzureRotation, RotationFailed, azure_event_handler
from tests.contract import assert_clean
from tests.rotation.conftest import AzureRig, assert_logs_clean, issue, log_text, status
from tokenstore import fingerprint_of

pytestmark = pytest.mark.backend("azure")


def test_near_expiry_sets_the_refreshed_token_with_its_own_expiry(
    azure: AzureRig, caplog: pytest.LogCaptureFixture
) -> None:
    event = azure.event()
    (result,) = azure_event_handler(event)
    latest = azure.latest()
    new = latest.value
    assert result["action"] == "refreshed" and result["new_fingerprint"] == fingerprint_of(new)
    assert new != azure.initial and status(azure.sandbox, new) == "valid"
    record = azure.sandbox.token_record(new)
    assert record is not None and latest.exp == record.expires_at  # Key Vault fires again 30 days before it
    assert result["version"] == latest.version
    assert status(azure.sandbox, azure.initial) == "valid"  # left to expire on its own (within 30 days)
    assert azure.sandbox.route_counts()["oauth.access_token"] == 1
    # Event Grid delivers at least once: the same event again finds a newer version and does nothing
    (again,) = azure_event_handler(event)
    assert again["action"] == "nothing" and "already rotated" in again["notes"][0]
    assert azure.latest().version == latest.version and azure.sandbox.route_counts()["oauth.access_token"] == 1
    assert_logs_clean(caplog, azure.sandbox)


def test_cloudevents_a_batch_json_text_and_a_functions_event(azure: AzureRig, caplog: pytest.LogCaptureFixture) -> None:
    class EventGridEvent:  # the shape azure.functions hands a Python function with an Event Grid trigger
        def __init__(self, event: dict[str, Any]) -> None:
            self.event_type, self.subject, self.id = event["eventType"], event["subject"], event["id"]
            self._data = event["data"]

        def get_json(self) -> Any:
            return self._data

    (first,) = azure_event_handler(json.dumps(azure.event(cloudevents=True)).encode())
    assert first["action"] == "refreshed"
    (second,) = AzureRotation()(EventGridEvent(azure.event()))
    assert second["action"] == "refreshed"
    batch = azure_event_handler([azure.event(kind="Microsoft.KeyVault.SecretNewVersionCreated"), azure.event()])
    assert [r["action"] for r in batch] == ["ignored", "refreshed"]
    assert len(azure.kv.versions(azure.name)) == 4
    assert_logs_clean(caplog, azure.sandbox)


def test_revoke_after_a_configured_grace(azure: AzureRig, caplog: pytest.LogCaptureFixture) -> None:
    azure.write_config(rotation={"revoke_old_after": 45})
    waits: list[float] = []
    (result,) = AzureRotation(sleep=waits.append)(azure.event())
    assert waits == [45.0] and status(azure.sandbox, azure.initial) == "revoked"
    assert result["revoked"] == [fingerprint_of(azure.initial)]
    assert status(azure.sandbox, azure.latest().value) == "valid"
    assert_logs_clean(caplog, azure.sandbox)


def test_subscription_validation_is_answered(azure: AzureRig) -> None:
    event = {"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": "512d38b6"}}
    assert azure_event_handler([event]) == {"validationResponse": "512d38b6"}


# -- bad input: a clear logged failure, the latest version untouched ----------------------------------------------
def failing(azure: AzureRig, caplog: pytest.LogCaptureFixture, event: Any, match: str) -> RotationFailed:
    before = [v.version for v in azure.kv.versions(azure.name)]
    with pytest.raises(RotationFailed, match=match) as info:
        azure_event_handler(event)
    assert [v.version for v in azure.kv.versions(azure.name)] == before
    assert any(r.levelname == "ERROR" and r.name == "sender.rotation" for r in caplog.records)
    assert_logs_clean(caplog, azure.sandbox)
    assert_clean(str(info.value), azure.app_secret, *(r.value for r in azure.sandbox.tokens()))
    return info.value


def test_an_event_for_a_secret_not_configured(azure: AzureRig, caplog: pytest.LogCaptureFixture) -> None:
    other = azure.name + "-other"
    azure.kv.set_secret(other, issue(azure.sandbox))
    failing(azure, caplog, azure.event(name=other), "is not configured here")
    assert len(azure.kv.versions(other)) == 1 and azure.sandbox.route_counts()["oauth.access_token"] == 0


def test_an_event_from_another_vault(azure: AzureRig, caplog: pytest.LogCaptureFixture) -> None:
    event = azure.event()
    event["data"]["Id"] = event["data"]["Id"].replace("127.0.0.1", "other-vault.vault.azure.net")
    failing(azure, caplog, event, "is not configured here")


def test_a_missing_app_secret(azure: AzureRig, caplog: pytest.LogCaptureFixture) -> None:
    azure.write_config(app_secret=None)
    failing(azure, caplog, azure.event(), r"app_secret.*required for the Key Vault SecretNearExpiry handler")


def test_a_stored_token_graph_rejects(azure: AzureRig, caplog: pytest.LogCaptureFixture) -> None:
    azure.sandbox.revoke_token(azure.initial)
    failing(azure, caplog, azure.event(), "refused: nothing was changed")
    assert azure.sandbox.route_counts()["oauth.access_token"] == 0


def test_an_event_of_another_type_changes_nothing(azure: AzureRig, caplog: pytest.LogCaptureFixture) -> None:
    before = [v.version for v in azure.kv.versions(azure.name)]
    (result,) = azure_event_handler(azure.event(kind="Microsoft.KeyVault.SecretExpired"))
    assert result["action"] == "ignored" and [v.version for v in azure.kv.versions(azure.name)] == before
    assert "ignored an event of type Microsoft.KeyVault.SecretExpired" in log_text(caplog)
    assert azure.sandbox.route_counts()["oauth.access_token"] == 0


def test_not_an_event(azure: AzureRig, caplog: pytest.LogCaptureFixture) -> None:
    failing(azure, caplog, b"not json", "not JSON")
    failing(azure, caplog, 42, "not an Event Grid or CloudEvents event")
    event = azure.event()
    del event["data"]["ObjectName"]
    event["subject"] = azure.name
    failing(azure, caplog, event, "no ObjectName")


def test_a_tenants_secret_is_rotated_and_only_that_one(azure: AzureRig, caplog: pytest.LogCaptureFixture) -> None:
    run = uuid.uuid4().hex[:8]
    names = {tenant: f"wa-{run}-{tenant}" for tenant in ("acme", "globex")}
    for name in names.values():
        azure.kv.set_secret(name, issue(azure.sandbox))
    template = {"backend": "azure", "azure": {**azure.data["token"]["azure"], "name": f"wa-{run}-{{tenant}}"}}
    azure.write_config(token=None, tenants={"token": template})
    azure.name = names["acme"]
    (result,) = azure_event_handler(azure.event())
    assert result["action"] == "refreshed" and result["tenant"] == "acme"
    assert len(azure.kv.versions(names["acme"])) == 2 and len(azure.kv.versions(names["globex"])) == 1
    assert_logs_clean(caplog, azure.sandbox)
