#!/usr/bin/python3
"""A real S3 server for the tests: OpenStack Swift (Debian's python3-swift)
with its s3api and tempauth middlewares, on 127.0.0.1 only.

    s3_swift.py serve DIR PORT READY   state in DIR (kept across restarts);
                                       proxy on PORT (0: any free port);
                                       writes the port to READY when serving
    s3_swift.py path DIR BUCKET KEY    prints the .data file of an object

One process imports Swift once, then forks the account, container and object
servers (each dies with it: PR_SET_PDEATHSIG) and serves the proxy itself:
importing Swift four times is most of a normal start. Killing this process
stops the whole server; starting it again on the same DIR and PORT brings
back every object (the rings are rebuilt on each start with the backends'
new ports; one device, so every partition stays where it was).

S3 credentials: access key "test:tester", secret "testing", region
us-east-1, path-style addressing (tests/integration/s3_lib.sh).
"""
import ctypes
import os
import signal
import socket
import sys
import time

SWIFT_ACCOUNT = 'AUTH_test'


def etc_dir(state):
    return os.path.join(state, 'etc')


def point_swift_at(state):
    # swift.common.utils reads swift.conf's hash salts from this path; set it
    # before anything that loads storage policies is imported.
    from swift.common import utils
    utils.SWIFT_CONF_FILE = os.path.join(etc_dir(state), 'swift.conf')
    utils.HASH_PATH_PREFIX = b''
    utils.HASH_PATH_SUFFIX = b''
    return utils


def write_swift_conf(state):
    path = os.path.join(etc_dir(state), 'swift.conf')
    if os.path.exists(path):
        return
    salt = os.urandom(8).hex()
    with open(path, 'w') as f:
        f.write('[swift-hash]\nswift_hash_path_suffix = %s\n'
                'swift_hash_path_prefix = cairn\n'
                '[storage-policy:0]\nname = gold\ndefault = yes\n' % salt)


def build_rings(state, ports):
    # A ring of one device holding every partition, written directly:
    # RingBuilder's rebalance takes seconds for what is a constant here.
    from array import array
    from swift.common.ring import RingData
    part_power = 4
    for kind, port in ports.items():
        dev = {'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1',
               'port': port, 'replication_ip': '127.0.0.1',
               'replication_port': port, 'device': 'd1', 'weight': 100.0,
               'meta': ''}
        table = [array('H', [0] * (1 << part_power))]
        ring = RingData(table, [dev], 32 - part_power)
        ring.save(os.path.join(etc_dir(state), kind + '.ring.gz'))


