"""The CLI for many tenants: ``tokenstore tenants list [--json]``, ``tokenstore show --tenant T`` and
``tokenstore send --from PHONE_NUMBER_ID``; bad input is one line naming the file and field, never a token."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sender.sandbox import Business, Sandbox
from tests.contract import CANARY_MARK, canary
from tokenstore import fingerprint_of
from tokenstore.backends.file import FileBackend
from tokenstore.cli import main

TO = "15551234567"


@dataclass
class Setup:
    sandbox: Sandbox
    folder: Path
    config: Path
    a: Business
    b: Business
    #: a number mapped to a tenant that has no token in the store (not onboarded yet)
    orphan_number: str = "777000000000001"
    orphan_tenant: str = "900000000000001"

    def write_config(self, **tenants: Any) -> Path:
        data = {
            "whatsapp": {"base_url": self.sandbox.url, "api_version": "v26.0", "retry": False},
            "tenants": {
                "token": {"backend": "file", "file": {"path": str(self.folder / "{tenant}")}},
                "numbers": {
                    **{n: self.a.waba_id for n in self.a.phone_number_ids},
                    self.b.phone_number_id: self.b.waba_id,
                    self.orphan_number: self.orphan_tenant,
                },
                **tenants,
            },
        }
        self.config.write_text(yaml.safe_dump(data))
        return self.config


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with Sandbox() as sandbox:
        folder = tmp_path / "tenants"
        folder.mkdir()
        a = sandbox.add_business(name="Acme", numbers=2, token=canary())
        b = sandbox.add_business(name="Bolt", token=canary())
        for business in (a, b):
            FileBackend(folder / business.waba_id).put_token(business.token or "")
        result = Setup(sandbox=sandbox, folder=folder, config=tmp_path / "tenants.yaml", a=a, b=b)
        result.write_config()
        yield result


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert CANARY_MARK not in out + err
    assert "Traceback" not in err
    return code, out, err


def test_tenants_list(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["tenants", "list", "--config", str(setup.config)], capsys)
    assert code == 5  # one number's tenant has no token in the store
    assert re.search(rf"^{setup.a.waba_id}:\s+{', '.join(sorted(setup.a.phone_number_ids))}$", out, re.MULTILINE)
    assert re.search(rf"^{setup.b.waba_id}:\s+{setup.b.phone_number_id}$", out, re.MULTILINE)
    assert re.search(rf"^{setup.orphan_tenant}:\s+{setup.orphan_number}   \[no token in the store\]$", out, re.M)
    assert re.search(r"^tenants:\s+2 in the store$", out, re.MULTILINE)
    assert (
        err.startswith("tokenstore: warning: 1 tenant(s) named in the numbers map have no token")
        and setup.orphan_tenant in err
    )

    code, out, _ = run(["tenants", "list", "--json", "-c", str(setup.config)], capsys)
    data = json.loads(out)
    assert code == 5 and data["status"] == "warning" and data["exit_code"] == 5 and data["count"] == 2
    assert data["tenants"] == [
        {"tenant": setup.a.waba_id, "numbers": sorted(setup.a.phone_number_ids), "in_store": True},
        {"tenant": setup.b.waba_id, "numbers": [setup.b.phone_number_id], "in_store": True},
        {"tenant": setup.orphan_tenant, "numbers": [setup.orphan_number], "in_store": False},
    ]
    assert data["source"].startswith("file:") and "{tenant}" in data["source"]

    # a tenant in the store with no number yet is listed too; with every tenant stored the exit code is 0
    c = setup.sandbox.add_business(token=canary())
    FileBackend(setup.folder / c.waba_id).put_token(c.token or "")
    setup.write_config(numbers={setup.a.phone_number_id: setup.a.waba_id})
    code, out, _ = run(["tenants", "list", "--json", "-c", str(setup.config)], capsys)
    data = json.loads(out)
    assert code == 0 and data["status"] == "ok"
    assert [(t["tenant"], t["numbers"]) for t in data["tenants"]] == [
        (setup.a.waba_id, [setup.a.phone_number_id]),
        (setup.b.waba_id, []),
        (c.waba_id, []),
    ]


def test_show_tenant(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["show", "--tenant", setup.b.waba_id, "--config", str(setup.config)], capsys)
    assert code == 0
    assert re.search(rf"^tenant:\s+{setup.b.waba_id}$", out, re.MULTILINE)
    assert re.search(rf"^fingerprint:\s+{fingerprint_of(setup.b.token or '')}$", out, re.MULTILINE)
    code, out, _ = run(["show", "--tenant", setup.a.waba_id, "--json", "-c", str(setup.config)], capsys)
    data = json.loads(out)
    assert data["tenant"] == setup.a.waba_id and data["fingerprint"] == fingerprint_of(setup.a.token or "")

    code, _, err = run(["show", "--tenant", "../a", "-c", str(setup.config)], capsys)
    assert code == 2 and err.startswith("tokenstore: error: InvalidTenantKey:")
    code, _, err = run(["show", "--tenant", setup.orphan_tenant, "-c", str(setup.config)], capsys)
    assert code == 3 and err.startswith("tokenstore: error: UnknownTenant:") and setup.orphan_tenant in err
    code, _, err = run(["show", "--tenant", setup.a.waba_id, "--section", "token", "-c", str(setup.config)], capsys)
    assert code == 2 and "--tenant and --section" in err


def test_send_from_a_number(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    number = setup.a.phone_number_ids[1]
    argv = ["send", "--from", number, "--to", TO, "--text", "from the CLI", "--json", "-c", str(setup.config)]
    code, out, _ = run(argv, capsys)
    data = json.loads(out)
    assert code == 0 and data["tenant"] == setup.a.waba_id and data["from"] == number
    assert data["token"] == fingerprint_of(setup.a.token or "")
    (message,) = setup.sandbox.received
    assert (message.phone_number_id, message.waba_id, message.text) == (number, setup.a.waba_id, "from the CLI")

    code, _, err = run(["send", "--from", "999000999", "--to", TO, "--text", "x", "-c", str(setup.config)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert str(setup.config) in err and "tenants.numbers" in err and "999000999" in err
    code, _, err = run(
        ["send", "--from", setup.orphan_number, "--to", TO, "--text", "x", "-c", str(setup.config)], capsys
    )
    assert code == 3 and setup.orphan_tenant in err

    setup.sandbox.revoke_business_token(setup.b.waba_id)
    argv = ["send", "--from", setup.b.phone_number_id, "--to", TO, "--text", "dead", "--json", "-c", str(setup.config)]
    code, out, err = run(argv, capsys)
    data = json.loads(out)
    assert code == 4 and data["status"] == "error" and "TenantDisconnected" in data["error"]
    assert setup.b.waba_id in err and "reconnect" in err
    assert len(setup.sandbox.received) == 1


def test_bad_tenant_config_names_file_and_field(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(setup.config.read_text())
    data["tenants"]["token"]["file"]["path"] = str(setup.folder / "one-file")
    setup.config.write_text(yaml.safe_dump(data))
    for argv in (["tenants", "list"], ["send", "--from", setup.b.phone_number_id, "--to", TO, "--text", "x"]):
        code, _, err = run([*argv, "-c", str(setup.config)], capsys)
        assert code == 2 and str(setup.config) in err and "tenants.token.file" in err and "{tenant}" in err, err
    data["tenants"]["token"]["file"]["path"] = str(setup.folder / "{tenant}")
    data["tenants"]["numbers"] = ["not", "a", "map"]
    setup.config.write_text(yaml.safe_dump(data))
    code, _, err = run(["tenants", "list", "-c", str(setup.config)], capsys)
    assert code == 2 and str(setup.config) in err and "tenants.numbers" in err
