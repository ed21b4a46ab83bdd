"""Checks exed's identity assertions with PyJWT, fetching the JWKS over HTTP as a VM would.

Reads {"jwks_url", "issuer", "cases": [{"name", "token", "audience", "at"?}]} on stdin, where
"at" (unix seconds) is the time to verify at (default: now); writes
{NAME: {"ok": true, "kid", "claims"} | {"ok": false, "error"}} on stdout.
"""

import json
import sys
from datetime import datetime

import jwt
import jwt.api_jwt


class Clock(datetime):
    """PyJWT reads the time as datetime.now(tz=timezone.utc): this one can be set."""

    at = None

    @classmethod
    def now(cls, tz=None):
        if cls.at is None:
            return datetime.now(tz)
        return datetime.fromtimestamp(cls.at, tz)


jwt.api_jwt.datetime = Clock


def main():
    req = json.load(sys.stdin)
    client = jwt.PyJWKClient(req["jwks_url"])
    out = {}
    for case in req["cases"]:
        Clock.at = case.get("at")
        try:
            key = client.get_signing_key_from_jwt(case["token"])
            claims = jwt.decode(
                case["token"], key.key, algorithms=["ES256"], audience=case["audience"],
                issuer=req["issuer"], options={"require": ["iss", "aud", "sub", "exp", "nbf", "iat"]},
            )
            out[case["name"]] = {"ok": True, "kid": key.key_id, "claims": claims}
        except jwt.PyJWTError as e:
            out[case["name"]] = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    json.dump(out, sys.stdout)


main()
