"""``tokenstore check --all`` and ``tokenstore refresh --all``: every tenant of the ``tenants:`` section.

The work is the library's (``sender.check_tenants``, ``sender.refresh_tenants``); this module reads the
config, prints one line per tenant and a summary, and returns the worst exit code (0 < 5 < 1 < 4 < 3).
With ``--json`` every line is a JSON object: one per tenant (``{"tenant", "status", "exit_code", ...}``)
and a last one with ``"summary": true`` (and ``status``, ``exit_code``, ``error``, the counts). Only
fingerprints are printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._common import EXIT_OK, emit_lines, warning

if TYPE_CHECKING:
    from sender import FleetCheck, FleetRefresh, GraphTokenClient, SenderSettings
    from tokenstore import TenantProviders

CHECK_ALL_HELP = (
    "check every tenant of the tenants: section (Graph batch calls, 50 tenants per call); one line per tenant "
    "and a summary; exit code: the worst"
)
REFRESH_ALL_HELP = (
    "refresh every due tenant of the tenants: section (one tenant's failure does not stop the others); "
    "never-expiring tokens are skipped unless --force"
)


def load_fleet(
    config_path: str | None, *, purpose: str
) -> tuple[TenantProviders, GraphTokenClient, SenderSettings, Mapping[str, Any]]:
    """The config's tenants and a Graph token client for its app (ConfigError naming what is missing)."""
    from sender import graph_client_from_config, read_config, settings_from_config

    from .. import ConfigError, tenants_from_config

    data, source = read_config(config_path)
    if data.get("tenants") is None:
        raise ConfigError(
            f"required for {purpose}: the section naming each tenant's token (tenants: {{token: ...}} with "
            "{tenant} in the secret's name)",
            source=source,
            field="tenants",
        )
    settings = settings_from_config(data, source=source, require_phone_number_id=False)
    graph = graph_client_from_config(data, settings, purpose=purpose, cache=False)
    try:
        tenants = tenants_from_config(data, source=source)
    except BaseException:
        graph.close()
        raise
    return tenants, graph, settings, data


def _text_check(report: FleetCheck) -> None:
    width = max((len(t.tenant) for t in report.tenants), default=6)
    for item in report.tenants:
        info = item.info
        if item.status == "error":
            detail = item.error or ""
        elif item.status == "disconnected" and item.disconnected is not None:
            detail = f"{item.disconnected.reason} since {item.disconnected.since.isoformat(timespec='seconds')}"
        else:
            if info is None or info.expires_at is None:
                expiry = "never expires"
            else:
                expiry = "expires " + info.expires_at.isoformat(timespec="seconds")
            detail = "; ".join([expiry, *item.problems, *item.warnings])
        print(f"{item.tenant:<{width}}  {item.status:<12}  {item.fingerprint or '-':<19}  {detail}")
    summary = report.summary()
    counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items())
    print(f"{summary['tenants']} tenants: {counts} ({summary['graph_calls']} Graph calls)")


def run_check_all(args: argparse.Namespace) -> int:
    from sender import check_tenants

    tenants, graph, _, _ = load_fleet(args.config, purpose="check --all")
    with graph, tenants:
        report = check_tenants(tenants, graph, warn_days=args.warn_days)
    code = report.exit_code
    if args.json:
        summary = report.summary()
        return emit_lines(args, [t.to_dict() for t in report.tenants], summary, code=code, status=summary["status"])
    _text_check(report)
    for name in report.disconnected:
        warning(f"tenant {name} is disconnected: ask the customer to reconnect (onboard again), or offboard it")
    return code


def _revoke_wait(tenants: TenantProviders, value: float | str, default: str) -> tuple[float, str]:
    if value != default:
        return float(value), "as given by --revoke-old-after"
    policy = tenants.policy
    return (
        policy.ttl + policy.refresh_ahead,
        f"tenants.token.cache ttl {policy.ttl:g} s + refresh_ahead {policy.refresh_ahead:g} s, by when every "
        "replica with this cache policy has each new token; if yours cache longer, pass --revoke-old-after SECONDS",
    )


def _text_refresh(report: FleetRefresh) -> None:
    width = max((len(t.tenant) for t in report.tenants), default=6)
    for item in report.tenants:
        result = item.result
        if item.status == "refreshed" and result is not None:
            detail = f"{result.old_fingerprint} -> {result.new_fingerprint}"
            if result.revoked:
                detail += ", old token revoked"
            elif result.revoke_failed:
                detail += f", revoking the old token FAILED ({result.revoke_note}): revoke it later"
        else:
            detail = item.detail or ""
        print(f"{item.tenant:<{width}}  {item.status:<12}  {detail}")
    summary = report.summary()
    counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items())
    print(f"{summary['tenants']} tenants: {counts}; {summary['revoked']} old tokens revoked")


def run_refresh_all(args: argparse.Namespace, *, default_wait: str, sleep: Any) -> int:
    from sender import refresh_tenants

    tenants, graph, _, _ = load_fleet(args.config, purpose="refresh --all")
    with graph, tenants:
        wait = None if args.revoke_old_after is None else _revoke_wait(tenants, args.revoke_old_after, default_wait)
        if wait is not None:
            print(f"tokenstore: waiting: {wait[0]:g} s before revoking each old token ({wait[1]})", file=sys.stderr)
        report = refresh_tenants(
            tenants,
            graph,
            if_expiring_within=None if args.if_expiring_within is None else args.if_expiring_within * 86400,
            revoke_old_after=None if wait is None else wait[0],
            wait_reason=None if wait is None else wait[1],
            force=args.force,
            sleep=sleep,
        )
    code = report.exit_code
    if args.json:
        summary = report.summary()
        return emit_lines(args, [t.to_dict() for t in report.tenants], summary, code=code, status=summary["status"])
    _text_refresh(report)
    return code if report.tenants else EXIT_OK
