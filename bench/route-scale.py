#!/usr/bin/env python3
"""Route scale, propagation and reload-under-load measurements for Portcullis.

Standalone mode (files watched), laid out as bench/sbs.sh
does: Portcullis and an nginx backend pinned to --sut-cpus, this client to
--client-cpus. Three phases; each starts its own Portcullis on a fresh config
directory (one file per HTTPRoute under routes/, plus base.yaml):

  scale    for each N in --routes and each shape (`hosts`: N HTTPRoutes with
           hostnames r<i>.example; `paths`: N HTTPRoutes with PathPrefix
           /svc<i> on one hostname):
             ready_s      process start -> /readyz 200 and the last route answers 200
             apply_ms     the first "configuration applied" (read + translate + swap)
             rss_mib      VmRSS once ready, and after the load run
             change_ms    one route file rewritten -> "configuration applied"
                          (median of --changes; split into read/translate/apply
                          when the log line carries them)
             rps, cpu_us  wrk -c64 against the LAST route (Host header / path):
                          requests/s and Portcullis CPU microseconds per request
  propagate  --prop-routes routes loaded (hosts shape); --trials times: a new
           file routes/new<k>.yaml with a new HTTPRoute is written (temp file +
           rename) -> the new hostname answers 200 (polled on a keep-alive
           connection every ~0.5 ms): p50/p99/max ms; every answer on the way
           must be 404 (never 5xx), and keep-alive clients on route r0 run all
           along (failed requests, connections closed)
  edits    --prop-routes routes loaded; wrk and --clients keep-alive clients on
           r0 while route r0 is edited --edits times, cycling through backend
           weights, filters (request/response header modifiers) and matches;
           each edit sets a response header x-rev: <k> and the time until a
           client sees it is recorded. Failed requests and connections closed
           by the server are counted (must be zero).

Only 127.0.0.1 is used; every process is started and stopped by PID; every
wait is bounded. Standard library only (needs nginx, wrk, taskset).

usage: bench/route-scale.py [--phases scale,propagate,edits] [--routes 10,10000]
       [--shapes hosts,paths] [--prop-routes 3000] [--trials 20] [--edits 20]
       [--changes 5] [--workers 1] [--sut-cpus 1] [--client-cpus 0]
       [--base-port 19280] [--wrk-seconds 5] [--bin target/release/portcullis] [--out DIR]
       bench/route-scale.py --generate DIR [--routes 10000] [--shapes hosts]   (only the files)
"""
import argparse, http.client, json, os, re, signal, socket, statistics, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument('--phases', default='scale,propagate,edits')
ap.add_argument('--routes', default='10,10000')
ap.add_argument('--shapes', default='hosts,paths')
ap.add_argument('--prop-routes', type=int, default=3000)
ap.add_argument('--trials', type=int, default=20)
ap.add_argument('--edits', type=int, default=20)
ap.add_argument('--changes', type=int, default=5)
ap.add_argument('--clients', type=int, default=4)
ap.add_argument('--workers', type=int, default=1)
ap.add_argument('--sut-cpus', default='1')
ap.add_argument('--client-cpus', default='0')
ap.add_argument('--base-port', type=int, default=19280)
ap.add_argument('--wrk-seconds', type=int, default=5)
ap.add_argument('--bin', default=os.path.join(HERE, 'target/release/portcullis'))
ap.add_argument('--out', default=None)
ap.add_argument('--max-seconds', type=int, default=1800)
ap.add_argument('--generate', metavar='DIR', default=None,
                help='only write the config directory of --routes (first value) in --shapes (first), then exit')
args = ap.parse_args()

BACKEND, BACKEND2, PROXY, ADMIN = args.base_port, args.base_port + 1, args.base_port + 2, args.base_port + 3
out = None if args.generate else args.out or tempfile.mkdtemp(prefix='portcullis-route-scale.')
for d in ('logs', 'run', 'tmp') if out else ():
    os.makedirs(os.path.join(out, d), exist_ok=True)
started = []
T_END = time.monotonic() + args.max_seconds
try:
    os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(',')})
except (OSError, ValueError):
    pass


