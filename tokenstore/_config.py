"""YAML configuration: loading, ``${ENV}`` interpolation, validated access to sections.

Every error names the file and the dotted field (``config.yaml: token.vault.path: ...``) and says what to do.
No secret value is ever part of a message: config values are only echoed back for fields that are not
credentials, and credentials are never literals in the file (they come from ``{env: VAR}`` or ``{file: PATH}``
references, or from the stores' own credential chains).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ._errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_CONFIG_VAR",
    "SecretRef",
    "Section",
    "find_config_path",
    "is_loopback_host",
    "load_config",
    "resolve_config_path",
    "shown_value",
]

ENV_CONFIG_VAR = "TOKENSTORE_CONFIG"
DEFAULT_CONFIG_FILE = "tokenstore.yaml"

_REQUIRED: Any = object()
_INTERP = re.compile(r"\$\$|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _suggest(word: str, choices: Iterable[str]) -> str:
    import difflib  # only on the error path (import cost)

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def is_loopback_host(host: str | None) -> bool:
    """Whether a URL's host is this machine (``localhost`` or a loopback address): plain http is only for it."""
    if not host:
        return False
    if host == "localhost":
        return True
    import ipaddress  # only when a URL is checked (import cost)

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown_value(value: str) -> str:
    """A config value for an error message: short values quoted, long ones described, never echoed.

    A long value in a field that expects a word or a number is most likely a token pasted in the wrong place;
    repeating it would carry it into logs and CI output.

    >>> shown_value("v27")
    "'v27'"
    >>> shown_value("EAA" + "x" * 40)
    'a value of 43 characters (not shown: it may be a secret)'
    """
    if len(value) <= 24:
        return repr(value)
    return f"a value of {len(value)} characters (not shown: it may be a secret)"


shown = shown_value  # the name tokenstore's own modules use


def _name(name: str) -> str:
    """An environment variable's name for a message, unless it looks like a pasted secret.

    Conventional names (UPPER_SNAKE) and short ones are shown; a long mixed-case one is not echoed.
    """
    if (name.isupper() or len(name) <= 24) and len(name) <= 64:
        return name
    return "(named in this field; it does not look like a variable name: was a credential pasted here?)"


_FROM_ENV = f" (from ${ENV_CONFIG_VAR})"


def config_dir(source: str | None) -> Path | None:
    """The folder of the config file a source label (see :func:`resolve_config_path`) names, or None."""
    if not source:
        return None
    return Path(source.removesuffix(_FROM_ENV)).parent


def resolve_path(value: str, source: str | None) -> str:
    """A file path from the config: ``~`` expanded; relative to the config file's folder when it came from a
    file (``source``), else to the working directory."""
    path = Path(value).expanduser()
    folder = config_dir(source)
    if not path.is_absolute() and folder is not None:
        path = folder / path
    return str(path)


