"""A real SMTP server (PyPI `aiosmtpd`) that reports every message it receives.

Prints `PORT <n>` once listening, then one JSON line per message:
{"mail_from", "rcpt_tos", "subject", "message_id", "parts": [{"content_type",
"filename", "payload"}]} with the MIME tree walked by Python's email package.
"""

import asyncio
import email
import email.policy
import json
import socket
import sys

from aiosmtpd.controller import Controller


class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                parts.append({"content_type": part.get_content_type(), "multipart": True})
                continue
            parts.append({
                "content_type": part.get("content-type"),
                "filename": part.get_filename(),
                "payload": part.get_content() if part.get_content_maintype() == "text" else None,
            })
        print(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": msg["subject"],
            "message_id": msg["message-id"],
            "parts": parts,
        }), flush=True)
        return "250 Message accepted for delivery"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


port = free_port()
controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print(f"PORT {port}", flush=True)
try:
    sys.stdin.read()  # run until the test closes stdin
finally:
    controller.stop()
