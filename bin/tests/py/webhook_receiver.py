"""A webhook receiver that checks every delivery with the official Standard
Webhooks library (PyPI `standardwebhooks`), as a huddle user's server would.

Usage: webhook_receiver.py SECRET_FILE
Prints `PORT <n>` once listening, then one JSON line per request:
{"id", "ok", "error", "wrong_secret_rejected", "body"}. The secret is read from
SECRET_FILE on every request, so a test can rotate it.
"""

import base64
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET_FILE = sys.argv[1]
WRONG = "whsec_" + base64.b64encode(b"\0" * 24).decode()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with open(SECRET_FILE) as f:
            secret = f.read().strip()
        result = {"id": headers.get("webhook-id"), "ok": False, "error": None}
        try:
            payload = Webhook(secret).verify(body, headers)
            result["ok"] = True
            result["body"] = payload
        except WebhookVerificationError as e:
            result["error"] = str(e)
        try:
            Webhook(WRONG).verify(body, headers)
            result["wrong_secret_rejected"] = False
        except WebhookVerificationError:
            result["wrong_secret_rejected"] = True
        print(json.dumps(result), flush=True)
        self.send_response(204 if result["ok"] else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
