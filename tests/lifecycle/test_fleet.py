"""The fleet: check --all, refresh --all, disconnected tenants and offboarding, against the Graph sandbox's many
businesses and real stores (a folder of token files; Vault on OpenBao)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import sender
import tokenstore
from sender.sandbox import SIXTY_DAYS, Sandbox
from tests.contract import assert_clean, canary
from tests.sender.conftest import log_text
from tokenstore import Disconnected, TenantProviders, disconnected_marker
from tokenstore.backends.file import FileBackend
from tokenstore.cli import main

DAY = 86400
TOKEN_SHAPED = re.compile(r"EAA[A-Za-z0-9]{20,}")


@dataclass
class Fleet:
    """A sandbox with businesses, one token file per tenant (the WABA id), a config naming both."""

    sandbox: Sandbox
    folder: Path
    config: Path
    app_secret: str
    wabas: dict[str, str] = field(default_factory=dict)  # name -> WABA id (the tenant key)

    @property
    def secrets(self) -> list[str]:
        return [self.app_secret, *(r.value for r in self.sandbox.tokens())]

    def path(self, tenant: str) -> Path:
        return self.folder / tenant

    def read(self, tenant: str) -> str:
        return FileBackend(self.path(tenant)).get_token().reveal()

    def write(self, tenant: str, value: str) -> None:
        FileBackend(self.path(tenant)).put_token(value)

    def add(self, name: str, *, expires_in: float | None = SIXTY_DAYS, store: bool = True) -> str:
        business = self.sandbox.add_business(name=name, token=canary(), expires_in=expires_in)
        assert business.token is not None
        if store:
            self.write(business.waba_id, business.token)
        self.wabas[name] = business.waba_id
        return business.waba_id

    def tenants(self) -> TenantProviders:
        return tokenstore.tenants_from_config(yaml.safe_load(self.config.read_text()), source=str(self.config))

    def graph(self) -> sender.GraphTokenClient:
        return sender.GraphTokenClient(self.sandbox.app_id, self.app_secret, base_url=self.sandbox.url)


def make_fleet(sandbox: Sandbox, tmp: Path, tenants_section: dict[str, Any] | None = None) -> Fleet:
    app_secret = canary("APPSECRET")
    sandbox.state.app.secret = app_secret
    secret_path = tmp / "app_secret"
    FileBackend(secret_path).put_token(app_secret)
    folder = tmp / "tenants"
    folder.mkdir()
    section = tenants_section or {"token": {"backend": "file", "file": {"path": str(folder / "{tenant}")}}}
    config = tmp / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "whatsapp": {"base_url": sandbox.url, "app_id": sandbox.app_id},
                "app_secret": {"backend": "file", "file": {"path": str(secret_path)}},
                "tenants": section,
            }
        )
    )
    return Fleet(sandbox, folder, config, app_secret)


@pytest.fixture
def fleet(sandbox: Sandbox, tmp_path: Path) -> Fleet:
    return make_fleet(sandbox, tmp_path)


def mixed(fleet: Fleet) -> dict[str, str]:
    """Six tenants, one of each kind; returns name -> tenant key."""
    fleet.add("ok")
    fleet.add("soon", expires_in=3 * DAY)
    fleet.add("never", expires_in=None)
    revoked = fleet.add("revoked")
    fleet.sandbox.revoke_token(fleet.read(revoked))
    gone = fleet.add("uninstalled")
    fleet.sandbox.uninstall(gone)
    marked = fleet.add("marked")
    fleet.write(marked, Disconnected(reason="PARTNER_APP_UNINSTALLED", at=1_700_000_000).value)
    return dict(fleet.wabas)


def run_cli(fleet: Fleet, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--config", str(fleet.config)])
    out, err = capsys.readouterr()
    for text in (out, err):
        assert_clean(text, *fleet.secrets)
        assert not TOKEN_SHAPED.search(text), text
        assert "CANARY" not in text
    return code, out, err


# -- check_tenants (the library) ------------------------------------------------------------------------------


def test_check_tenants_judges_every_kind_in_one_batch_call(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    keys = mixed(fleet)
    with fleet.tenants() as tenants, fleet.graph() as graph:
        report = sender.check_tenants(tenants, graph)
    by = {c.tenant: c for c in report.tenants}
    assert [c.tenant for c in report.tenants] == sorted(keys.values())
    assert by[keys["ok"]].status == "ok" and by[keys["ok"]].exit_code == 0
    assert by[keys["soon"]].status == "warning" and by[keys["soon"]].exit_code == 5
    assert by[keys["never"]].status == "ok" and by[keys["never"]].info.never_expires  # type: ignore[union-attr]
    for name, reason in (("revoked", "TOKEN_REVOKED"), ("uninstalled", "PARTNER_APP_UNINSTALLED")):
        check = by[keys[name]]
        assert check.status == "disconnected" and check.exit_code == 1
        assert check.disconnected is not None and check.disconnected.reason == reason
    marked = by[keys["marked"]]
    assert marked.status == "disconnected" and marked.disconnected is not None
    assert marked.disconnected.at == 1_700_000_000 and marked.info is None  # no Graph call for a marker
    assert report.exit_code == 1
    summary = report.summary()
    assert summary == {
        "summary": True,
        "status": "disconnected",
        "exit_code": 1,
        "tenants": 6,
        "counts": {"ok": 2, "warning": 1, "problem": 0, "disconnected": 3, "error": 0},
        "graph_calls": 1,
    }
    assert fleet.sandbox.route_counts()["batch"] == 1
    assert fleet.sandbox.route_counts()["debug_token"] == 0
    assert sorted(report.disconnected) == sorted(keys[n] for n in ("revoked", "uninstalled", "marked"))
    text = json.dumps([c.to_dict() for c in report.tenants]) + repr(report) + log_text(caplog)
    assert_clean(text, *fleet.secrets)


def test_a_store_failure_is_that_tenants_error_only(fleet: Fleet) -> None:
    good = fleet.add("good")
    bad = fleet.add("bad")
    fleet.path(bad).write_text("two words\n")  # unusable contents
    with fleet.tenants() as tenants, fleet.graph() as graph:
        report = sender.check_tenants(tenants, graph)
    by = {c.tenant: c for c in report.tenants}
    assert by[good].status == "ok"
    assert by[bad].status == "error" and by[bad].exit_code == 3 and "SecretMalformed" in (by[bad].error or "")
    assert report.exit_code == 3  # a store failure is worse than a finding
    assert sender.worst_exit_code([0, 5, 1, 4]) == 4 and sender.worst_exit_code([5, 0]) == 5


def test_an_invalid_token_replaced_meanwhile_is_judged_by_the_new_one(fleet: Fleet) -> None:
    tenant = fleet.add("raced")
    old = fleet.read(tenant)
    new = fleet.sandbox.rotate_business_token(tenant, value=canary())
    fleet.sandbox.revoke_token(old)

    class Racing:
        """The real tenant store; a refresh lands between the check's first read and its second."""

        def __init__(self, inner: TenantProviders) -> None:
            self.inner = inner
            self.reads = 0

        def tenants(self) -> list[str]:
            return self.inner.tenants()

        def get_token(self, key: str) -> tokenstore.Token:
            return self.inner.get_token(key)

        def put_token(self, key: str, value: str) -> str | None:
            return self.inner.put_token(key, value)

        def invalidate(self, key: str, token: tokenstore.Token | None = None) -> None:
            self.inner.invalidate(key, token)

        def provider(self, key: str) -> tokenstore.TokenProvider:
            racing = self

            class Store(tokenstore.TokenProvider):
                source = "racing"

                def get_token(self) -> tokenstore.Token:
                    racing.reads += 1
                    token = FileBackend(fleet.path(key)).get_token()
                    if racing.reads == 1:
                        fleet.write(tenant, new)
                    return token

            return Store()

    with fleet.tenants() as tenants, fleet.graph() as graph:
        report = sender.check_tenants(Racing(tenants), graph)
    (check,) = report.tenants
    assert check.status == "ok" and check.fingerprint == tokenstore.fingerprint_of(new)
    assert report.graph_calls == 2


