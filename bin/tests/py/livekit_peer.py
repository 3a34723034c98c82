"""A peer for huddle's LiveKit side, built on LiveKit's own Python server SDK
(`livekit-api`): it verifies tokens huddle mints, and signs and posts webhooks
the way a LiveKit server does (a JWT from the API key pair whose sha256 claim
is the body's hash; the body is the WebhookEvent protobuf as JSON).

    livekit_peer.py verify TOKEN                  -> one JSON line of claims
    livekit_peer.py webhooks URL ROOM             -> one line per delivery: EVENT STATUS

The key pair comes from LIVEKIT_API_KEY / LIVEKIT_API_SECRET.
"""

import base64
import dataclasses
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request

from google.protobuf.json_format import MessageToJson
from livekit import api

KEY = os.environ["LIVEKIT_API_KEY"]
SECRET = os.environ["LIVEKIT_API_SECRET"]


def verify(token):
    claims = api.TokenVerifier(KEY, SECRET).verify(token)
    video = dataclasses.asdict(claims.video) if claims.video else None
    # exp/nbf are not kept on Claims: read them from the verified JWT itself
    import jwt

    raw = jwt.decode(token, SECRET, algorithms=["HS256"], issuer=KEY)
    print(json.dumps({"identity": claims.identity, "name": claims.name, "video": video,
                      "ttl": raw["exp"] - raw["nbf"]}), flush=True)


def post(url, body, secret=SECRET):
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    token = api.AccessToken(KEY, secret).with_sha256(digest).to_jwt()
    req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Authorization": token, "Content-Type": "application/webhook+json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def webhooks(url, room_name):
    now = int(time.time())
    room = api.Room(sid="RM_py", name=room_name, creation_time=now)
    ada = api.ParticipantInfo(sid="PA_ada", identity="ada", name="Ada Lovelace",
                              kind=api.ParticipantInfo.Kind.STANDARD, joined_at=now)
    agent = api.ParticipantInfo(sid="PA_agent", identity="huddle-agent",
                                kind=api.ParticipantInfo.Kind.AGENT, joined_at=now)
    egress = api.EgressInfo(egress_id="EG_py", room_id="RM_py", room_name=room_name,
                            status=api.EgressStatus.EGRESS_COMPLETE,
                            started_at=now * 10**9, ended_at=(now + 42) * 10**9,
                            file_results=[api.FileInfo(filename="meeting.ogg",
                                                       location="/recordings/meeting.ogg")])
    events = [
        api.WebhookEvent(event="room_started", room=room, id="EV_1", created_at=now),
        api.WebhookEvent(event="participant_joined", room=room, participant=ada, id="EV_2", created_at=now),
        api.WebhookEvent(event="participant_joined", room=room, participant=agent, id="EV_3", created_at=now),
        api.WebhookEvent(event="participant_left", room=room, participant=ada, id="EV_4", created_at=now),
        api.WebhookEvent(event="egress_ended", egress_info=egress, id="EV_5", created_at=now),
        api.WebhookEvent(event="room_finished", room=room, id="EV_6", created_at=now),
    ]
    # a forged delivery first: signed with another secret, it must change nothing
    forged = MessageToJson(events[-1])
    print(f"forged {post(url, forged, secret='not-the-secret-0000000000000000')}", flush=True)
    for ev in events:
        print(f"{ev.event} {post(url, MessageToJson(ev))}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "verify":
        verify(sys.argv[2])
    elif sys.argv[1] == "webhooks":
        webhooks(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
