#!/usr/bin/env python3
"""A static file server over a registry's storage root, for the registry's
`redirect` middleware (blob GETs answer 307 to it). Usage: ROOT PORTFILE
LOG; logs "METHOD PATH auth=<Authorization header or None>" a request."""
import functools
import http.server
import os
import sys

root, portfile, logfile = sys.argv[1:4]


class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        with open(logfile, "a") as f:
            f.write("%s %s auth=%s\n" % (self.command, self.path,
                                         self.headers.get("Authorization")))


s = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                    functools.partial(H, directory=root))
open(portfile + ".tmp", "w").write("%d" % s.server_address[1])
os.rename(portfile + ".tmp", portfile)
s.serve_forever()
