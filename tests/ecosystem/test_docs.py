"""The per-backend option table (docs/backend-options.md, and README.md's copy under ``## Backend options`` when
it has one) against config.example.yaml and against the options each backend's code accepts, so none drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tokenstore
from tests.ecosystem.conftest import ROOT
from tokenstore._registry import BUILTIN_BACKENDS

DOC = ROOT / "docs" / "backend-options.md"
README = ROOT / "README.md"
EXAMPLE = ROOT / "config.example.yaml"
HEADING = "## Backend options"

_NAME = re.compile(r"`([a-z][a-z0-9_]*)`")


def tables_under(text: str, heading: str) -> list[list[dict[str, str]]]:
    """The markdown tables between ``heading`` and the next heading of the same or a higher level, as rows of
    ``{column: cell}``."""
    lines = text.splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    start = lines.index(heading)
    tables: list[list[dict[str, str]]] = []
    current: list[list[str]] = []
    for line in [*lines[start + 1 :], ""]:
        stripped = line.strip()
        ends = stripped.startswith("#") and len(stripped) - len(stripped.lstrip("#")) <= level
        if stripped.startswith("|"):
            current.append([cell.strip() for cell in stripped.strip("|").split("|")])
            continue
        if current:
            header, separator, *rows = current
            assert all(re.fullmatch(r":?-+:?", cell) for cell in separator), f"not a table separator: {separator}"
            tables.append([dict(zip(header, row, strict=True)) for row in rows])
            current = []
        if ends:
            break
    return tables


def names(cell: str) -> list[str]:
    return _NAME.findall(cell)


def backend_table(text: str) -> dict[str, list[str]]:
    """backend -> the options its row lists, from the first table under the heading."""
    table = tables_under(text, HEADING)[0]
    result: dict[str, list[str]] = {}
    for row in table:
        (backend,) = names(row["backend"])
        assert backend not in result, f"{backend} listed twice"
        result[backend] = names(row["options"])
    return result


def mapping_table(text: str) -> dict[str, list[str]]:
    """``backend.option`` -> the keys its row lists, from the second table under the heading."""
    table = tables_under(text, HEADING)[1]
    result: dict[str, list[str]] = {}
    for row in table:
        (option,) = re.findall(r"`([a-z_]+\.[a-z_]+)`", row["option"])
        result[option] = names(row["keys"])
    return result


def example_options() -> dict[str, list[str]]:
    """backend -> the options config.example.yaml documents for it (set or commented out) under ``token:``."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    in_token = False
    for line in EXAMPLE.read_text().splitlines():
        if re.match(r"^[a-z_]+:", line):
            in_token = line.startswith("token:")
            current = None
            continue
        if not in_token:
            continue
        top = re.match(r"^  ([a-z][a-z0-9_]*):(\s|$)", line)
        if top:
            current = top.group(1)
            sections[current] = []
            continue
        option = re.match(r"^    (?:# )?([a-z][a-z0-9_]*):(\s|$)", line)
        if option and current is not None and option.group(1) not in sections[current]:
            sections[current].append(option.group(1))
    sections.pop("cache", None)
    sections.pop("backend", None)
    return sections


def known_options(backend: str, section: dict[str, object], path: str) -> list[str]:
    """The options the backend's code accepts at ``path``: from its error for an unknown option there."""
    with pytest.raises(tokenstore.ConfigError) as info:
        tokenstore.get_backend_class(backend).from_config(tokenstore.Section(section, path=f"token.{backend}"))
    message = str(info.value)
    assert f"{path}.zz_unknown: unknown option" in message, message
    return message.split("known options: ", 1)[1].split(", ")


def test_the_table_covers_every_builtin_backend() -> None:
    table = backend_table(DOC.read_text())
    assert set(table) == set(BUILTIN_BACKENDS)
    assert set(example_options()) == set(BUILTIN_BACKENDS)


@pytest.mark.parametrize("backend", sorted(BUILTIN_BACKENDS))
def test_table_options_match_config_example(backend: str) -> None:
    table = backend_table(DOC.read_text())[backend]
    example = example_options()[backend]
    assert len(table) == len(set(table)), f"{backend}: an option is listed twice"
    assert set(table) == set(example), (
        f"{backend}: in the table only: {sorted(set(table) - set(example))}; "
        f"in config.example.yaml only: {sorted(set(example) - set(table))}"
    )


@pytest.mark.parametrize("backend", sorted(BUILTIN_BACKENDS))
def test_table_options_match_the_code(backend: str) -> None:
    table = backend_table(DOC.read_text())[backend]
    code = known_options(backend, {"zz_unknown": 1}, f"token.{backend}")
    assert set(table) == set(code), f"{backend}: table {sorted(table)} vs code {sorted(code)}"


# the mapping-valued options, with the minimal valid options around them and each method the code knows
_MAPPINGS: dict[str, tuple[str, dict[str, object], str, list[dict[str, object]]]] = {
    "vault.auth": (
        "vault",
        {"url": "https://vault.example:8200", "path": "p"},
        "auth",
        [{"method": "token"}, {"method": "approle"}, {"method": "kubernetes", "role": "r"}],
    ),
    "aws.assume_role": (
        "aws",
        {"secret_id": "s", "region": "eu-west-1"},
        "assume_role",
        [{"role_arn": "arn:aws:iam::123456789012:role/r"}],
    ),
    "azure.credential": (
        "azure",
        {"vault_url": "https://v.vault.azure.net", "name": "n"},
        "credential",
        [{"method": m} for m in ("default", "client_secret", "managed_identity", "workload_identity")],
    ),
    "conjur.authn": (
        "conjur",
        {"url": "https://conjur.example", "account": "a", "login": "host/x", "variable": "v"},
        "authn",
        [{}],
    ),
}


def test_mapping_table_matches_the_code() -> None:
    table = mapping_table(DOC.read_text())
    assert set(table) == set(_MAPPINGS)
    for option, (backend, base, key, variants) in _MAPPINGS.items():
        code: set[str] = set()
        for variant in variants:
            code |= set(known_options(backend, {**base, key: {**variant, "zz_unknown": 1}}, f"token.{option}"))
        assert set(table[option]) == code, f"{option}: table {sorted(table[option])} vs code {sorted(code)}"
        assert key in backend_table(DOC.read_text())[backend]


def test_readme_copy_matches_when_present() -> None:
    readme = README.read_text()
    if HEADING not in readme.splitlines():  # README links docs/backend-options.md instead of copying it
        return
    assert backend_table(readme) == backend_table(DOC.read_text())
    assert mapping_table(readme) == mapping_table(DOC.read_text())


def test_the_parser_sees_what_it_should(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "# Title",
            HEADING,
            "intro",
            "",
            "| backend | options |",
            "|---|---|",
            "| `a` | `x`, `y_z` (default `1`) |",
            "",
            "| option | keys |",
            "|:--|--:|",
            "| `a.m` | `k` |",
            "## Next",
            "| backend | options |",
            "|---|---|",
            "| `b` | `q` |",
        ]
    )
    tables = tables_under(text, HEADING)
    assert len(tables) == 2
    assert tables[0] == [{"backend": "`a`", "options": "`x`, `y_z` (default `1`)"}]
    assert mapping_table(text) == {"a.m": ["k"]}