def log(*a):
    print(time.strftime('[%H:%M:%S]'), *a, file=sys.stderr, flush=True)


def bounded():
    if time.monotonic() > T_END:
        raise SystemExit(f'route-scale: --max-seconds {args.max_seconds} exceeded')


# ------------------------------------------------------------------ processes
def start(name, argv, cpus=None):
    f = open(os.path.join(out, 'logs', name + '.log'), 'w')
    p = subprocess.Popen(['taskset', '-c', cpus or args.sut_cpus] + argv, stdout=f, stderr=subprocess.STDOUT)
    started.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait(5)
    if p in started:
        started.remove(p)


def rss_mib(pid):
    try:
        for line in open(f'/proc/{pid}/status'):
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float('nan')


def cpu_us(pid):
    hz = os.sysconf('SC_CLK_TCK')
    tot = 0
    for t in os.listdir(f'/proc/{pid}/task'):
        try:
            f = open(f'/proc/{pid}/task/{t}/stat').read().rsplit(')', 1)[1].split()
            tot += int(f[11]) + int(f[12])
        except (OSError, IndexError):
            pass
    return tot * 1_000_000 / hz


def get(host, path='/', port=None, timeout=1.0):
    c = http.client.HTTPConnection('127.0.0.1', port or PROXY, timeout=timeout)
    try:
        c.request('GET', path, headers={'Host': host})
        r = c.getresponse(); r.read()
        return r.status
    except OSError:
        return None
    finally:
        c.close()


