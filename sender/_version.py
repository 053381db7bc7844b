"""The sender's version (the distribution's) and the User-Agent it sends."""

from __future__ import annotations

import httpx

from tokenstore import __version__

__all__ = ["USER_AGENT", "__version__"]

USER_AGENT = f"whatsapp-tokenstore/{__version__} httpx/{httpx.__version__}"
