"""``env``: the token in an environment variable (read on every fetch, so a changed value is seen)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from .._config import Section
from .._errors import SecretNotFound
from .._parsing import one_word
from .._provider import Backend
from .._token import Token

__all__ = ["EnvBackend"]


class EnvBackend(Backend):
    """Reads ``os.environ[var]``. Read-only: rotate by restarting with the new value, or use another store."""

    name = "env"
    tenant_options = ("var",)

    def __init__(self, var: str) -> None:
        self.var = var
        self.source = f"env:{var}"

    @classmethod
    def from_config(cls, section: Section) -> EnvBackend:
        section.reject_unknown(("var",))
        var = section.get_str("var", "WHATSAPP_TOKEN")
        if not var.replace("_", "a").isalnum() or var[0].isdigit():
            section.fail("var", "must be an environment variable name (letters, digits and _)")
        return cls(var)

    def get_token(self) -> Token:
        value = os.environ.get(self.var)
        if value is None:
            raise SecretNotFound("environment variable is not set", source=self.source)
        return Token(one_word(value, source=self.source, what="the environment variable"), source=self.source)

    async def aget_token(self) -> Token:
        return self.get_token()

    # -- many tenants: one variable per tenant ---------------------------------------------------------------
    def tenant_key_problem(self, tenant: str) -> str | None:
        if not _VAR_PART.fullmatch(tenant):
            return "an environment variable name holds only letters, digits and '_'"
        return None

    def named(self, option: str, name: str) -> EnvBackend:
        return EnvBackend(name)

    def list_names(self, option: str, prefix: str, suffix: str = "") -> Iterable[str]:
        """The environment's variable names that start with ``prefix`` and end with ``suffix``."""
        return [name for name in list(os.environ) if name.startswith(prefix) and name.endswith(suffix)]

    async def alist_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        return list(self.list_names(option, prefix, suffix))


_VAR_PART = re.compile(r"[A-Za-z0-9_]+")
