"""A lean webhook receiver for benches: verifies every signature, counts, notes first receipts.

``python -m bench.receiver --port P --secret whsec_...`` answers every POST outside ``/_`` with
200 after checking the Standard Webhooks signature (HMAC-SHA256 of ``id.timestamp.body`` with the
secret's key). Relay and baseline deliveries hit the same code, so the ratio is fair.

    GET  /_stats      {"received", "verified", "bad", "unique"}
    POST /_receipts   {"ids": [webhook-id...]} -> {webhook-id: wall time of first receipt}
    POST /_reset      forget everything
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import time

import msgspec
import uvloop
from aiohttp import web

from relay.webhooks.signing import secret_key


class Receiver:
    """Counters and first-receipt times."""

    def __init__(self, secret: str) -> None:
        self.key = secret_key(secret)
        self.reset()

    def reset(self) -> None:
        """Forget every receipt."""
        self.received = 0
        self.verified = 0
        self.bad = 0
        self.first: dict[str, float] = {}

    async def hook(self, request: web.Request) -> web.Response:
        """Any webhook: verify, count, answer 200 (401 when the signature does not verify)."""
        body = await request.read()
        now = time.time()
        self.received += 1
        h = request.headers
        msg_id = h.get("webhook-id", "")
        signed = f"{msg_id}.{h.get('webhook-timestamp', '')}.".encode() + body
        expected = "v1," + base64.b64encode(hmac.digest(self.key, signed, hashlib.sha256)).decode()
        if expected not in h.get("webhook-signature", "").split(" "):
            self.bad += 1
            return web.Response(status=401, text="bad signature")
        self.verified += 1
        self.first.setdefault(msg_id, now)
        return web.Response(text="ok")

    async def stats(self, request: web.Request) -> web.Response:
        """Counters."""
        return web.json_response(
            {
                "received": self.received,
                "verified": self.verified,
                "bad": self.bad,
                "unique": len(self.first),
            }
        )

    async def receipts(self, request: web.Request) -> web.Response:
        """First receipt times of the given webhook ids (absent when not received)."""
        ids = msgspec.json.decode(await request.read())["ids"]
        found = {i: self.first[i] for i in ids if i in self.first}
        return web.Response(body=msgspec.json.encode(found), content_type="application/json")

    async def do_reset(self, request: web.Request) -> web.Response:
        """Forget everything."""
        self.reset()
        return web.Response(status=204)


def build_app(secret: str) -> web.Application:
    """The receiver's application."""
    rec = Receiver(secret)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/_stats", rec.stats)
    app.router.add_post("/_receipts", rec.receipts)
    app.router.add_post("/_reset", rec.do_reset)
    app.router.add_post("/{tail:.*}", rec.hook)
    return app


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    web.run_app(
        build_app(args.secret),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=1024,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
