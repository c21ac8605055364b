#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real registry, for the pull
tests: it forwards every request to --upstream and, once per path, breaks
the answer the way networks and overloaded registries do.

  --status CODE     the first manifest GET or HEAD of each path is answered
                    CODE (429, 503...) with Retry-After: 1 and a JSON error
  --truncate        the first blob GET of each path sends the headers and
                    half the body, then closes the connection
  --stall           the same, but then keeps the connection open and silent
  --no-ranges       Range is not forwarded and Accept-Ranges is dropped, so
                    a client must start a broken blob over
  --manifest-body F every manifest GET is answered with the bytes of file F
                    (and no manifest answer carries Docker-Content-Digest)

Each request is logged to --log as one JSON line: method, path, range,
status. The port it listens on is written to --port-file.
"""
import argparse
import http.client
import http.server
import json
import os
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--upstream", required=True)  # host:port
p.add_argument("--log", required=True)
p.add_argument("--port-file", required=True)
p.add_argument("--status", type=int, default=0)
p.add_argument("--truncate", action="store_true")
p.add_argument("--stall", action="store_true")
p.add_argument("--no-ranges", action="store_true")
p.add_argument("--manifest-body")
a = p.parse_args()

seen = set()
lock = threading.Lock()


def first(key):
    with lock:
        if key in seen:
            return False
        seen.add(key)
        return True


def log(**kw):
    with lock:
        with open(a.log, "a") as f:
            f.write(json.dumps(kw) + "\n")


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_one(self):
        path = self.path
        rng = self.headers.get("Range")
        is_manifest = "/manifests/" in path
        is_blob = "/blobs/" in path and self.command == "GET"
        if a.status and is_manifest and first(("status", self.command, path)):
            body = json.dumps({"errors": [{"code": "TOOMANYREQUESTS",
                                           "message": "slow down"}]}).encode()
            self.send_response(a.status)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            log(method=self.command, path=path, range=rng, status=a.status)
            return
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection")}
        if a.no_ranges:
            headers.pop("Range", None)
        c = http.client.HTTPConnection(a.upstream, timeout=30)
        c.request(self.command, path, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        if a.manifest_body and is_manifest:
            if self.command == "GET":
                data = open(a.manifest_body, "rb").read()
            r.getheaders = (lambda hs: lambda: [
                (k, v) for k, v in hs
                if k.lower() != "docker-content-digest"])(r.getheaders())
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() in ("connection", "transfer-encoding", "date",
                             "content-length"):
                continue
            if a.no_ranges and k.lower() == "accept-ranges":
                continue
            self.send_header(k, v)
        if self.command == "HEAD":
            cl = dict((k.lower(), v) for k, v in r.getheaders()).get("content-length")
            self.send_header("Content-Length", cl if cl else "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        log(method=self.command, path=path, range=rng if not a.no_ranges else None,
            status=r.status)
        if self.command == "HEAD":
            return
        broken = (a.truncate or a.stall) and is_blob and r.status in (200, 206) \
            and len(data) > 1024 and first(("break", path))
        if not broken:
            self.wfile.write(data)
            return
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if a.stall:
            time.sleep(3600)
        self.close_connection = True

    def do_GET(self):
        self.handle_one()

    def do_HEAD(self):
        self.handle_one()


s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
open(a.port_file + ".tmp", "w").write("%d\n" % s.server_address[1])
os.rename(a.port_file + ".tmp", a.port_file)
s.serve_forever()
