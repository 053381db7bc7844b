"""Rotation handlers for the secret stores' own schedulers, all on the one refresh implementation.

* :func:`aws_lambda_handler` - a Secrets Manager rotation function (createSecret, setSecret, testSecret,
  finishSecret); :class:`AwsRotation` is the same, configurable.
* :func:`azure_event_handler` - Key Vault's ``Microsoft.KeyVault.SecretNearExpiry`` event from Event Grid (an
  Azure Function's Event Grid trigger, or an Event Grid webhook), Event Grid or CloudEvents schema;
  :class:`AzureRotation`.
* :func:`gcp_pubsub_handler` - Secret Manager's ``SECRET_ROTATE`` notification from Pub/Sub (a Cloud Function's
  CloudEvent, or a Cloud Run push subscription's envelope); :class:`GcpRotation`.

Each reads the config named by ``$TOKENSTORE_CONFIG``, finds the configured secret (or tenant) the event names,
validates before any write, never revokes the token the store holds, leaves no token live that nobody holds,
and logs fingerprints only (on ``sender.rotation``). A failure raises :class:`RotationFailed` and leaves the
secret's current version as it was. Importing this package imports no cloud SDK.
"""

from __future__ import annotations

import typing as _typing

if _typing.TYPE_CHECKING:
    from ._aws import AwsRotation, aws_lambda_handler
    from ._azure import AzureRotation, azure_event_handler
    from ._core import RotationFailed, RotationResult
    from ._gcp import GcpRotation, gcp_pubsub_handler

__all__ = [
    "AwsRotation",
    "AzureRotation",
    "GcpRotation",
    "RotationFailed",
    "RotationResult",
    "aws_lambda_handler",
    "azure_event_handler",
    "gcp_pubsub_handler",
]

_LAZY: dict[str, str] = {
    "AwsRotation": "._aws",
    "aws_lambda_handler": "._aws",
    "AzureRotation": "._azure",
    "azure_event_handler": "._azure",
    "RotationFailed": "._core",
    "RotationResult": "._core",
    "GcpRotation": "._gcp",
    "gcp_pubsub_handler": "._gcp",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
