"""``tokenstore demo``, the fleet part: two customers onboarded from Embedded Signup, both sending, one
uninstalls the app, and ``tokenstore check --all`` reports it.

A ``tenants:`` section (one token file per tenant, the routing map kept in the store) is added to the demo's
config. The sandbox, standing in for Meta, issues two Embedded Signup codes (single use, 30 seconds);
``sender.onboard`` turns each into the customer's business token, stored under the tenant (its WABA id), and
adds the WABA's phone numbers to the routing map. A ``sender.TenantSender`` sends from each customer's
number, each with that customer's own token. Then customer B removes the app in Business Settings: its token
dies (Graph's 190/458) and the ``account_update`` ``PARTNER_APP_UNINSTALLED`` webhook arrives;
``sender.handle_account_update`` marks the tenant disconnected in the store. ``tokenstore check --all`` (one
Graph batch call) reports B disconnected and exits 1; a send from B's number fails at once with
``TenantDisconnected`` (nothing sent), and A keeps sending. Only fingerprints are printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import EXIT_OK, EXIT_PROBLEM, narrate

if TYPE_CHECKING:
    from sender.sandbox import Sandbox

__all__ = ["run_fleet"]

RECIPIENT = "15551234567"


def _say(text: str) -> None:
    narrate(text)  # and the library warnings its step caused, right after it


def run_fleet(sandbox: Sandbox, folder: Path, config_path: Path) -> int:
    import yaml

    import sender

    from .. import tenants_from_config
    from . import main

    _say("")
    _say("The fleet: two customers onboarded from Embedded Signup, one uninstalls, check --all reports it")
    tenants_folder = folder / "tenants"
    tenants_folder.mkdir(mode=0o700)
    config: dict[str, Any] = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["tenants"] = {
        "token": {"backend": "file", "file": {"path": str(tenants_folder / "{tenant}")}, "cache": {"ttl": 300}},
        "numbers_from": {"backend": "file", "file": {"path": str(folder / "tenant-numbers")}},
    }
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    ok = True
    with (
        sender.GraphTokenClient.from_config(config_path, purpose="onboarding") as graph,
        tenants_from_config(config, source=str(config_path)) as tenants,
    ):
        customers: dict[str, tuple[str, str, str]] = {}  # name -> (tenant, number, token fingerprint)
        for step, name in ((1, "A"), (2, "B")):
            code = sandbox.signup_code(numbers=1, name=f"Customer {name}")
            onboarded = sender.onboard(code, graph, tenants)
            entry = onboarded.tenants[0]
            customers[name] = (entry.tenant, entry.numbers[0], onboarded.fingerprint)
            _say(
                f"{step}. customer {name} finished Embedded Signup: its 30-second code became token "
                f"{onboarded.fingerprint}, stored as tenant {entry.tenant} (number {entry.numbers[0]} routed to it)"
            )

        with sender.TenantSender.from_config(config_path) as senders:
            for step, name in ((3, "A"), (4, "B")):
                _, number, fingerprint = customers[name]
                result = senders.for_number(number).send_text(RECIPIENT, f"hello from customer {name}")
                mine = result.token_fingerprint == fingerprint
                ok = ok and mine
                _say(
                    f"{step}. sent from {number} (customer {name}): {result.message_id} with token "
                    f"{result.token_fingerprint} ({'its own' if mine else 'NOT its own'})"
                )

            tenant_b, number_b, _ = customers["B"]
            payload = sandbox.uninstall(tenant_b)
            outcome = sender.handle_account_update(tenants, payload, graph=graph)
            marked = outcome is not None and outcome.marked
            ok = ok and marked
            _say(
                f"5. customer B removed the app: its token now gets Graph's 190; the account_update "
                f"PARTNER_APP_UNINSTALLED webhook marked tenant {tenant_b} disconnected in the store"
                + ("" if marked else " (NOT marked)")
            )
            mark = sandbox.route_counts()["batch"]
            _say("6. tokenstore check --all:")
            exit_code = main(["check", "--all", "--config", str(config_path)])
            calls = sandbox.route_counts()["batch"] - mark
            _say(f"   (exit {exit_code}: a disconnected tenant is a problem; {calls} Graph batch call for all tenants)")
            ok = ok and exit_code == EXIT_PROBLEM

            before = len(sandbox.received)
            try:
                senders.for_number(number_b).send_text(RECIPIENT, "hello again from customer B")
                ok = False
                _say("7. a send from customer B's number went out (NOT expected)")
            except sender.TenantDisconnected as exc:
                _say(f"7. a send from customer B's number: TenantDisconnected (tenant {exc.tenant}); nothing was sent")
            _, number_a, fingerprint_a = customers["A"]
            again = senders.for_number(number_a).send_text(RECIPIENT, "hello again from customer A")
            ok = ok and again.token_fingerprint == fingerprint_a and len(sandbox.received) == before + 1
            _say(f"8. customer A keeps sending: {again.message_id} with token {again.token_fingerprint}")

    if not ok:
        print("tokenstore: error: demo failed: the fleet part did not go as expected", file=sys.stderr)
        return EXIT_PROBLEM
    _say("9. every customer sent with its own token; the one who left shows up as disconnected, not as silence.")
    return EXIT_OK
