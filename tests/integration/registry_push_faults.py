#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real registry, for the push
tests: it forwards every request (any method, with its body and its Host
header, so the registry's Locations name the proxy) to --upstream, and
breaks uploads the way a registry that lost or mangled bytes does.

  --fail-put N      the first N closing blob PUTs (PUT .../blobs/uploads/
                    ...digest=...) are answered 400 DIGEST_INVALID without
                    reaching the registry, as when an upload's bytes were
                    mangled on the way

  --location URL    every upload session's Location (the answer to POST
                    .../blobs/uploads/) is replaced by URL

Each request is logged to --log as one JSON line: method, path, status.
The port it listens on is written to --port-file.
"""
import argparse
import http.client
import http.server
import json
import os
import threading

p = argparse.ArgumentParser()
p.add_argument("--upstream", required=True)  # host:port
p.add_argument("--log", required=True)
p.add_argument("--port-file", required=True)
p.add_argument("--fail-put", type=int, default=0)
p.add_argument("--location")
a = p.parse_args()

lock = threading.Lock()
failed = [0]


def log(**kw):
    with lock:
        with open(a.log, "a") as f:
            f.write(json.dumps(kw) + "\n")


def take_failure():
    with lock:
        if failed[0] >= a.fail_put:
            return False
        failed[0] += 1
        return True


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        log(method=self.command, path=self.path, status=status)

    def handle_one(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else None
        closing = self.command == "PUT" and "/blobs/uploads/" in self.path \
            and "digest=" in self.path
        if closing and take_failure():
            err = json.dumps({"errors": [{"code": "DIGEST_INVALID",
                                          "message": "provided digest did not "
                                                     "match uploaded content"}]})
            return self.reply(400, err.encode(),
                              [("Content-Type", "application/json")])
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("connection",)}
        c = http.client.HTTPConnection(a.upstream, timeout=60)
        c.request(self.command, self.path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        hs = [(k, v) for k, v in r.getheaders()
              if k.lower() not in ("connection", "transfer-encoding", "date",
                                   "content-length")]
        if a.location and self.command == "POST":
            hs = [(k, a.location if k.lower() == "location" else v)
                  for k, v in hs]
        if self.command == "HEAD":
            cl = r.getheader("Content-Length")
            self.send_response(r.status)
            for k, v in hs:
                self.send_header(k, v)
            self.send_header("Content-Length", cl if cl else "0")
            self.end_headers()
            log(method=self.command, path=self.path, status=r.status)
            return
        self.reply(r.status, data, hs)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_one


s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
open(a.port_file + ".tmp", "w").write("%d\n" % s.server_address[1])
os.rename(a.port_file + ".tmp", a.port_file)
s.serve_forever()
