"""The provider interface every backend and the caching layer implement."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._errors import ConfigError, ProviderError, WriteConflict, WriteNotSupported
from ._masking import mask_credentials, masked_logger
from ._token import Token

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ._config import Section

__all__ = ["Backend", "TokenProvider", "check_expected", "expected_matches"]

logger = masked_logger("tokenstore")

_B = TypeVar("_B", bound="Backend")
#: backend class -> its view class (see Backend._view)
_VIEW_CLASSES: dict[type[Backend], type[Backend]] = {}


def _view_getattr(self: Backend, name: str) -> Any:
    """A view's attribute it does not set itself is its parent's, read live (client, login, locks, counters)."""
    parent = self.__dict__.get("_parent")
    if parent is None:
        raise AttributeError(name)
    return getattr(parent, name)


class TokenProvider(abc.ABC):
    """Something that hands out the current access token, sync or async.

    Implementations: every backend (:class:`Backend`) and :class:`~tokenstore.CachingProvider`, which wraps
    any provider. A provider is a context manager (``with``/``async with``) that closes its clients.
    """

    _source: str = "?"

    @property
    def source(self) -> str:
        """A label naming the store and path, never the value (e.g. ``vault:secret/whatsapp/prod#access_token``).

        It is built from config values, so a credential pasted where a name goes would end up in it: the
        setter masks every credential-looking word (:func:`tokenstore.mask_credentials`)."""
        return self._source

    @source.setter
    def source(self, value: str) -> None:
        self._source = mask_credentials(value)

    @abc.abstractmethod
    def get_token(self) -> Token:
        """Return the current token."""

    async def aget_token(self) -> Token:
        """Return the current token without blocking the event loop.

        The default runs :meth:`get_token` in a worker thread; backends with an async client override it.
        """
        import asyncio

        return await asyncio.to_thread(self.get_token)

    def invalidate(self, token: Token | None = None) -> None:
        """Forget any cached token so the next :meth:`get_token` asks the store.

        With ``token``, only forget it if the cached token is still that one: concurrent callers that all saw
        the same token rejected then cause a single refetch. Raw backends cache nothing; the default is a no-op.
        """

    @property
    def supports_write(self) -> bool:
        """Whether :meth:`put_token` can write to the store."""
        return False

    @property
    def supports_compare_and_set(self) -> bool:
        """Whether ``put_token(value, expected=...)`` is atomic: of several writers expecting the same token,
        exactly one writes and the others get :class:`~tokenstore.WriteConflict`. False: the check and the
        write are two calls, and a writer in between is not noticed (the window is the store's round trip)."""
        return False

    def put_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        """Write a new token to the store; return the new version id (``None`` where the store has none).

        ``expected``: write only if the store still holds this token (a :class:`Token`: the same value) or this
        version id (a str); otherwise raise :class:`~tokenstore.WriteConflict` and write nothing. Atomic where
        :attr:`supports_compare_and_set`, a check just before the write elsewhere.
        """
        raise WriteNotSupported("this backend is read-only: rotate the token in the store itself", source=self.source)

    @property
    def supports_delete(self) -> bool:
        """Whether :meth:`delete_secret` can remove (or disable) the secret in the store."""
        return False

    def delete_secret(self) -> None:
        """Remove the secret from the store (offboarding a tenant), or disable it where the store only can.

        What each backend does is in its docstring (file: the file is removed; Vault KV v2: the secret's
        metadata and every version; AWS Secrets Manager: deletion scheduled with the shortest recovery window,
        SSM: the parameter; GCP: the secret and every version; Azure Key Vault: soft-delete). Backends that
        cannot (Conjur, env) raise :class:`~tokenstore.WriteNotSupported`.
        """
        raise WriteNotSupported(
            "this backend cannot delete or disable secrets: remove it in the store itself", source=self.source
        )

    async def adelete_secret(self) -> None:
        """Async :meth:`delete_secret`; the default runs it in a worker thread."""
        import asyncio

        await asyncio.to_thread(self.delete_secret)

    async def aput_token(self, value: str, *, expected: Token | str | None = None) -> str | None:
        """Async :meth:`put_token`; the default runs it in a worker thread."""
        import asyncio

        if expected is None:  # a plugin's put_token may predate ``expected``
            return await asyncio.to_thread(self.put_token, value)
        return await asyncio.to_thread(lambda: self.put_token(value, expected=expected))

    def close(self) -> None:
        """Release clients and connections. Idempotent."""

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()

    def __enter__(self) -> TokenProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> TokenProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} source={self.source!r}>"


def _naming_section(method: Any) -> Any:
    """``method`` with every ProviderError it raises marked with the backend's config section."""
    import functools
    import inspect

    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def amarked(self: Backend, *args: Any, **kwargs: Any) -> Any:
            try:
                return await method(self, *args, **kwargs)
            except ProviderError as exc:
                if exc.section is None:
                    exc.section = self.config_section
                raise

        amarked._names_section = True  # type: ignore[attr-defined]
        return amarked

    @functools.wraps(method)
    def marked(self: Backend, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except ProviderError as exc:
            if exc.section is None:
                exc.section = self.config_section
            raise

    marked._names_section = True  # type: ignore[attr-defined]
    return marked


class Backend(TokenProvider):
    """A provider that talks to one store directly, every call (wrap it in a cache for production use).

    Subclasses set :attr:`name` (the ``backend:`` value in config), implement :meth:`from_config` to build
    themselves from their config section, and implement :meth:`get_token` (plus :meth:`aget_token`,
    :meth:`put_token`, :meth:`aput_token` where the store allows). They translate every foreign exception
    into the tokenstore error tree at the boundary, never putting the value into a message.
    """

    #: the name used in config (``token.backend``)
    name: ClassVar[str] = "?"
    #: the pip extra providing this backend's SDK (None: no extra needed)
    extra: ClassVar[str | None] = None
    #: the config section this backend was built from (``token``, ``app_secret``; set by the factory): every
    #: :class:`~tokenstore.ProviderError` escaping its get/put methods names it (``ProviderError.section``)
    config_section: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("get_token", "aget_token", "put_token", "aput_token"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_names_section", False):
                setattr(cls, name, _naming_section(method))

    @classmethod
    @abc.abstractmethod
    def from_config(cls, section: Section) -> Backend:
        """Build the backend from its config section (``token.<name>``), validating every field.

        Raise :class:`~tokenstore.ConfigError` through ``section.error(...)`` so that the message names the
        file and the dotted field. Do no network I/O here: connecting happens on first use.
        """

    def _current_or_none(self) -> Token | None:
        """What the store holds now (for an ``expected`` check before a write); None when there is no secret."""
        from ._errors import SecretNotFound

        try:
            return self.get_token()
        except SecretNotFound:
            return None

    async def _acurrent_or_none(self) -> Token | None:
        from ._errors import SecretNotFound

        try:
            return await self.aget_token()
        except SecretNotFound:
            return None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, source: str | None = None) -> Backend:
        """Build the backend from a plain mapping of its options (the same keys as its config section)."""
        from ._config import Section

        return cls.from_config(Section(dict(options), path=f"token.{cls.name}", source=source))

    # -- many tenants (see tokenstore.TenantProviders) --------------------------------------------------------
    #: the options of this backend's section that name the secret; a ``tenants:`` template puts ``{tenant}``
    #: in exactly one of them. Empty: this backend cannot keep one secret per tenant.
    tenant_options: ClassVar[tuple[str, ...]] = ()

    #: the backend whose client a view shares (None: this backend owns its client)
    _parent: Backend | None = None

    def _view(self: _B, **attrs: Any) -> _B:
        """A lightweight backend for another secret name: only ``attrs`` (the name, the label) are its own.

        Every other attribute is read from this backend live, so one client, login and pool serve every view.
        A backend supporting tenants routes the methods that change shared state (login, renewal) to
        ``self._parent`` and makes :meth:`close` of a view a no-op.
        """
        root = self._parent if self._parent is not None else self
        cls = type(root)
        view_cls = _VIEW_CLASSES.get(cls)
        if view_cls is None:
            view_cls = type(
                cls.__name__,
                (cls,),
                {
                    "__getattr__": _view_getattr,
                    "__module__": cls.__module__,
                    "__qualname__": f"{cls.__qualname__}.view",
                },
            )
            _VIEW_CLASSES[cls] = view_cls
        view = object.__new__(view_cls)
        view.__dict__["_parent"] = root
        for name, value in attrs.items():
            setattr(view, name, value)  # through any property setter (a masked ``source``, say)
        return view  # type: ignore[return-value]

    def tenant_key_problem(self, tenant: str) -> str | None:
        """Why this store cannot name a secret after ``tenant``, beyond the shared tenant pattern; None if it can.

        Called before any store call (e.g. Azure Key Vault names allow only letters, digits and dashes).
        """
        return None

    def named(self, option: str, name: str) -> Backend:
        """A backend for the secret ``name`` (in place of ``option``'s value) that shares this backend's client.

        The same credentials, login, connection pool and SDK client serve every name: only the secret's name
        differs. The returned backend's :meth:`close` leaves the shared client open (this backend owns it).
        """
        raise ConfigError(f"the {self.name!r} backend cannot keep one secret per tenant (no tenant template)")

    def list_names(self, option: str, prefix: str, suffix: str = "") -> Iterable[str]:
        """The names (values of ``option``) of the secrets starting with ``prefix``, from the store's list call.

        ``suffix`` (what follows ``{tenant}`` in the template) lets a hierarchical store look one level deeper;
        names not ending with it may be returned (the caller filters).
        """
        raise ConfigError(f"the {self.name!r} backend cannot list tenants")

    async def alist_names(self, option: str, prefix: str, suffix: str = "") -> list[str]:
        """Async :meth:`list_names`; the default runs it in a worker thread."""
        import asyncio

        return await asyncio.to_thread(lambda: list(self.list_names(option, prefix, suffix)))


def expected_matches(current: Token | None, expected: Token | str) -> bool:
    """Whether ``current`` (None: no secret yet) is what a ``put_token(..., expected=expected)`` expects: the
    same value for a :class:`Token`, the same version id for a str."""
    if current is None:
        return False
    if isinstance(expected, Token):
        return current == expected
    return current.version is not None and current.version == str(expected)


def check_expected(current: Token | None, expected: Token | str | None, *, source: str) -> None:
    """Raise :class:`~tokenstore.WriteConflict` unless ``expected`` is None or matches ``current``."""
    if expected is None or expected_matches(current, expected):
        return
    if current is None:
        raise WriteConflict(
            "not written: the secret no longer exists, so it no longer holds the expected token", source=source
        )
    what = f"version {expected}" if isinstance(expected, str) else expected.fingerprint
    raise WriteConflict(
        f"not written: the store holds {current.fingerprint} (version {current.version or '-'}), not the "
        f"expected {what}: another writer changed it",
        source=source,
        current_fingerprint=current.fingerprint,
    )