def test_ten_thousand_tenants_take_two_hundred_graph_calls(fleet: Fleet) -> None:
    for index in range(10_000):
        tenant = f"t{index:05d}"
        value = fleet.sandbox.issue_token(value=f"EAAG{index:05d}{canary()[4:]}", expires_in=SIXTY_DAYS)
        fleet.path(tenant).write_text(value + "\n")
    with fleet.tenants() as tenants, fleet.graph() as graph:
        report = sender.check_tenants(tenants, graph, concurrency=8)
    assert report.count("ok") == 10_000
    assert report.graph_calls == 200
    assert fleet.sandbox.route_counts()["batch"] == 200
    assert sum(fleet.sandbox.route_counts().values()) == 200


# -- disconnected tenants ----------------------------------------------------------------------------------------


def test_uninstall_event_marks_the_tenant_and_onboarding_clears_it(fleet: Fleet) -> None:
    stays = fleet.add("stays")
    leaves = fleet.add("leaves")
    events: list[dict[str, Any]] = []
    fleet.sandbox.add_event_hook(events.append)
    with fleet.tenants() as tenants, fleet.graph() as graph:
        # an uninstall event for a tenant whose token Graph still calls valid: stale, not marked
        stale = sender.account_update_of({"event": "PARTNER_APP_UNINSTALLED", "waba_info": {"waba_id": stays}})
        assert stale == ("PARTNER_APP_UNINSTALLED", stays)
        outcome = sender.handle_account_update(
            tenants, {"event": "PARTNER_APP_UNINSTALLED", "waba_id": stays}, graph=graph
        )
        assert outcome is not None and not outcome.marked and outcome.detail == "token still valid"
        old = fleet.read(leaves)
        payload = fleet.sandbox.uninstall(leaves)
        assert events == [payload]
        value = payload["entry"][0]["changes"][0]["value"]
        assert value["event"] == "PARTNER_APP_UNINSTALLED" and value["waba_info"]["waba_id"] == leaves
        outcome = sender.handle_account_update(tenants, payload, graph=graph)
        assert outcome is not None and outcome.marked and outcome.replaced == tokenstore.fingerprint_of(old)
        again = sender.handle_account_update(tenants, payload, graph=graph)
        assert again is not None and not again.marked and again.detail == "already disconnected"
        assert (
            sender.handle_account_update(tenants, {"event": "PARTNER_APP_INSTALLED", "waba_id": leaves}, graph=graph)
            is None
        )
        marker = disconnected_marker(fleet.read(leaves))
        assert marker is not None and marker.reason == "PARTNER_APP_UNINSTALLED"
        assert old not in fleet.path(leaves).read_text()  # the dead token is gone from the store
        report = sender.check_tenants(tenants, graph)
        assert {c.tenant: c.status for c in report.tenants} == {stays: "ok", leaves: "disconnected"}
        # the customer comes back: a new token for its business, put in the store, reconnects it
        fresh = fleet.sandbox.issue_business_token(leaves, value=canary(), expires_in=SIXTY_DAYS)
        tenants.put_token(leaves, fresh)
        report = sender.check_tenants(tenants, graph)
        assert {c.tenant: c.status for c in report.tenants} == {stays: "ok", leaves: "ok"}


