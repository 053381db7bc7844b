"""Webhook verification and parsing cost, one run: ``python -m bench.webhooks [--n N]``.

A team receiving a million webhooks a day sees ~12 a second on average and bursts far above it; what matters is
the CPU a webhook costs and that a forged flood costs no more than a genuine one (and never a store read). Each
scenario runs ``n`` times on a Meta-shaped status body (~600 bytes) and prints microseconds per call.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import sender
from tokenstore import Token, TokenProvider

SECRET = "0123456789abcdef0123456789abcdef"


class Static(TokenProvider):
    """A provider holding one value and counting reads (stands in for a cached store)."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.source = "bench:static"
        self.reads = 0

    def get_token(self) -> Token:
        self.reads += 1
        return Token(self.value, source=self.source)


def body() -> bytes:
    status = {
        "id": "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QUNFQjQ1RDBFRkM2MkY3QTUA",
        "status": "delivered",
        "timestamp": "1764547200",
        "recipient_id": "15551234567",
        "biz_opaque_callback_data": "ref-0123456789abcdef0123456789abcdef",
        "conversation": {"id": "c0123456789abcdef", "origin": {"type": "utility"}},
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [status],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(payload).encode()


def per_call(n: int, fn: Callable[[], object]) -> float:
    for _ in range(min(n, 500)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def averify_per_call(n: int, verifier: sender.WebhookVerifier, raw: bytes, header: str) -> float:
    async def run() -> float:
        for _ in range(min(n, 500)):
            await verifier.averify(raw, header)
        start = time.perf_counter()
        for _ in range(n):
            await verifier.averify(raw, header)
        return (time.perf_counter() - start) / n * 1e6

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks")
    parser.add_argument("--n", type=int, default=20_000)
    n = parser.parse_args().n
    raw = body()
    good = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    forged = "sha256=" + "0" * 64
    one = Static(SECRET)
    verifier = sender.WebhookVerifier(one)
    many = [Static(f"{i:032x}") for i in range(9)] + [Static(SECRET)]
    ten = sender.WebhookVerifier(many)

    def refused(v: sender.WebhookVerifier) -> None:
        try:
            v.verify(raw, forged)
        except sender.InvalidSignature:
            pass

    rows = [
        (
            "hmac.new(...).hexdigest() alone (the floor)",
            per_call(n, lambda: hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()),
        ),
        ("verify, 1 app secret, genuine", per_call(n, lambda: verifier.verify(raw, good))),
        ("verify, 10 app secrets, genuine is the last", per_call(n, lambda: ten.verify(raw, good))),
        ("verify, 1 app secret, forged (refused)", per_call(n, lambda: refused(verifier))),
        ("verify, 10 app secrets, forged (refused)", per_call(n, lambda: refused(ten))),
        ("averify, 1 app secret, genuine (in one event loop)", averify_per_call(n, verifier, raw, good)),
        ("parse_events (one status)", per_call(n, lambda: sender.parse_events(raw))),
        ("events = verify + parse", per_call(n, lambda: verifier.events(raw, good))),
    ]
    print(f"body {len(raw)} bytes, n={n}")
    for name, us in rows:
        print(f"  {name:<48} {us:8.2f} us")
    print(f"store reads: 1 secret {one.reads}, 10 secrets {sum(p.reads for p in many)} (forged floods included)")


if __name__ == "__main__":
    main()