COMMON = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {etc}
devices = {srv}
mount_check = false
log_level = WARNING
log_name = {kind}
"""

BACKEND = COMMON + """
[pipeline:main]
pipeline = {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}
"""

OBJECT_EXTRA = """disk_chunk_size = 1048576
network_chunk_size = 1048576
"""

PROXY = COMMON + """
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
object_chunk_size = 1048576
client_chunk_size = 1048576

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:cache]
paste.filter_factory = __main__:cache_filter_factory
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
"""


class DictCache(object):
    """What tempauth and the proxy ask of memcache, in this process's memory:
    the proxy is a single process here, so nothing needs sharing."""

    def __init__(self):
        self.items = {}

    def _live(self, key):
        item = self.items.get(key)
        if item and item[1] and item[1] < time.time():
            del self.items[key]
            return None
        return item

    def get(self, key, raise_on_error=False):
        item = self._live(key)
        return item[0] if item else None

    def set(self, key, value, serialize=True, time=0, min_compress_len=0,
            raise_on_error=False):
        expires = time + _now() if time and time < 30 * 86400 else time
        self.items[key] = (value, expires)

    def incr(self, key, delta=1, time=0):
        item = self._live(key)
        value = (int(item[0]) if item else 0) + delta
        self.set(key, max(value, 0), time=time)
        return max(value, 0)

    def decr(self, key, delta=1, time=0):
        return self.incr(key, -delta, time)

    def delete(self, key, server_key=None):
        self.items.pop(key, None)

    def set_multi(self, mapping, server_key, serialize=True, time=0,
                  min_compress_len=0):
        for key, value in mapping.items():
            self.set(key, value, time=time)

    def get_multi(self, keys, server_key):
        return [self.get(k) for k in keys]


def _now():
    return time.time()


def cache_filter_factory(global_conf, **local_conf):
    cache = DictCache()

    def filt(app):
        def middleware(env, start_response):
            env['swift.cache'] = cache
            return app(env, start_response)
        return middleware
    return filt


def write_conf(state, kind, port):
    text = (PROXY if kind == 'proxy' else BACKEND).format(
        port=port, etc=etc_dir(state), srv=os.path.join(state, 'srv'),
        kind=kind)
    if kind == 'object':
        text += OBJECT_EXTRA
    path = os.path.join(etc_dir(state), kind + '-server.conf')
    with open(path, 'w') as f:
        f.write(text)
    return path


def die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class StderrSyslog(object):
    """Stands in for Swift's syslog handler: there is no /dev/log here, and
    its fallback sends UDP to port 514. Warnings go to stderr instead."""

    def __new__(cls, *args, **kwargs):
        import logging
        return logging.StreamHandler(sys.stderr)


def green_this_process():
    # What swift's servers do (utils.eventlet_monkey_patch), first thing and
    # without eventlet's scan for locks made before the patch: that scan runs
    # a full garbage collection per lock, seconds on a busy machine, for
    # locks this single-threaded process never contends.
    import eventlet
    eventlet.patcher._green_existing_locks = lambda *args, **kwargs: None
    eventlet.patcher.monkey_patch(all=False, socket=True, select=True,
                                  thread=True)
    import logging
    logging.logThreads = 0


def serve(state, proxy_port, ready):
    # The test's shell started this process; if it goes, so does the server.
    die_with_parent()
    for sub in ('etc', 'srv/d1'):
        os.makedirs(os.path.join(state, sub), exist_ok=True)
    write_swift_conf(state)
    green_this_process()
    utils = point_swift_at(state)
    utils.ThreadSafeSysLogHandler = StderrSyslog
    from swift.common import wsgi, storage_policy, constraints
    utils.validate_hash_conf()
    storage_policy.reload_storage_policies()
    constraints.reload_constraints()

    socks = {}
    for kind in ('account', 'container', 'object'):
        socks[kind] = wsgi.get_socket({'bind_ip': '127.0.0.1',
                                       'bind_port': 0})
    socks['proxy'] = wsgi.get_socket({'bind_ip': '127.0.0.1',
                                      'bind_port': proxy_port})
    ports = {k: s.getsockname()[1] for k, s in socks.items()}
    build_rings(state, {k: ports[k] for k in ('account', 'container',
                                                'object')})
    confs = {k: write_conf(state, k, ports[k]) for k in socks}

    children = []
    for kind in ('account', 'container', 'object'):
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            for other, s in socks.items():
                if other != kind:
                    s.close()
            conf = utils.readconf(confs[kind], 'app:%s-server' % kind)
            conf['__file__'] = confs[kind]
            logger = utils.get_logger(conf, log_route=kind)
            wsgi.run_server(conf, logger, socks[kind])
            os._exit(0)
        children.append(pid)
        socks[kind].close()

    def stop(signum, frame):
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def announce():
        tmp = ready + '.tmp'
        with open(tmp, 'w') as f:
            f.write('%d\n' % ports['proxy'])
        os.rename(tmp, ready)

    conf = utils.readconf(confs['proxy'], 'app:proxy-server')
    conf['__file__'] = confs['proxy']
    logger = utils.get_logger(conf, log_route='proxy')
    wsgi.run_server(conf, logger, socks['proxy'], ready_callback=announce)
    stop(0, None)


def object_path(state, bucket, key):
    utils = point_swift_at(state)
    utils.validate_hash_conf()
    from swift.common.ring import Ring
    ring = Ring(etc_dir(state), ring_name='object')
    part = ring.get_part(SWIFT_ACCOUNT, bucket, key)
    name_hash = utils.hash_path(SWIFT_ACCOUNT, bucket, key)
    where = os.path.join(state, 'srv', 'd1', 'objects', str(part),
                         name_hash[-3:], name_hash)
    datas = sorted(f for f in os.listdir(where) if f.endswith('.data'))
    if not datas:
        raise SystemExit('s3_swift.py: no .data file in %s' % where)
    print(os.path.join(where, datas[-1]))


def main(argv):
    if len(argv) == 5 and argv[1] == 'serve':
        serve(argv[2], int(argv[3]), argv[4])
    elif len(argv) == 5 and argv[1] == 'path':
        object_path(argv[2], argv[3], argv[4])
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv)
