"""``tokenstore demo``, the fleet part: two customers onboarded from Embedded Signup send with their own tokens,
one uninstalls, ``check --all`` reports it disconnected (exit 1), its sends stop, the other keeps sending."""

from __future__ import annotations

import re

import pytest

from tests.lifecycle.conftest import TOKEN_SHAPED
from tokenstore.cli import main


def test_demo_fleet_part(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert not TOKEN_SHAPED.search(out + err) and "CANARY" not in out + err
    part = out[out.index("The fleet: two customers onboarded") :]
    onboarded = re.findall(
        r"customer ([AB]) finished Embedded Signup: .* token (sha256:[0-9a-f]{12}), stored as tenant (\d+)", part
    )
    assert [c for c, _, _ in onboarded] == ["A", "B"]
    tokens = {c: fp for c, fp, _ in onboarded}
    tenants = {c: t for c, _, t in onboarded}
    for name in "AB":
        assert re.search(rf"\(customer {name}\): wamid\S+ with token {tokens[name]} \(its own\)", part)
    assert re.search(rf"^{tenants['A']}\s+ok\s", part, re.M)
    assert re.search(rf"^{tenants['B']}\s+disconnected\s+-\s+PARTNER_APP_UNINSTALLED since", part, re.M)
    assert "(exit 1: a disconnected tenant is a problem; 1 Graph batch call for all tenants)" in part
    assert f"TenantDisconnected (tenant {tenants['B']}); nothing was sent" in part
    assert re.search(rf"customer A keeps sending: wamid\S+ with token {tokens['A']}", part)
    assert f"tenant {tenants['B']} is disconnected" in err
