"""A plain worker: send WhatsApp messages from a queue of JSON lines, never holding the access token.

One ``sender.Sender`` for the whole run, built from the config file. Every request asks the token store
(through the cache), so a token rotated while the worker runs is used without a restart, and a token Meta
revoked (190) is refetched and the message resent once. Here the queue is stdin, one job per line::

    {"id": "order-1842", "to": "15551234567", "template": "hello_world", "language": "en_US"}
    {"id": "note-7", "to": "15551234567", "text": "Your order has shipped"}

and each result is one JSON line on stdout, in order::

    {"id": "order-1842", "ok": true, "message_id": "wamid.…", "attempts": 1}
    {"id": "note-7", "ok": false, "error": "RateLimited", "code": 130429, "retryable": true, "retry_after": 4}

Run it::

    TOKENSTORE_CONFIG=config.yaml python examples/worker.py < jobs.jsonl > results.jsonl

Logs go to stderr (fingerprints only, never a token); at the end the token layer's counters are logged.
Exit status: 0 when every job was sent, 1 when some failed (see their result lines), 2 when the config is
unusable (nothing was sent). SIGTERM / Ctrl-C stop the worker after the job in flight.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import sender
import tokenstore

logger = logging.getLogger("whatsapp_worker")


class Stopped(Exception):
    """Raised by the signal handler while the worker waits for the next job."""


class Stop:
    """SIGTERM / SIGINT: while a job is in flight, finish it and stop; while waiting for one, stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self.busy = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True
        if not self.busy:
            raise Stopped
        logger.info("signal %d: stopping after the job in flight", signum)


def jobs(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, job) for every non-blank line; job is None for a line that is not a JSON object."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError:
            job = None
        yield number, job if isinstance(job, dict) else None


def send_one(whatsapp: sender.Sender, job: dict[str, Any]) -> sender.SendResult:
    to = str(job.get("to", ""))
    if "template" in job:
        return whatsapp.send_template(
            to,
            str(job["template"]),
            language=str(job.get("language", "en_US")),
            components=job.get("components"),
            biz_opaque_callback_data=job.get("biz_opaque_callback_data"),
        )
    if "text" in job:
        return whatsapp.send_text(to, str(job["text"]), biz_opaque_callback_data=job.get("biz_opaque_callback_data"))
    raise sender.InvalidRequest("invalid job, not sent: give a template or a text")


def run(whatsapp: sender.Sender, lines: Iterable[str], out: IO[str], stop: Stop) -> int:
    """Send every job; write one result line per job. Returns the number of failed jobs."""
    failed = 0
    try:
        for number, job in jobs(lines):
            stop.busy = True
            result = handle(whatsapp, number, job)
            failed += not result["ok"]
            out.write(json.dumps(result) + "\n")
            out.flush()
            stop.busy = False
            if stop.requested:
                break
    except Stopped:
        logger.info("stopped while waiting for the next job")
    return failed


def handle(whatsapp: sender.Sender, number: int, job: dict[str, Any] | None) -> dict[str, Any]:
    """The result line for one job."""
    if job is None:
        return {"line": number, "ok": False, "error": "InvalidJob", "message": "not a JSON object"}
    result: dict[str, Any] = {"id": job.get("id", number)}
    try:
        sent = send_one(whatsapp, job)
    except sender.SendError as exc:
        result.update(ok=False, error=type(exc).__name__, code=exc.code, retryable=exc.retryable)
        if exc.retry_after is not None:
            result["retry_after"] = exc.retry_after
        result["message"] = str(exc)
        logger.warning("job %s not sent: %s", result["id"], type(exc).__name__)
    except tokenstore.TokenStoreError as exc:  # the store failed beyond max_stale: nothing was sent
        result.update(ok=False, error=type(exc).__name__, retryable=True, message=str(exc))
        logger.warning("job %s not sent: the token store failed (%s)", result["id"], type(exc).__name__)
    else:
        result.update(ok=True, message_id=sent.message_id, attempts=sent.attempts)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send WhatsApp messages from JSON lines on stdin.")
    parser.add_argument("--config", help="config file (default: $TOKENSTORE_CONFIG, then ./tokenstore.yaml)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    try:
        whatsapp = sender.Sender.from_config(args.config)
    except (tokenstore.TokenStoreError, OSError, ValueError) as exc:
        logger.error("cannot start: %s", exc)
        return 2
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with whatsapp:
        logger.info("sending as phone number %s through %s", whatsapp.phone_number_id, whatsapp.provider.source)
        failed = run(whatsapp, sys.stdin, sys.stdout, stop)
        logger.info("token layer: %s", json.dumps(tokenstore.provider_metrics(whatsapp.provider)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
