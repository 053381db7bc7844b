"""The provider interface every backend and the caching layer implement."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from ._errors import ProviderError, WriteNotSupported
from ._masking import mask_credentials, masked_logger
from ._token import Token

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._config import Section

__all__ = ["Backend", "TokenProvider"]

logger = masked_logger("tokenstore")


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

    def put_token(self, value: str) -> str | None:
        """Write a new token to the store; return the new version id (``None`` where the store has none)."""
        raise WriteNotSupported("this backend is read-only: rotate the token in the store itself", source=self.source)

    async def aput_token(self, value: str) -> str | None:
        """Async :meth:`put_token`; the default runs it in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.put_token, value)

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

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, source: str | None = None) -> Backend:
        """Build the backend from a plain mapping of its options (the same keys as its config section)."""
        from ._config import Section

        return cls.from_config(Section(dict(options), path=f"token.{cls.name}", source=source))
