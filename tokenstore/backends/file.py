"""``file``: the token in a file (a Kubernetes/Docker secret, a Vault Agent or CSI driver output).

The file is re-read when it changes (a ``stat`` per fetch; the contents only when inode, size or mtime
moved), so a secret that Kubernetes swaps under a mounted volume is seen without a restart. ``put_token``
replaces it atomically (write a 0600 temporary file in the same folder, fsync, rename). A file that group or
others may read is used, with one warning naming it.

Writers serialise on a lock file beside the token (``.NAME.lock``, ``flock``), so ``put_token(value,
expected=token)`` is a compare-and-set among every process of this library writing the file: of several
replicas refreshing at once, one writes and the others get :class:`~tokenstore.WriteConflict`. A writer that
does not take the lock (an editor, kubelet, Vault Agent) is not covered.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

from .._config import Section
from .._errors import AccessDenied, BackendUnavailable, SecretMalformed, SecretNotFound
from .._masking import masked_logger
from .._parsing import json_object, new_token_value, token_from_text
from .._provider import Backend, check_expected
from .._token import Token

__all__ = ["FileBackend"]

logger = masked_logger("tokenstore.backends.file")


class FileBackend(Backend):
    """Reads the token from ``path`` (optionally a ``key`` of a JSON object in it). Writes atomically."""

    name = "file"
    tenant_options = ("path",)

    def __init__(self, path: str | os.PathLike[str], *, key: str | None = None, warn_permissions: bool = True) -> None:
        self.path = Path(path)
        self.key = key
        self.warn_permissions = warn_permissions
        self.source = f"file:{self.path}" + (f"#{key}" if key else "")
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int, int] | None = None
        self._token: Token | None = None
        self._warned_mode: int | None = None

    @classmethod
    def from_config(cls, section: Section) -> FileBackend:
        section.reject_unknown(("path", "key", "warn_permissions"))
        return cls(
            section.get_path("path"),
            key=section.get_str("key", None),
            warn_permissions=section.get_bool("warn_permissions", True),
        )

    @property
    def supports_write(self) -> bool:
        return True

    # -- many tenants: one file per tenant -------------------------------------------------------------------
    def named(self, option: str, name: str) -> FileBackend:
        return FileBackend(name, key=self.key, warn_permissions=self.warn_permissions)

    def list_names(self, option: str, prefix: str, suffix: str = "") -> Iterable[str]:
        """The files matching the template (a folder glob: ``prefix*suffix``)."""
        import glob

        pattern = glob.escape(prefix) + "*" + glob.escape(suffix)
        return [name for name in glob.glob(pattern) if os.path.isfile(name)]

    async def alist_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        return list(self.list_names(option, prefix, suffix))

    def _stat(self) -> os.stat_result:
        try:
            return self.path.stat()
        except FileNotFoundError:
            raise SecretNotFound("the file does not exist", source=self.source) from None
        except PermissionError:
            raise AccessDenied("permission denied reading the file's folder", source=self.source) from None
        except OSError as exc:
            raise BackendUnavailable(f"cannot stat the file ({exc.strerror})", source=self.source) from exc

    def _check_mode(self, st: os.stat_result) -> None:
        mode = stat.S_IMODE(st.st_mode)
        if self.warn_permissions and mode & 0o077 and self._warned_mode != mode:
            self._warned_mode = mode
            logger.warning("%s is readable by group or others (mode %04o): restrict it with chmod 600", self.path, mode)

    def get_token(self) -> Token:
        st = self._stat()
        ident = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._token is not None and ident == self._seen:
                return self._token
        self._check_mode(st)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise SecretNotFound("the file does not exist", source=self.source) from None
        except IsADirectoryError:
            raise SecretMalformed("the path is a directory, not a file", source=self.source) from None
        except PermissionError:
            raise AccessDenied("permission denied reading the file", source=self.source) from None
        except OSError as exc:
            raise BackendUnavailable(f"cannot read the file ({exc.strerror})", source=self.source) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretMalformed("the file is not UTF-8 text", source=self.source) from None
        token = Token(
            token_from_text(text, source=self.source, key=self.key, what="the file"),
            source=self.source,
            version=str(st.st_mtime_ns),
            fetched_at=dt.datetime.now(dt.timezone.utc),
        )
        with self._lock:
            self._token, self._seen = token, ident
        return token

    async def aget_token(self) -> Token:
        # a stat and a small read of a local file: cheaper inline than a thread hop
        return self.get_token()

    def invalidate(self, token: Token | None = None) -> None:
        with self._lock:
            self._seen = None
            self._token = None

    @property
    def supports_compare_and_set(self) -> bool:
        return fcntl is not None

    @property
    def lock_path(self) -> Path:
        """The lock file writers take (beside the token file; never holds a secret)."""
        return self.path.with_name(f".{self.path.name}.lock")

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            raise SecretNotFound(f"the folder {self.path.parent} does not exist", source=self.source) from None
        except PermissionError:
            raise AccessDenied(
                f"permission denied creating the lock file {self.lock_path}", source=self.source
            ) from None
        except OSError as exc:
            raise BackendUnavailable(f"cannot open the lock file ({exc.strerror})", source=self.source) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def put_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        value = new_token_value(value, source=self.source)
        with self._write_lock():
            if expected is not None:
                self.invalidate()
                try:
                    current: Token | None = self.get_token()
                except SecretNotFound:
                    current = None
                check_expected(current, expected, source=self.source)
            return self._write(value)

    def _write(self, value: str) -> str | None:
        if self.key is not None:
            data: dict[str, object] = {}
            if self.path.exists():
                data = json_object(
                    self.path.read_bytes(), source=self.source, key=self.key, action="write", what="the existing file"
                )
            data[self.key] = value
            payload = json.dumps(data, indent=2) + "\n"
        else:
            payload = value + "\n"
        folder = self.path.parent
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode) & 0o600 or 0o600
        except OSError:
            mode = 0o600
        tmp_name = None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.fchmod(fh.fileno(), mode)
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, self.path)
            tmp_name = None
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except FileNotFoundError:
            raise SecretNotFound(f"the folder {folder} does not exist", source=self.source) from None
        except PermissionError:
            raise AccessDenied("permission denied writing the file", source=self.source) from None
        except OSError as exc:
            raise BackendUnavailable(f"cannot write the file ({exc.strerror})", source=self.source) from exc
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass
        self.invalidate()
        return str(self.path.stat().st_mtime_ns)