def test_a_sender_on_a_disconnected_tenant_fails_with_190_and_sends_nothing(fleet: Fleet) -> None:
    tenant = fleet.add("gone")
    with fleet.tenants() as tenants:
        sender.mark_disconnected(tenants, tenant, graph=None)
        number = fleet.sandbox.business(tenant).phone_number_id
        with sender.Sender(tenants.provider(tenant), phone_number_id=number, base_url=fleet.sandbox.url) as s:
            with pytest.raises(sender.AuthenticationError):
                s.send_text("15551234567", "hi")
    assert fleet.sandbox.received == []


def test_disconnected_marker_round_trip() -> None:
    marker = Disconnected.now("TOKEN_REVOKED", clock=1_800_000_000)
    assert disconnected_marker(marker.value) == marker
    assert disconnected_marker(tokenstore.Token(marker.value, source="t")) == marker
    assert disconnected_marker("EAAGsomething") is None
    assert disconnected_marker("tokenstore-disconnected:lower:1") is None
    with pytest.raises(ValueError):
        Disconnected(reason="no spaces allowed", at=1)
    assert marker.to_dict() == {"reason": "TOKEN_REVOKED", "since": "2027-01-15T08:00:00+00:00"}


# -- the CLI ------------------------------------------------------------------------------------------------------


