"""Receive intuned-relay webhooks and verify them with the Standard Webhooks library.

    pip install standardwebhooks
    RELAY_SIGNING_SECRET=whsec_... PORT=8000 python receiver.py
"""

import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# The secret from GET /v1/signing-secret (whsec_...).
webhook = Webhook(os.environ["RELAY_SIGNING_SECRET"])
handled: set[str] = set()  # keep this in your database: webhook-ids already acted on


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        # Verify the raw bytes, before any JSON parsing.
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            event = webhook.verify(body, dict(self.headers))
        except WebhookVerificationError as exc:
            self.send_response(400)
            self.end_headers()
            print(f"refused: {exc}", flush=True)
            return
        webhook_id = self.headers["webhook-id"]
        if webhook_id not in handled:  # at least once: the same event may come again
            handled.add(webhook_id)
            data = event["data"]
            print(
                f"verified {event['type']} run {data['runId']} webhook-id {webhook_id}"
                f" metadata {json.dumps(data['metadata'])}",
                flush=True,
            )
        self.send_response(204)  # any 2xx: delivered
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet access log
        pass


HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Receiver).serve_forever()