def find_config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the config file: the argument, else ``$TOKENSTORE_CONFIG``, else ``./tokenstore.yaml``."""
    return resolve_config_path(path)[0]


def resolve_config_path(path: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """The config file (see :func:`find_config_path`; ``~`` expanded) and the label errors name it by: the
    path, plus `` (from $TOKENSTORE_CONFIG)`` when that variable chose it (so a stale variable is found)."""
    if path is not None:
        file = Path(path).expanduser()
        return file, str(file)
    env = os.environ.get(ENV_CONFIG_VAR)
    if env:
        file = Path(env).expanduser()
        return file, f"{file}{_FROM_ENV}"
    default = Path(DEFAULT_CONFIG_FILE)
    if default.exists():
        return default, str(default)
    raise ConfigError(
        f"no config file given: pass a path (--config FILE), set ${ENV_CONFIG_VAR}, "
        f"or create ./{DEFAULT_CONFIG_FILE} (see config.example.yaml)"
    )


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Read a YAML config file, interpolate ``${VAR}`` / ``${VAR:-default}``, and check its top level.

    Returns the plain dict; ``Section(cfg[...], path=..., source=...)`` gives validated access to a part.
    ``source``: the label errors name the file by (default: from :func:`resolve_config_path`).
    """
    import yaml

    file, label = resolve_config_path(path)
    source = source or label
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a YAML config file", source=source) from None
    except PermissionError:
        raise ConfigError("cannot read the config file (permission denied)", source=source) from None
    except UnicodeDecodeError:
        raise ConfigError("the config file is not UTF-8 text", source=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "syntax error"
        # the YAML library's own message quotes the offending text, which may be a secret: keep our own
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from None
    if data is None:
        raise ConfigError("the config file is empty; see config.example.yaml", source=source)
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, got {_type_name(data)}", source=source)
    result = interpolate(data, environ=os.environ if environ is None else environ, source=source)
    assert isinstance(result, dict)
    check_top_level(result, source=source)
    return result


TOP_LEVEL_KEYS = ("whatsapp", "token", "app_secret", "tenants", "webhook", "rotation")


def check_top_level(config: Mapping[str, Any], *, source: str | None) -> None:
    """Reject unknown top-level keys (``x-`` prefixed keys are free for YAML anchors)."""
    for key in config:
        if not isinstance(key, str):
            raise ConfigError(f"top-level keys must be strings, got {_type_name(key)}", source=source)
        if key.startswith("x-") or key in TOP_LEVEL_KEYS:
            continue
        raise ConfigError(
            f"unknown top-level section{_suggest(key, TOP_LEVEL_KEYS)}; known: {', '.join(TOP_LEVEL_KEYS)}",
            source=source,
            field=key,
        )


def interpolate(value: Any, *, environ: Mapping[str, str], source: str | None, path: str = "") -> Any:
    """Replace ``${VAR}`` (required) and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            out[k] = interpolate(v, environ=environ, source=source, path=sub)
        return out
    if isinstance(value, list):
        return [interpolate(v, environ=environ, source=source, path=f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        expr = match.group(1)
        name, sep, default = expr.partition(":-")
        if not _VAR_NAME.match(name):
            raise ConfigError(
                "bad interpolation: use ${VAR} or ${VAR:-default} (write $$ for a literal $)",
                source=source,
                field=path or None,
            )
        got = environ.get(name)
        if got is None or (got == "" and sep):
            if sep:
                return default
            raise ConfigError(
                f"environment variable {_name(name)} is not set; set it, or give a default with ${{VAR:-value}}",
                source=source,
                field=path or None,
            )
        return got

    return _INTERP.sub(replace, value)


@dataclass(frozen=True)
class SecretRef:
    """A credential the config points to, never contains: an environment variable or a file.

    Files are re-read on every :meth:`read` (a Kubernetes projected token changes under us).
    """

    env: str | None = None
    file: str | None = None
    field: str = "?"
    config_source: str | None = None

    def describe(self) -> str:
        return f"${_name(self.env)}" if self.env else f"file {self.file}"

    def _where(self) -> str:
        return f"{self.config_source}: {self.field}" if self.config_source else self.field

    def read(self, *, source: str | None = None) -> str:
        """The credential's value, stripped of surrounding whitespace.

        A store credential missing from the environment (the variable unset or empty, the file missing,
        unreadable or empty) is :class:`~tokenstore.AccessDenied` naming the field, the file and ``source``
        (the store): the one rule every backend follows (see the errors module)."""
        from ._errors import AccessDenied

        where = self._where()
        if self.env:
            value = os.environ.get(self.env)
            if value is None or not value.strip():
                raise AccessDenied(
                    f"the store's credential is missing: environment variable {_name(self.env)} is not set or "
                    f"empty ({where}); set it to the credential",
                    source=source,
                )
            return value.strip()
        assert self.file is not None
        try:
            value = Path(self.file).expanduser().read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AccessDenied(
                f"the store's credential is missing: file {self.file} does not exist ({where})", source=source
            ) from None
        except (PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
            raise AccessDenied(
                f"the store's credential is missing: cannot read file {self.file} ({type(exc).__name__}; {where})",
                source=source,
            ) from None
        if not value.strip():
            raise AccessDenied(f"the store's credential is missing: file {self.file} is empty ({where})", source=source)
        return value.strip()


class Section:
    """Validated, typed access to one mapping of the config, with errors naming file and dotted field."""

    __slots__ = ("data", "path", "source")

    def __init__(self, data: Any, *, path: str, source: str | None = None) -> None:
        self.path = path
        self.source = source
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"must be a mapping, got {_type_name(data)}", source=source, field=path or None)
        self.data: dict[str, Any] = data

    def field(self, key: str | None) -> str:
        if not key:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str | None, message: str) -> ConfigError:
        """A ConfigError naming this file and ``<section path>.<key>``."""
        return ConfigError(message, source=self.source, field=self.field(key) or None)

    def fail(self, key: str | None, message: str) -> NoReturn:
        raise self.error(key, message)

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def keys(self) -> list[str]:
        return list(self.data)

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in self.data:
            if key not in allowed:
                self.fail(
                    str(key),
                    f"unknown option{_suggest(str(key), allowed)}; known options: {', '.join(sorted(allowed))}",
                )

    def _missing(self, key: str, what: str) -> NoReturn:
        self.fail(key, f"required {what} is missing")

    def get_str(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        choices: Iterable[str] | None = None,
        allow_empty: bool = False,
        coerce_numbers: bool = False,
    ) -> Any:
        """A string option (``default`` when absent; required when no default is given)."""
        if key not in self.data or self.data[key] is None:
            if default is _REQUIRED:
                self._missing(key, "string")
            return default
        value = self.data[key]
        if coerce_numbers and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_type_name(value)}")
        if not allow_empty and not value.strip():
            self.fail(key, "must not be empty")
        if choices is not None:
            options = list(choices)
            if value not in options:
                self.fail(
                    key,
                    f"must be one of {', '.join(repr(c) for c in options)}, "
                    f"got {shown(value)}{_suggest(value, options)}",
                )
        return value

    @property
    def config_dir(self) -> Path | None:
        """The folder of the config file this section came from (None for a config given as a mapping)."""
        return config_dir(self.source)

    def get_path(self, key: str, default: Any = _REQUIRED) -> Any:
        """A file path option: ``~`` expanded, and a relative path resolved against the config file's folder
        (not the working directory, which differs between a shell, cron and a service manager)."""
        value = self.get_str(key, default)
        if not isinstance(value, str):
            return value
        return resolve_path(value, self.source)

    def get_bool(self, key: str, default: bool) -> bool:
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in (
            "true",
            "yes",
            "on",
            "1",
            "false",
            "no",
            "off",
            "0",
        ):
            return value.strip().lower() in ("true", "yes", "on", "1")
        self.fail(key, f"must be true or false, got {_type_name(value)}")

    def get_float(
        self, key: str, default: Any = _REQUIRED, *, min: float | None = None, max: float | None = None
    ) -> Any:
        """A number of seconds (or any float). Strings like "30" from env interpolation are accepted."""
        if key not in self.data or self.data[key] is None:
            if default is _REQUIRED:
                self._missing(key, "number")
            return default
        value = self.data[key]
        if isinstance(value, str):
            text = value
            try:
                value = float(text.strip())
            except ValueError:
                value = None  # fail outside the except block: float()'s own message quotes the text
            if value is None:
                self.fail(key, f"must be a number, got the string {shown(text)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {_type_name(value)}")
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            self.fail(key, "must be a finite number")
        if min is not None and number < min:
            self.fail(key, f"must be at least {min:g}, got {number:g}")
        if max is not None and number > max:
            self.fail(key, f"must be at most {max:g}, got {number:g}")
        return number

    def get_int(self, key: str, default: Any = _REQUIRED, *, min: int | None = None, max: int | None = None) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is _REQUIRED:
                self._missing(key, "whole number")
            return default
        value = self.data[key]
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be a whole number, got {_type_name(value)}")
        if min is not None and value < min:
            self.fail(key, f"must be at least {min}, got {value}")
        if max is not None and value > max:
            self.fail(key, f"must be at most {max}, got {value}")
        return int(value)

    def get_section(self, key: str, *, required: bool = False) -> Section:
        if key not in self.data or self.data[key] is None:
            if required:
                self._missing(key, "section")
            return Section({}, path=self.field(key), source=self.source)
        return Section(self.data[key], path=self.field(key), source=self.source)

    def get_secret_ref(self, key: str, *, required: bool = True) -> SecretRef | None:
        """A credential reference: ``{env: VAR}`` or ``{file: PATH}``. Literals are refused."""
        if key not in self.data or self.data[key] is None:
            if required:
                self.fail(key, "required credential reference is missing: give {env: VAR} or {file: PATH}")
            return None
        value = self.data[key]
        if isinstance(value, str):
            # never echo the value: it may be the credential itself
            self.fail(
                key,
                "a credential must not be written into the config: give {env: VAR_NAME} or {file: /path}",
            )
        sub = Section(value, path=self.field(key), source=self.source)
        sub.reject_unknown(("env", "file"))
        env = sub.get_str("env", None)
        file = sub.get_path("file", None)
        if (env is None) == (file is None):
            self.fail(key, "give exactly one of env or file")
        if env is not None and not _VAR_NAME.match(env):
            sub.fail("env", "is not an environment variable name (letters, digits, _)")
        return SecretRef(env=env, file=file, field=self.field(key), config_source=self.source)