def test_check_all_json_lines_and_worst_exit_code(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    keys = mixed(fleet)
    code, out, err = run_cli(fleet, capsys, "check", "--all", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    *tenants, summary = lines
    assert [t["tenant"] for t in tenants] == sorted(keys.values())
    assert {t["tenant"]: t["status"] for t in tenants}[keys["uninstalled"]] == "disconnected"
    assert summary["summary"] is True and summary["exit_code"] == 1 and summary["counts"]["disconnected"] == 3
    assert summary["status"] == "disconnected" and summary["error"] is None
    assert all(line.startswith("tokenstore: warning: ") for line in err.splitlines())  # stdout: JSON only
    code, out, err = run_cli(fleet, capsys, "check", "--all")
    assert code == 1 and f"tenant {keys['uninstalled']} is disconnected" in err
    assert re.search(rf"^{keys['marked']}\s+disconnected\s+-\s+PARTNER_APP_UNINSTALLED since 2023-11-14", out, re.M)


def test_check_all_text(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    ok = fleet.add("ok")
    soon = fleet.add("soon", expires_in=2 * DAY)
    code, out, _ = run_cli(fleet, capsys, "check", "--all")
    assert code == 5
    assert re.search(rf"^{ok}\s+ok\s", out, re.M) and re.search(rf"^{soon}\s+warning\s", out, re.M)
    assert "2 tenants: 1 ok, 1 warning" in out


def test_check_all_without_a_tenants_section_is_a_config_error(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(fleet.config.read_text())
    del data["tenants"]
    fleet.config.write_text(yaml.safe_dump(data))
    code, out, err = run_cli(fleet, capsys, "check", "--all", "--json")
    assert code == 2 and "tenants" in err
    assert json.loads(out)["status"] == "error"


def test_refresh_all(fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("tokenstore.cli.refresh._sleep", waits.append)
    keys = mixed(fleet)
    due2 = fleet.add("soon2", expires_in=5 * DAY)
    failing = fleet.add("failing", expires_in=4 * DAY)
    old = {t: fleet.read(t) for t in (keys["soon"], due2, failing)}
    # the exchange of one tenant fails at Graph: the others go on
    fleet.sandbox.fail_next(2, route="oauth.access_token")
    code, out, err = run_cli(
        fleet, capsys, "refresh", "--all", "--if-expiring-within", "7", "--revoke-old-after", "--json"
    )
    *lines, summary = [json.loads(line) for line in out.splitlines()]
    status = {line["tenant"]: line["status"] for line in lines}
    failed = [t for t in (keys["soon"], due2, failing) if status[t] == "error"]
    assert len(failed) == 1  # whichever exchange came first got the fault
    refreshed = [t for t in (keys["soon"], due2, failing) if t not in failed]
    assert all(status[t] == "refreshed" for t in refreshed)
    assert status[keys["ok"]] == "not-due" and status[keys["never"]] == "skipped"
    assert {status[keys[n]] for n in ("revoked", "uninstalled", "marked")} == {"disconnected"}
    assert summary["counts"]["refreshed"] == 2 and summary["counts"]["error"] == 1 and summary["revoked"] == 2
    assert code == 4  # the worst: a Graph error
    for tenant in refreshed:
        now = fleet.read(tenant)
        assert now != old[tenant]
        assert fleet.sandbox.token_record(old[tenant]).status(fleet.sandbox.clock()) == "revoked"  # type: ignore[union-attr]
        assert fleet.sandbox.token_record(now).status(fleet.sandbox.clock()) == "valid"  # type: ignore[union-attr]
    assert fleet.read(failed[0]) == old[failed[0]]
    assert waits == [330.0, 330.0]  # tenants.token.cache ttl + refresh_ahead (defaults), once per refresh
    assert "waiting" in err


def test_refresh_all_force_refreshes_never_expiring(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tokenstore.cli.refresh._sleep", lambda s: None)
    never = fleet.add("never", expires_in=None)
    old = fleet.read(never)
    code, out, _ = run_cli(fleet, capsys, "refresh", "--all")
    assert code == 0 and re.search(rf"^{never}\s+skipped", out, re.M)
    assert fleet.read(never) == old
    code, out, _ = run_cli(fleet, capsys, "refresh", "--all", "--force")
    assert code == 0 and re.search(rf"^{never}\s+refreshed", out, re.M)
    assert fleet.read(never) != old


def test_offboard_revokes_then_deletes(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    leaving = fleet.add("leaving")
    staying = fleet.add("staying")
    token = fleet.read(leaving)
    code, out, _ = run_cli(fleet, capsys, "offboard", "--tenant", leaving, "--json")
    data = json.loads(out)
    assert code == 0 and data["status"] == "offboarded" and data["revoked"] and data["deleted"]
    assert fleet.sandbox.token_record(token).status(fleet.sandbox.clock()) == "revoked"  # type: ignore[union-attr]
    assert not fleet.path(leaving).exists()
    with fleet.tenants() as tenants:
        assert tenants.tenants() == [staying]
    code, _, err = run_cli(fleet, capsys, "offboard", "--tenant", leaving)
    assert code == 3 and leaving in err  # nothing left to offboard
    code, _, err = run_cli(fleet, capsys, "offboard", "--tenant", "../etc")
    assert code == 2


def test_offboard_keeps_the_secret_when_the_revoke_fails(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    tenant = fleet.add("t")
    fleet.sandbox.fail_next(2, route="oauth.revoke")
    code, out, _ = run_cli(fleet, capsys, "offboard", "--tenant", tenant, "--json")
    data = json.loads(out)
    assert code == 4 and data["revoke_failed"] and not data["deleted"]
    assert fleet.path(tenant).exists()


def test_offboard_on_a_read_only_store_says_so(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = make_fleet(sandbox, tmp_path, {"token": {"backend": "env", "env": {"var": "TS_FLEET_{tenant}"}}})
    business = sandbox.add_business(token=canary(), expires_in=SIXTY_DAYS)
    assert business.token is not None
    monkeypatch.setenv(f"TS_FLEET_{business.waba_id}", business.token)
    code, _, err = run_cli(fleet, capsys, "offboard", "--tenant", business.waba_id)
    assert code == 5 and "cannot delete" in err
    assert sandbox.token_record(business.token).status(sandbox.clock()) == "revoked"  # type: ignore[union-attr]


# -- Vault (OpenBao) ----------------------------------------------------------------------------------------------

from tests.backends.test_vault import bao as bao  # noqa: E402  (the session's OpenBao server)
from tests.servers.openbao import OpenBaoServer  # noqa: E402


@pytest.fixture
def vault_fleet(
    sandbox: Sandbox, tmp_path: Path, bao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Fleet, Any, str]]:
    import uuid

    monkeypatch.setenv("TS_FLEET_VAULT_TOKEN", bao.root_token)
    folder = f"fleet/{uuid.uuid4().hex[:10]}"
    section = {
        "token": {
            "backend": "vault",
            "vault": {
                "url": bao.url,
                "path": folder + "/{tenant}",
                "auth": {"method": "token", "token": {"env": "TS_FLEET_VAULT_TOKEN"}},
            },
        }
    }
    yield make_fleet(sandbox, tmp_path, section), bao.client(), folder


def test_vault_fleet_check_refresh_offboard(
    vault_fleet: tuple[Fleet, Any, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, root, folder = vault_fleet
    monkeypatch.setattr("tokenstore.cli.refresh._sleep", lambda s: None)
    kv = root.secrets.kv.v2

    def write(tenant: str, value: str) -> None:
        kv.create_or_update_secret(path=f"{folder}/{tenant}", secret={"access_token": value})

    def read(tenant: str) -> str:
        return str(
            kv.read_secret_version(path=f"{folder}/{tenant}", raise_on_deleted_version=True)["data"]["data"][
                "access_token"
            ]
        )

    tenants = {}
    for name, life in (("a", SIXTY_DAYS), ("b", 2 * DAY), ("c", SIXTY_DAYS)):
        business = fleet.sandbox.add_business(name=name, token=canary(), expires_in=life)
        assert business.token is not None
        write(business.waba_id, business.token)
        tenants[name] = business.waba_id
    fleet.sandbox.uninstall(tenants["c"])
    code, out, _ = run_cli(fleet, capsys, "check", "--all", "--json")
    *lines, summary = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and summary["counts"] == {"ok": 1, "warning": 1, "problem": 0, "disconnected": 1, "error": 0}
    old_b = read(tenants["b"])
    code, out, _ = run_cli(
        fleet, capsys, "refresh", "--all", "--if-expiring-within", "7", "--revoke-old-after", "--json"
    )
    status = {line["tenant"]: line["status"] for line in map(json.loads, out.splitlines()) if "tenant" in line}
    assert status == {tenants["a"]: "not-due", tenants["b"]: "refreshed", tenants["c"]: "disconnected"}
    assert code == 1
    assert read(tenants["b"]) != old_b
    code, out, _ = run_cli(fleet, capsys, "offboard", "--tenant", tenants["c"])
    assert code == 0
    with fleet.tenants() as t:
        assert t.tenants() == sorted([tenants["a"], tenants["b"]])


# -- GCP Secret Manager and Azure Key Vault: offboarding deletes the tenant's secret -----------------------------

from tests.backends.test_azure import kv as kv  # noqa: E402  (the Key Vault fake)
from tests.backends.test_azure import tls as tls  # noqa: E402
from tests.backends.test_gcp import PROJECT  # noqa: E402
from tests.backends.test_gcp import sm_server as sm_server  # noqa: E402  (the Secret Manager gRPC server)
from tests.servers.azure_keyvault import KeyVaultServer  # noqa: E402
from tests.servers.gcp_secretmanager import SecretManagerServer  # noqa: E402


def test_gcp_offboard_deletes_the_tenants_secret(
    sandbox: Sandbox, tmp_path: Path, sm_server: SecretManagerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import uuid

    prefix = f"wa-f{uuid.uuid4().hex[:8]}-"
    section = {
        "token": {
            "backend": "gcp",
            "gcp": {
                "project": PROJECT,
                "endpoint": sm_server.endpoint,
                "plaintext": True,
                "secret": prefix + "{tenant}",
            },
        }
    }
    fleet = make_fleet(sandbox, tmp_path, section)
    leaving, staying = (sandbox.add_business(token=canary(), expires_in=SIXTY_DAYS) for _ in range(2))
    for business in (leaving, staying):
        assert business.token is not None
        sm_server.add_version(PROJECT, prefix + business.waba_id, business.token)
    code, out, _ = run_cli(fleet, capsys, "offboard", "--tenant", leaving.waba_id, "--json")
    assert code == 0 and json.loads(out)["deleted"]
    assert not sm_server.exists(PROJECT, prefix + leaving.waba_id)
    assert sm_server.exists(PROJECT, prefix + staying.waba_id)
    assert leaving.token is not None
    assert sandbox.token_record(leaving.token).status(sandbox.clock()) == "revoked"  # type: ignore[union-attr]
    with fleet.tenants() as t:
        assert t.tenants() == [staying.waba_id]


def test_azure_offboard_deletes_the_tenants_secret(
    sandbox: Sandbox,
    tmp_path: Path,
    kv: KeyVaultServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uuid

    prefix = f"wa-f{uuid.uuid4().hex[:8]}-"
    client_secret = canary("entra-secret-")
    kv.register_app("tokenstore-fleet-app", client_secret)
    monkeypatch.setenv("TS_FLEET_AZURE_SECRET", client_secret)
    section = {
        "token": {
            "backend": "azure",
            "azure": {
                "vault_url": kv.url,
                "name": prefix + "{tenant}",
                "ca_bundle": kv.ca_pem,
                "verify_challenge_resource": False,
                "credential": {
                    "method": "client_secret",
                    "tenant_id": kv.tenant_id,
                    "client_id": "tokenstore-fleet-app",
                    "client_secret": {"env": "TS_FLEET_AZURE_SECRET"},
                    "authority": kv.url,
                    "disable_instance_discovery": True,
                },
            },
        }
    }
    fleet = make_fleet(sandbox, tmp_path, section)
    leaving, staying = (sandbox.add_business(token=canary(), expires_in=SIXTY_DAYS) for _ in range(2))
    for business in (leaving, staying):
        assert business.token is not None
        kv.set_secret(prefix + business.waba_id, business.token)
    code, out, _ = run_cli(fleet, capsys, "offboard", "--tenant", leaving.waba_id, "--json")
    assert code == 0 and json.loads(out)["deleted"]
    assert kv.deleted(prefix + leaving.waba_id) and not kv.deleted(prefix + staying.waba_id)
    with fleet.tenants() as t:
        assert t.tenants() == [staying.waba_id]


def test_tenants_list_shows_disconnected_tenants(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    stays = fleet.add("stays")
    leaves = fleet.add("leaves")
    with fleet.tenants() as tenants:
        sender.mark_disconnected(tenants, leaves, graph=None, at=1_800_000_000)
    code, out, err = run_cli(fleet, capsys, "tenants", "list", "--json")
    rows = {r["tenant"]: r for r in json.loads(out)["tenants"]}
    assert code == 5 and rows[stays]["disconnected"] is None
    assert rows[leaves]["disconnected"] == {"reason": "PARTNER_APP_UNINSTALLED", "since": "2027-01-15T08:00:00+00:00"}
    code, out, err = run_cli(fleet, capsys, "tenants", "list")
    assert re.search(rf"^{leaves}:.*\[disconnected: PARTNER_APP_UNINSTALLED since 2027-01-15", out, re.M)
    assert "1 tenant(s) are disconnected" in err


def test_tenant_sender_refuses_a_disconnected_tenant_before_any_request(fleet: Fleet) -> None:
    tenant = fleet.add("gone")
    number = fleet.sandbox.business(tenant).phone_number_id
    data = yaml.safe_load(fleet.config.read_text())
    data["tenants"]["numbers"] = {number: tenant}
    with tokenstore.tenants_from_config(data) as tenants:
        sender.mark_disconnected(tenants, tenant, graph=None)
        with sender.TenantSender(tenants, base_url=fleet.sandbox.url) as senders:
            with pytest.raises(sender.TenantDisconnected, match="PARTNER_APP_UNINSTALLED") as info:
                senders.for_number(number).send_text("15551234567", "hi")
    assert info.value.tenant == tenant
    assert fleet.sandbox.route_counts()["messages"] == 0


@pytest.mark.parametrize("mode", ["sync", "native", "aiohttp", "httpx"])
def test_a_marker_written_while_the_old_token_was_cached_is_never_sent(fleet: Fleet, mode: str) -> None:
    """The customer uninstalls and another replica marks the tenant while this sender still has the old token
    cached: that send gets 190, the refetch finds the marker, and the flow ends there (no resend carrying it)."""
    import asyncio

    def another_replica_marks() -> None:
        fleet.sandbox.uninstall(tenant)
        with tokenstore.tenants_from_config(data) as elsewhere:
            sender.mark_disconnected(elsewhere, tenant, graph=None)

    tenant = fleet.add("leaving")
    number = fleet.sandbox.business(tenant).phone_number_id
    data = yaml.safe_load(fleet.config.read_text())
    data["tenants"]["numbers"] = {number: tenant}
    with tokenstore.tenants_from_config(data) as tenants:
        if mode == "sync":
            with sender.TenantSender(tenants, base_url=fleet.sandbox.url) as senders:
                senders.for_number(number).send_text("15551234567", "before")
                another_replica_marks()
                with pytest.raises(sender.TenantDisconnected, match="PARTNER_APP_UNINSTALLED") as info:
                    senders.for_number(number).send_text("15551234567", "after")
        else:

            async def run() -> pytest.ExceptionInfo[sender.TenantDisconnected]:
                async with sender.AsyncTenantSender(
                    tenants, base_url=fleet.sandbox.url, async_transport=mode
                ) as senders:
                    await senders.for_number(number).send_text("15551234567", "before")
                    another_replica_marks()
                    with pytest.raises(sender.TenantDisconnected, match="PARTNER_APP_UNINSTALLED") as caught:
                        await senders.for_number(number).send_text("15551234567", "after")
                    return caught

            info = asyncio.run(run())
    assert info.value.tenant == tenant
    # the first send, and the second with the old (cached, now dead) token: no third request with the marker
    assert fleet.sandbox.route_counts()["messages"] == 2


def test_a_verified_uninstall_webhook_marks_the_tenant(fleet: Fleet) -> None:
    """The sandbox's uninstall, delivered as a signed webhook, parsed into sender's typed event, handled."""
    tenant = fleet.add("leaves")
    payload = fleet.sandbox.uninstall(tenant)
    body = json.dumps(payload).encode()
    (event,) = [e for e in sender.parse_events(json.loads(body)) if isinstance(e, sender.AccountUpdateEvent)]
    assert event.uninstalled and event.account_waba_id == tenant
    with fleet.tenants() as tenants, fleet.graph() as graph:
        outcome = sender.handle_account_update(tenants, event, graph=graph)
        assert outcome is not None and outcome.marked
        assert [c.status for c in sender.check_tenants(tenants, graph).tenants] == ["disconnected"]


def test_two_replicas_refreshing_the_fleet_at_once_leave_one_token_per_tenant(fleet: Fleet) -> None:
    """Two cron jobs start ``refresh --all`` together: per tenant one exchange wins, the loser revokes what it got,
    the old token is revoked once, and no valid token is left that the store does not hold."""
    import threading

    due = [fleet.add(f"due{i}", expires_in=3 * DAY) for i in range(4)]
    old = {t: fleet.read(t) for t in due}
    barrier = threading.Barrier(2)
    reports: list[sender.FleetRefresh] = []

    def replica() -> None:
        with fleet.tenants() as tenants, fleet.graph() as graph:
            barrier.wait(timeout=10)
            reports.append(
                sender.refresh_tenants(
                    tenants, graph, if_expiring_within=7 * DAY, revoke_old_after=0, sleep=lambda s: None
                )
            )

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(reports) == 2
    now = fleet.sandbox.clock()
    for tenant in due:
        stored = fleet.read(tenant)
        assert stored != old[tenant]
        records = fleet.sandbox.business_tokens(tenant)
        valid = [r for r in records if r.status(now) == "valid"]
        assert [r.value for r in valid] == [stored]  # no orphaned valid token
        assert fleet.sandbox.token_record(old[tenant]).status(now) == "revoked"  # type: ignore[union-attr]
        statuses = sorted(r.tenants[[t.tenant for t in r.tenants].index(tenant)].status for r in reports)
        assert statuses.count("refreshed") == 1 and "error" not in statuses  # one exchange won


def test_sandbox_uninstall_over_http(fleet: Fleet) -> None:
    import httpx

    tenant = fleet.add("leaves")
    other = fleet.add("stays")
    token = fleet.read(tenant)
    answer = httpx.post(f"{fleet.sandbox.url}/_sandbox/uninstall", json={"waba_id": tenant}).json()
    assert answer["uninstalled_tokens"] == 1
    assert answer["event"]["entry"][0]["changes"][0]["value"]["event"] == "PARTNER_APP_UNINSTALLED"
    assert_clean(json.dumps(answer), *fleet.secrets)
    assert httpx.get(f"{fleet.sandbox.url}/_sandbox/events").json()["events"] == [answer["event"]]
    number = fleet.sandbox.business(tenant).phone_number_id
    sent = httpx.post(
        f"{fleet.sandbox.url}/v27.0/{number}/messages",
        headers={"Authorization": f"Bearer {token}"},
        json={"messaging_product": "whatsapp", "to": "15551234567", "type": "text", "text": {"body": "x"}},
    )
    error = sent.json()["error"]
    assert sent.status_code == 401 and error["code"] == 190 and error["error_subcode"] == 458
    assert fleet.sandbox.token_record(fleet.read(other)).status(fleet.sandbox.clock()) == "valid"  # type: ignore[union-attr]
    bad = httpx.post(f"{fleet.sandbox.url}/_sandbox/uninstall", json={"waba_id": "../x"})
    assert bad.status_code == 400


def test_marking_a_read_only_store_says_so(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = make_fleet(sandbox, tmp_path, {"token": {"backend": "env", "env": {"var": "TS_RO_{tenant}"}}})
    business = sandbox.add_business(token=canary(), expires_in=SIXTY_DAYS)
    assert business.token is not None
    monkeypatch.setenv(f"TS_RO_{business.waba_id}", business.token)
    sandbox.uninstall(business.waba_id)
    with fleet.tenants() as tenants, fleet.graph() as graph:
        with pytest.raises(tokenstore.WriteNotSupported):
            sender.mark_disconnected(tenants, business.waba_id, graph=graph)
        # check --all still finds it: Graph calls its token invalid and the store has nothing newer
        (check,) = sender.check_tenants(tenants, graph).tenants
        assert check.status == "disconnected" and check.disconnected is not None
        assert check.disconnected.reason == "PARTNER_APP_UNINSTALLED"


def test_offboard_unroutes_the_tenants_numbers_kept_in_the_store(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "tenants"
    section = {
        "token": {"backend": "file", "file": {"path": str(folder / "{tenant}")}},
        "numbers_from": {"backend": "file", "file": {"path": str(tmp_path / "numbers")}},
    }
    fleet = make_fleet(sandbox, tmp_path, section)
    leaving, staying = fleet.add("leaving"), fleet.add("staying")
    mine, theirs = sandbox.business(leaving).phone_number_id, sandbox.business(staying).phone_number_id
    with fleet.tenants() as tenants:
        tenants.add_numbers({mine: leaving, theirs: staying})
    code, out, _ = run_cli(fleet, capsys, "offboard", "--tenant", leaving, "--json")
    data = json.loads(out)
    assert code == 0 and data["numbers_removed"] == [mine]
    with fleet.tenants() as tenants:
        assert tenants.numbers() == {theirs: staying}