def wait_200(host, path='/', limit_s=120.0, port=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if get(host, path, port) == 200:
            return time.monotonic() - t0
        time.sleep(0.005)
    return None


# ------------------------------------------------------------------ config
def write(path, text):
    tmp = os.path.join(os.path.dirname(path), '.' + os.path.basename(path) + '.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


BASE = f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: scale, namespace: default}}
spec:
  gatewayClassName: portcullis
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
    - name: http
      port: {PROXY}
      protocol: HTTP
      allowedRoutes: {{namespaces: {{from: Same}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: default}}
spec: {{ports: [{{name: http, port: 80, targetPort: {BACKEND}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend, namespace: default, labels: {{kubernetes.io/service-name: backend}}}}
addressType: IPv4
ports: [{{name: http, port: {BACKEND}}}]
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: backend2, namespace: default}}
spec: {{ports: [{{name: http, port: 80, targetPort: {BACKEND2}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend2, namespace: default, labels: {{kubernetes.io/service-name: backend2}}}}
addressType: IPv4
ports: [{{name: http, port: {BACKEND2}}}]
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
"""


def route_yaml(name, hostnames, path, rules_extra='', backends=None, matches=None):
    hosts = ''.join(f'\n    - {h}' for h in hostnames)
    hn = f'\n  hostnames:{hosts}' if hostnames else ''
    backends = backends or '[{name: backend, port: 80}]'
    matches = matches or f'[{{path: {{type: PathPrefix, value: {path}}}}}]'
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: scale}}]{hn}
  rules:
    - matches: {matches}
      backendRefs: {backends}{rules_extra}
"""


def shape_route(shape, i):
    if shape == 'hosts':
        return route_yaml(f'r{i}', [f'r{i}.example'], '/')
    return route_yaml(f'p{i}', ['one.example'], f'/svc{i}')


def shape_request(shape, i):
    return (f'r{i}.example', '/') if shape == 'hosts' else ('one.example', f'/svc{i}/items/42')


def write_config(d, shape, n):
    """base.yaml and n route files (routes/r<i>.yaml) of `shape` under d"""
    os.makedirs(os.path.join(d, 'routes'), exist_ok=True)
    write(os.path.join(d, 'base.yaml'), BASE)
    for i in range(n):
        with open(os.path.join(d, 'routes', f'r{i}.yaml'), 'w') as f:
            f.write(shape_route(shape, i))


def make_config(shape, n):
    d = tempfile.mkdtemp(prefix=f'cfg-{shape}-{n}-', dir=os.path.join(out, 'tmp'))
    write_config(d, shape, n)
    return d


# ------------------------------------------------------------------ portcullis
APPLIED = re.compile(r'configuration applied.*?elapsed_ms=([\d.]+)')
FIELD = lambda k: re.compile(rf'\b{k}=([\d.]+)')


class Gateway:
    def __init__(self, name, config):
        self.log = os.path.join(out, 'logs', name + '.log')
        self.p = start(name, [args.bin, 'run', '--config', config, '--admin', f'127.0.0.1:{ADMIN}',
                              '--workers', str(args.workers), '--log-level', 'info,access=off'])
        self.t0 = time.monotonic()

    def applied(self):
        """every 'configuration applied' line so far, as dicts of its numeric fields"""
        rows = []
        try:
            text = open(self.log).read()
        except OSError:
            return rows
        for line in text.splitlines():
            if 'configuration applied' in line:
                row = {}
                for k in ('elapsed_ms', 'read_ms', 'translate_ms', 'apply_ms', 'objects'):
                    m = FIELD(k).search(line)
                    if m:
                        row[k] = float(m.group(1))
                rows.append(row)
        return rows

    def wait_applied(self, count, limit_s=60.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            rows = self.applied()
            if len(rows) >= count:
                return rows[count - 1]
            if self.p.poll() is not None:
                raise SystemExit(f'portcullis exited; see {self.log}')
            time.sleep(0.002)
        return None

    def ready(self, host, path, limit_s=300.0):
        while time.monotonic() - self.t0 < limit_s:
            if self.p.poll() is not None:
                raise SystemExit(f'portcullis exited; see {self.log}')
            try:
                c = http.client.HTTPConnection('127.0.0.1', ADMIN, timeout=1)
                c.request('GET', '/readyz'); r = c.getresponse(); r.read(); c.close()
                if r.status == 200 and get(host, path) == 200:
                    return time.monotonic() - self.t0
            except OSError:
                pass
            time.sleep(0.01)
        raise SystemExit(f'portcullis not ready after {limit_s}s; see {self.log}')

    def stop(self):
        stop(self.p)


def wrk(host, path, seconds, conns=64):
    r = subprocess.run(['timeout', '-k', '5', str(seconds + 20), 'taskset', '-c', args.client_cpus,
                        'wrk', '-t1', f'-c{conns}', f'-d{seconds}s', '--latency', '-H', f'Host: {host}',
                        f'http://127.0.0.1:{PROXY}{path}'], capture_output=True, text=True)
    t = r.stdout
    rps = re.search(r'Requests/sec:\s+([\d.]+)', t)
    n = re.search(r'(\d+) requests in', t)
    bad = re.search(r'Non-2xx or 3xx responses:\s+(\d+)', t)
    sock = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', t)
    return dict(rps=float(rps.group(1)) if rps else float('nan'), requests=int(n.group(1)) if n else 0,
                non2xx=int(bad.group(1)) if bad else 0,
                sock_errors=sum(int(x) for x in sock.groups()) if sock else 0, raw=t)


# ------------------------------------------------------------------ clients
class Hammer(threading.Thread):
    """keep-alive client on one route: counts failures, server-closed connections, x-rev seen"""

    def __init__(self, host, path='/'):
        super().__init__(daemon=True)
        self.host, self.path = host, path
        self.stop_ev = threading.Event()
        self.ok = self.bad = self.closed = 0
        self.statuses = {}
        self.rev_seen = {}

    def run(self):
        c = None
        while not self.stop_ev.is_set():
            try:
                if c is None:
                    c = http.client.HTTPConnection('127.0.0.1', PROXY, timeout=5)
                    c.connect()
                    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c.request('GET', self.path, headers={'Host': self.host})
                r = c.getresponse(); r.read()
                if r.status == 200:
                    self.ok += 1
                else:
                    self.bad += 1
                    self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                rev = r.getheader('x-rev')
                if rev is not None and rev not in self.rev_seen:
                    self.rev_seen[rev] = time.monotonic()
                if r.getheader('connection', '').lower() == 'close':
                    self.closed += 1; c.close(); c = None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.closed += 1; c = None
            except OSError:
                self.bad += 1; c = None
                time.sleep(0.01)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float('nan')
    k = (len(xs) - 1) * p / 100
    f = int(k); c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


# ------------------------------------------------------------------ phases
def phase_scale():
    rows = []
    for shape in args.shapes.split(','):
        for n in [int(x) for x in args.routes.split(',')]:
            bounded()
            log(f'scale: {shape} x {n}: writing config')
            cfg = make_config(shape, n)
            g = Gateway(f'scale-{shape}-{n}', cfg)
            host, path = shape_request(shape, n - 1)
            ready = g.ready(host, path)
            first = g.wait_applied(1) or {}
            time.sleep(1)
            rss_ready = rss_mib(g.p.pid)
            changes = []
            for k in range(args.changes):
                before = len(g.applied())
                i = (k * 7919) % n
                text = shape_route(shape, i).replace('backendRefs: [{name: backend, port: 80}]',
                                                       f'backendRefs: [{{name: backend, port: 80, weight: {k + 2}}}]')
                write(os.path.join(cfg, 'routes', f'r{i}.yaml'), text)
                row = g.wait_applied(before + 1)
                if row:
                    changes.append(row)
                time.sleep(0.3)
            wrk(host, path, 1)  # warm-up
            c0 = cpu_us(g.p.pid)
            w = wrk(host, path, args.wrk_seconds)
            c1 = cpu_us(g.p.pid)
            rss_after = rss_mib(g.p.pid)
            g.stop()
            med = lambda k: statistics.median([c[k] for c in changes if k in c]) if any(k in c for c in changes) else float('nan')
            row = dict(shape=shape, routes=n, ready_s=ready, apply_ms=first.get('elapsed_ms', float('nan')),
                       rss_mib=rss_ready, rss_after_load_mib=rss_after,
                       change_ms=med('elapsed_ms'), change_max_ms=max((c.get('elapsed_ms', 0) for c in changes), default=float('nan')),
                       change_read_ms=med('read_ms'), change_translate_ms=med('translate_ms'), change_apply_ms=med('apply_ms'),
                       rps=w['rps'], cpu_us_per_req=(c1 - c0) / max(w['requests'], 1),
                       errors=w['non2xx'] + w['sock_errors'])
            log(row)
            rows.append(row)
    return rows


def phase_propagate():
    n = args.prop_routes
    log(f'propagate: {n} routes')
    cfg = make_config('hosts', n)
    g = Gateway(f'propagate-{n}', cfg)
    g.ready(f'r{n - 1}.example', '/')
    time.sleep(1)
    hammers = [Hammer('r0.example') for _ in range(2)]
    for h in hammers:
        h.start()
    lat, bad, polls = [], {}, 0
    for k in range(args.trials):
        bounded()
        host = f'new{k}.example'
        c = http.client.HTTPConnection('127.0.0.1', PROXY, timeout=5)
        assert get(host) == 404, 'new route answered before it was written'
        text = route_yaml(f'new{k}', [host], '/')
        t0 = time.monotonic()
        write(os.path.join(cfg, 'routes', f'new{k}.yaml'), text)
        seen = None
        while time.monotonic() - t0 < 10:
            try:
                c.request('GET', '/', headers={'Host': host})
                r = c.getresponse(); r.read(); polls += 1
                if r.status == 200:
                    seen = time.monotonic() - t0
                    break
                if r.status != 404:
                    bad[r.status] = bad.get(r.status, 0) + 1
            except OSError as e:
                bad[type(e).__name__] = bad.get(type(e).__name__, 0) + 1
                c.close(); c = http.client.HTTPConnection('127.0.0.1', PROXY, timeout=5)
            time.sleep(0.0005)
        c.close()
        lat.append(seen * 1000 if seen is not None else float('nan'))
        time.sleep(0.2)
    for h in hammers:
        h.stop_ev.set()
    for h in hammers:
        h.join(10)
    applied = g.applied()[-args.trials:]
    g.stop()
    row = dict(routes=n, trials=len(lat), p50_ms=pct(lat, 50), p99_ms=pct(lat, 99), max_ms=max(lat),
               min_ms=min(lat), polls=polls, non_404_on_the_way=sum(bad.values()), on_the_way=bad,
               apply_ms_median=statistics.median([a.get('elapsed_ms', float('nan')) for a in applied]) if applied else float('nan'),
               r0_ok=sum(h.ok for h in hammers), r0_failed=sum(h.bad for h in hammers),
               r0_closed=sum(h.closed for h in hammers), samples_ms=[round(x, 2) for x in lat])
    log(row)
    return row


EDIT_VARIANTS = [
    # (description, backends, filters, matches)
    ('weights 1:1', '[{name: backend, port: 80, weight: 1}, {name: backend2, port: 80, weight: 1}]', '', None),
    ('weights 3:1', '[{name: backend, port: 80, weight: 3}, {name: backend2, port: 80, weight: 1}]', '', None),
    ('request header filter', '[{name: backend, port: 80}]',
     '\n      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-edit, value: "1"}]}}]', None),
    ('matches + header', '[{name: backend2, port: 80}]', '',
     '[{path: {type: PathPrefix, value: /}}, {path: {type: Exact, value: /only}, headers: [{name: x-a, value: b}]}]'),
    ('weights 0:1', '[{name: backend, port: 80, weight: 0}, {name: backend2, port: 80, weight: 1}]', '', None),
]


def edit_yaml(k):
    desc, backends, filters, matches = EDIT_VARIANTS[k % len(EDIT_VARIANTS)]
    rev = (f'\n      filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-rev, value: "{k}"}}]}}}}]'
           if not filters else
           filters[:-2] + f', {{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: x-rev, value: "{k}"}}]}}}}]')
    return desc, route_yaml('r0', ['r0.example'], '/', rules_extra=rev, backends=backends, matches=matches)


def phase_edits():
    n = args.prop_routes
    log(f'edits: {n} routes, {args.edits} edits of r0 under load')
    cfg = make_config('hosts', n)
    g = Gateway(f'edits-{n}', cfg)
    g.ready(f'r{n - 1}.example', '/')
    time.sleep(1)
    hammers = [Hammer('r0.example') for _ in range(args.clients)]
    for h in hammers:
        h.start()
    seconds = int(args.edits * 0.5 + 4)
    res = {}
    wt = threading.Thread(target=lambda: res.update(wrk('r0.example', '/', seconds, conns=16)), daemon=True)
    wt.start()
    time.sleep(1)
    lat, descs = [], []
    for k in range(1, args.edits + 1):
        bounded()
        desc, text = edit_yaml(k)
        descs.append(desc)
        t0 = time.monotonic()
        write(os.path.join(cfg, 'routes', 'r0.yaml'), text)
        seen = None
        while time.monotonic() - t0 < 5:
            ts = [h.rev_seen.get(str(k)) for h in hammers]
            ts = [t for t in ts if t is not None]
            if ts:
                seen = min(ts) - t0
                break
            time.sleep(0.001)
        lat.append(seen * 1000 if seen is not None else float('nan'))
        time.sleep(0.4)
    wt.join(seconds + 30)
    for h in hammers:
        h.stop_ev.set()
    for h in hammers:
        h.join(10)
    g.stop()
    seen_lat = [x for x in lat if x == x]
    row = dict(routes=n, edits=args.edits, kinds=sorted(set(descs)), edits_seen=len(seen_lat),
               edit_visible_p50_ms=pct(seen_lat, 50), edit_visible_p99_ms=pct(seen_lat, 99),
               edit_visible_max_ms=max(seen_lat, default=float('nan')),
               wrk_requests=res.get('requests', 0), wrk_rps=res.get('rps', float('nan')),
               wrk_non2xx=res.get('non2xx', -1), wrk_socket_errors=res.get('sock_errors', -1),
               client_ok=sum(h.ok for h in hammers), client_failed=sum(h.bad for h in hammers),
               client_statuses={k: v for h in hammers for k, v in h.statuses.items()},
               client_conns_closed=sum(h.closed for h in hammers))
    log(row)
    return row


def main():
    backend_conf = os.path.join(out, 'backend.conf')
    write(backend_conf, f"""worker_processes 1;
error_log logs/backend-error.log warn;
pid run/backend.pid;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path tmp/b_body; proxy_temp_path tmp/b_proxy; fastcgi_temp_path tmp/b_fcgi;
  uwsgi_temp_path tmp/b_uwsgi; scgi_temp_path tmp/b_scgi;
  server {{ listen 127.0.0.1:{BACKEND} backlog=4096; location / {{ return 200 "hello from backend\\n"; }} }}
  server {{ listen 127.0.0.1:{BACKEND2} backlog=4096; location / {{ return 200 "hello from backend2\\n"; }} }} }}
""")
    for p in (PROXY, ADMIN):
        with socket.socket() as s:
            if s.connect_ex(('127.0.0.1', p)) == 0:
                raise SystemExit(f'port {p} in use; pick --base-port')
    backend = start('backend', ['nginx', '-p', out + '/', '-c', backend_conf, '-g', 'daemon off;'])
    if wait_200('x', '/', 10, port=BACKEND) is None:
        raise SystemExit('backend did not start')
    result = dict(date=time.strftime('%Y-%m-%dT%H:%M:%S%z'), workers=args.workers, sut_cpus=args.sut_cpus,
                  client_cpus=args.client_cpus)
    phases = args.phases.split(',')
    if 'scale' in phases:
        result['scale'] = phase_scale()
    if 'propagate' in phases:
        result['propagate'] = phase_propagate()
    if 'edits' in phases:
        result['edits'] = phase_edits()
    stop(backend)
    with open(os.path.join(out, 'route-scale.json'), 'w') as f:
        json.dump(result, f, indent=1)
    f2 = lambda x, d=1: '-' if x != x else f'{x:,.{d}f}'
    if 'scale' in result:
        print('| shape | routes | start->last route 200 (s) | first apply (ms) | RSS ready (MiB) | RSS after load (MiB) | one-route change, median (ms) | max (ms) | read / translate / apply (ms) | rps to last route | CPU us/req | errors |')
        print('|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|')
        for r in result['scale']:
            print(f"| {r['shape']} | {r['routes']:,} | {r['ready_s']:.2f} | {f2(r['apply_ms'])} | {f2(r['rss_mib'])} | {f2(r['rss_after_load_mib'])} | "
                  f"{f2(r['change_ms'])} | {f2(r['change_max_ms'])} | {f2(r['change_read_ms'])} / {f2(r['change_translate_ms'])} / {f2(r['change_apply_ms'])} | "
                  f"{f2(r['rps'], 0)} | {f2(r['cpu_us_per_req'], 2)} | {r['errors']} |")
    if 'propagate' in result:
        r = result['propagate']
        print(f"\nnew route live with {r['routes']:,} routes ({r['trials']} trials, file written -> first 200): "
              f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, min {r['min_ms']:.1f} ms; "
              f"answers other than 404 on the way: {r['non_404_on_the_way']}; apply (log) median {f2(r['apply_ms_median'])} ms; "
              f"keep-alive clients on r0: {r['r0_ok']} ok, {r['r0_failed']} failed, {r['r0_closed']} connections closed")
    if 'edits' in result:
        r = result['edits']
        print(f"\nroute edits under load ({r['edits']} edits of r0 with {r['routes']:,} routes: {', '.join(r['kinds'])}): "
              f"wrk {r['wrk_requests']} requests ({f2(r['wrk_rps'], 0)} rps), {r['wrk_non2xx']} non-2xx, {r['wrk_socket_errors']} socket errors; "
              f"keep-alive clients {r['client_ok']} ok, {r['client_failed']} failed, {r['client_conns_closed']} connections closed; "
              f"edit visible p50 {r['edit_visible_p50_ms']:.1f} ms, p99 {r['edit_visible_p99_ms']:.1f} ms "
              f"({r['edits_seen']} of {r['edits']} revisions observed; the others were superseded by the next edit before a reload)")
    print(f'\nraw: {out}/route-scale.json', file=sys.stderr)


def generate(d):
    shape, n = args.shapes.split(',')[0], int(args.routes.split(',')[0])
    write_config(d, shape, n)
    print(f'{n} {shape} routes in {d}', file=sys.stderr)


try:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    if args.generate:
        generate(args.generate)
    else:
        main()
finally:
    for p in list(reversed(started)):
        stop(p)
