"""``tokenstore offboard --tenant T``: a customer leaves: revoke its token, then delete its secret.

``sender.offboard_tenant`` does the work: the tenant's token is revoked at Graph at once (unless Graph
already calls it invalid, or the tenant is disconnected), then its secret is deleted where the store can
(file: removed; Vault KV v2: metadata and every version; AWS Secrets Manager: scheduled deletion, 7 days'
recovery; SSM: deleted; GCP: the secret and every version; Azure Key Vault: soft-deleted, recoverable for the
vault's retention period). A store that cannot delete (Conjur, env) says so (exit 5): remove the secret there
yourself.
When the revoke fails nothing is deleted (exit 4).
"""

from __future__ import annotations

import argparse

from ._common import UsageError, add_config_option, add_json_option, command, emit, warning

HELP = "offboard a tenant: revoke its token at Graph, then delete its secret where the store can"
EPILOG = """\
exit codes:
  0  revoked (or already invalid) and the secret deleted
  2  config or usage error (no tenants: section, an invalid tenant key)
  3  the secret store failed, or holds no secret for this tenant
  4  the revoke failed: nothing was deleted (run it again)
  5  revoked, but this store cannot delete the secret: remove it in the store yourself

Only fingerprints are printed."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "offboard", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_option(parser)
    parser.add_argument("--tenant", metavar="T", help="the tenant key (by default its WABA id); required")
    parser.add_argument("--keep-secret", action="store_true", help="revoke the token but leave the secret in place")
    add_json_option(parser)
    parser.set_defaults(func=command(run))


def run(args: argparse.Namespace) -> int:
    from sender import offboard_tenant

    from .. import InvalidTenantKey, check_tenant_key
    from .fleet import load_fleet

    tenants, graph, _, _ = load_fleet(args.config, purpose="offboard")
    with graph, tenants:
        if args.tenant is None:
            raise UsageError("--tenant T is required: the tenant to offboard")
        try:
            tenant = check_tenant_key(args.tenant)
        except InvalidTenantKey as exc:
            raise UsageError(f"--tenant: {exc}") from None
        result = offboard_tenant(tenants, tenant, graph=graph, delete=not args.keep_secret)
    if result.delete_note and not args.keep_secret:
        warning(f"tenant {tenant}: {result.delete_note}")
    rows = [
        ("tenant", tenant),
        ("token", result.fingerprint or "-"),
        ("source", result.source or "-"),
        ("revoked", "yes" if result.revoked else (result.revoke_note or "no")),
        ("secret", "deleted" if result.deleted else (result.delete_note or "kept")),
        ("numbers", ", ".join(result.numbers_removed) + " unrouted" if result.numbers_removed else "-"),
    ]
    status = "offboarded" if result.exit_code == 0 else None
    return emit(args, result.to_dict(), code=result.exit_code, status=status, rows=rows)
