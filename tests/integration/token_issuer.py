#!/usr/bin/python3
"""A token service for tests, speaking the distribution token spec to
Debian's docker-registry (auth.token) and to clients (cairn, skopeo).

  GET  /token?service=S&scope=A&scope=B[&offline_token=true]  Basic or anonymous
  POST /token  grant_type=password|refresh_token (the OAuth2 form Docker posts)

Tokens are JWTs signed with the test's key (ES256 or RS256, by the key's
type) with `kid` = the libtrust key id of the key, which the registry finds
in its rootcertbundle (the certificate the test made for the key). Claims:
iss, sub, aud (a single string: the registry rejects a list), exp, nbf, iat,
jti and access [{type, name, actions}].

Users come from a file, one a line: USER:PASSWORD:GRANTS, GRANTS being
PATTERN=ACTIONS separated by ';' (fnmatch on the repository name, ACTIONS
like pull,push or *). --anonymous-pull grants pull to everyone.

Control files in --control DIR, read at each request, so a test can change
the issuer's behaviour while it runs:
  mode  "500": answer 500; "garbage": 200 with a body that is not JSON;
        "hang": wait 30 s before answering; anything else or none: normal.
  ttl   expires_in in seconds (default --ttl).

Each request is logged to --log as one JSON line: method, path, user (or
null), scopes asked, granted access, status. No password or token is logged.
The port it listens on is written to --port-file once it is listening.
"""
import argparse
import base64
import datetime
import fnmatch
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def libtrust_kid(public_key):
    """The key id distribution's libtrust gives a public key: base32 of the
    first 240 bits of sha256(SPKI DER), in groups of four joined by ':'."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class Issuer:
    def __init__(self, args):
        self.args = args
        with open(args.key, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)
        with open(args.cert, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.kid = libtrust_kid(cert.public_key())
        self.alg = "ES256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "RS256"
        self.users = {}
        if args.users:
            with open(args.users) as f:
                for line in f:
                    line = line.rstrip("\n")
                    if not line or line.startswith("#"):
                        continue
                    user, password, grants = line.split(":", 2)
                    rules = []
                    for g in grants.split(";"):
                        if g:
                            pat, acts = g.split("=", 1)
                            rules.append((pat, acts.split(",")))
                    self.users[user] = (password, rules)
        self.refresh = {}  # refresh token -> user
        self.lock = threading.Lock()

    def control(self, name, default=None):
        if not self.args.control:
            return default
        try:
            with open(os.path.join(self.args.control, name)) as f:
                return f.read().strip() or default
        except OSError:
            return default

    def grant(self, user, scopes):
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            allowed = set()
            if user is not None:
                for pat, acts in self.users[user][1]:
                    if fnmatch.fnmatchcase(name, pat):
                        allowed |= set(acts)
            elif self.args.anonymous_pull:
                allowed.add("pull")
            if "*" in allowed:
                got = actions
            else:
                got = [a for a in actions if a in allowed]
            if got:
                access.append({"type": typ, "name": name, "actions": got})
        return access

    def token(self, user, service, access):
        ttl = int(self.control("ttl", str(self.args.ttl)))
        now = int(time.time())
        claims = {
            "iss": self.args.issuer,
            "sub": user or "",
            "aud": service,
            "exp": now + ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        tok = jwt.encode(claims, self.key, algorithm=self.alg,
                         headers={"kid": self.kid, "typ": "JWT"})
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        return {"token": tok, "access_token": tok, "expires_in": ttl,
                "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ")}


class Handler(BaseHTTPRequestHandler):
    issuer = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self, status, user, scopes, access, grant=None):
        line = {"method": self.command, "path": urllib.parse.urlsplit(self.path).path,
                "user": user, "scopes": scopes, "access": access,
                "grant_type": grant, "status": status}
        with self.issuer.lock, open(self.issuer.args.log, "a") as f:
            f.write(json.dumps(line) + "\n")

    def reply(self, status, body, ctype="application/json", extra=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def basic_user(self):
        """(user, ok): user None when no credentials were sent."""
        h = self.headers.get("Authorization", "")
        if not h.lower().startswith("basic "):
            return None, True
        try:
            user, _, password = base64.b64decode(h[6:]).decode().partition(":")
        except Exception:
            return None, False
        entry = self.issuer.users.get(user)
        return user, bool(entry) and secrets.compare_digest(entry[0], password)

    def misbehave(self):
        """Answers as the control file says; True when it did."""
        mode = self.issuer.control("mode")
        if mode == "hang":
            time.sleep(30)
        if mode == "500":
            self.reply(500, b"token service broken", "text/plain")
            return 500
        if mode == "garbage":
            self.reply(200, b"<html>not json</html>", "text/html")
            return 200
        return 0

    def finish_token(self, user, service, scopes, grant=None, offline=False):
        access = self.issuer.grant(user, scopes)
        body = self.issuer.token(user, service, access)
        if offline and user is not None:
            rt = secrets.token_urlsafe(24)
            with self.issuer.lock:
                self.issuer.refresh[rt] = user
            body["refresh_token"] = rt
        self.record(200, user, scopes, access, grant)
        self.reply(200, body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        scopes = q.get("scope", [])
        if url.path != "/token":
            self.record(404, None, scopes, None)
            return self.reply(404, {"error": "not found"})
        status = self.misbehave()
        if status:
            return self.record(status, None, scopes, None)
        user, ok = self.basic_user()
        if not ok:
            self.record(401, user, scopes, None)
            return self.reply(401, {"details": "incorrect username or password"},
                              extra={"WWW-Authenticate": 'Basic realm="token"'})
        service = q.get("service", [self.issuer.args.service])[0]
        self.finish_token(user, service, scopes,
                          offline=q.get("offline_token", [""])[0] == "true")

    def read_body(self, cap=65536):
        """The request body, None past cap. Go clients (skopeo) send the
        OAuth2 form chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                if len(body) + size > cap:
                    return None
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return None if n > cap else self.rfile.read(n)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        if body is None:
            self.record(413, None, [], None)
            self.close_connection = True
            return self.reply(413, {"error": "too large"})
        form = urllib.parse.parse_qs(body.decode())
        scopes = " ".join(form.get("scope", [])).split()
        grant = form.get("grant_type", [""])[0]
        if url.path != "/token":
            self.record(404, None, scopes, None, grant)
            return self.reply(404, {"error": "not found"})
        status = self.misbehave()
        if status:
            return self.record(status, None, scopes, None, grant)
        user = None
        if grant == "refresh_token":
            with self.issuer.lock:
                user = self.issuer.refresh.get(form.get("refresh_token", [""])[0])
        elif grant == "password":
            u = form.get("username", [""])[0]
            entry = self.issuer.users.get(u)
            if entry and secrets.compare_digest(entry[0], form.get("password", [""])[0]):
                user = u
        if user is None:
            self.record(401, None, scopes, None, grant)
            return self.reply(401, {"error": "invalid_grant"})
        service = form.get("service", [self.issuer.args.service])[0]
        self.finish_token(user, service, scopes, grant,
                          offline=form.get("access_type", [""])[0] == "offline")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--key", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--users")
    p.add_argument("--anonymous-pull", action="store_true")
    p.add_argument("--ttl", type=int, default=300)
    p.add_argument("--control")
    p.add_argument("--log", required=True)
    p.add_argument("--port-file", required=True)
    args = p.parse_args()
    Handler.issuer = Issuer(args)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
