#!/usr/bin/python3
"""A fault injector in front of the real S3 server (s3_swift.py), on
127.0.0.1 only: it forwards every request to the server unchanged, except
those it is told to answer itself with an S3 error, as a busy or failing
S3 would (tests/integration/test_s3_retry.sh).

    s3_faults_proxy.py UPSTREAM_PORT CONTROL LOG READY

CONTROL is read before each request; it holds one line:
    pass          forward everything (also when the file is missing)
    503 N         answer the next N requests 503 SlowDown (Retry-After: 1),
                  then forward; N may be "always"
    500 N         the same with 500 InternalError
    0 N           forward the next N requests, but send only half of each
                  answer's body, then drop the connection
    503 N after S forward the next S requests first (so that the faults
                  fall on, say, the parts of a multipart upload)
    lost N        forward the next N CompleteMultipartUpload POSTs, but
                  drop each answer (the connection closes with nothing
                  sent): the upload completed, its client cannot know
    lost-nsu N    the same, and then answer the next complete (the
                  client's retry) 404 NoSuchUpload without forwarding it,
                  as S3 does for an upload it completed already (Swift
                  would answer 200)
    nsu N         answer the next N completes 404 NoSuchUpload without
                  forwarding them (the upload is not complete)
Only completes count for the last three; other requests are forwarded.
A changed line starts counting anew. LOG gets one line per request:
    METHOD PATH STATUS forwarded|injected|cut|dropped range=<Range or ->
        signed=<SignedHeaders> token=<x-amz-security-token or ->
READY receives the proxy's port once it listens.
"""
import ctypes
import http.client
import os
import http.server
import re
import signal
import sys
import threading

UPSTREAM, CONTROL, LOG, READY = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
MU = threading.Lock()
STATE = {'line': None, 'left': 0}
# Hop-by-hop headers are the proxy's own business on each side.
HOP = {'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer',
       'upgrade', 'proxy-connection'}
# Written by send_response itself.
OWN = {'date', 'server', 'content-length'}

ERRORS = {
    503: ('SlowDown', 'Please reduce your request rate.', 'Service Unavailable'),
    500: ('InternalError', 'We encountered an internal error.', 'Internal Server Error'),
}


COMPLETE_MODES = ('lost', 'lost-nsu', 'nsu')


def decide(complete=False):
    """None to forward, else the status to answer with, or for a
    complete 'drop' (forward, drop the answer) or 'nsu' (NoSuchUpload)."""
    try:
        with open(CONTROL) as f:
            line = f.read().strip()
    except FileNotFoundError:
        line = 'pass'
    parts = line.split()
    with MU:
        if line != STATE['line']:
            STATE['line'] = line
            STATE['left'] = 0 if len(parts) < 2 else \
                -1 if parts[1] == 'always' else int(parts[1])
            STATE['skip'] = int(parts[3]) if len(parts) == 4 and parts[2] == 'after' else 0
            STATE['nsu'] = 0
        if parts and parts[0] in COMPLETE_MODES:
            if not complete:
                return None
            if STATE['nsu'] > 0:
                STATE['nsu'] -= 1
                return 'nsu'
            if STATE['left'] == 0:
                return None
            STATE['left'] -= 1
            if parts[0] == 'nsu':
                return 'nsu'
            if parts[0] == 'lost-nsu':
                STATE['nsu'] += 1
            return 'drop'
        if STATE['left'] == 0:
            return None
        if STATE['skip'] > 0:
            STATE['skip'] -= 1
            return None
        if STATE['left'] > 0:
            STATE['left'] -= 1
        return int(parts[0])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def log_line(self, status, how):
        auth = self.headers.get('Authorization', '')
        m = re.search(r'SignedHeaders=([^,\s]*)', auth)
        token = self.headers.get('x-amz-security-token') or '-'
        with MU, open(LOG, 'a') as f:
            f.write('%s %s %d %s range=%s signed=%s token=%s\n' % (
                self.command, self.path, status, how,
                (self.headers.get('Range') or '-').replace(' ', ''),
                m.group(1) if m else '-', token))

    def body(self):
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n else b''

    def is_complete(self):
        query = self.path.partition('?')[2]
        return self.command == 'POST' and 'uploadId=' in query

    def handle_any(self):
        data = self.body()
        status = decide(self.is_complete())
        if status == 0:
            self.forward(data, cut=True)
            return
        if status == 'drop':
            self.forward(data, drop=True)
            return
        if status == 'nsu':
            xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload'
                   b'</Code><Message>The specified multipart upload does not exist.'
                   b'</Message></Error>')
            self.send_response(404, 'Not Found')
            self.send_header('Content-Type', 'application/xml')
            self.send_header('Content-Length', str(len(xml)))
            self.end_headers()
            self.wfile.write(xml)
            self.log_line(404, 'injected')
            return
        if status is not None:
            code, msg, reason = ERRORS[status]
            xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
                   '<Message>%s</Message></Error>' % (code, msg)).encode()
            self.send_response(status, reason)
            self.send_header('Content-Type', 'application/xml')
            self.send_header('Content-Length', str(len(xml)))
            if status == 503:
                self.send_header('Retry-After', '1')
            self.end_headers()
            if self.command != 'HEAD':
                self.wfile.write(xml)
            self.log_line(status, 'injected')
            return
        self.forward(data)

    def forward(self, data, cut=False, drop=False):
        up = http.client.HTTPConnection('127.0.0.1', UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        up.request(self.command, self.path, body=data if data or self.command in
                   ('PUT', 'POST') else None, headers=headers)
        r = up.getresponse()
        payload = r.read()
        if drop:
            # The server did it; its answer never reaches the client.
            up.close()
            self.close_connection = True
            self.log_line(r.status, 'dropped')
            return
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in HOP and k.lower() not in OWN:
                self.send_header(k, v)
        if self.command == 'HEAD':
            self.send_header('Content-Length', r.getheader('Content-Length') or '0')
        else:
            self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        if cut:
            # Half the body, then the connection drops.
            self.wfile.write(payload[:len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            up.close()
            self.log_line(r.status, 'cut')
            return
        if self.command != 'HEAD':
            self.wfile.write(payload)
        up.close()
        self.log_line(r.status, 'forwarded')

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any


def main():
    # Dies with the test's shell, as the server does (PR_SET_PDEATHSIG).
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    srv.daemon_threads = True
    with open(READY + '.tmp', 'w') as f:
        f.write(str(srv.server_address[1]))
    os.rename(READY + '.tmp', READY)
    srv.serve_forever()


if __name__ == '__main__':
    main()
