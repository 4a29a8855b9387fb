#!/usr/bin/env python3
"""Side-by-side benchmark: Portcullis, nginx and HAProxy in ONE run (driven by bench/sbs.sh).

Layout: the load generator on --client-cpus (default 0); each proxy AND the backend (nginx
returning a fixed 200) on --sut-cpus (default 1); one worker / thread per proxy. Everything
listens on 127.0.0.1; every process is started by this script and stopped by its PID; every
client run is bounded by a timeout and the whole run by --max-seconds.

Phases (--phases, comma separated; default all):
  h1        wrk -t1 -cCONNS keep-alive: rps, p50/p99 at saturation, proxy CPU us per request
            (utime+stime deltas of /proc/PID/stat over the proxy's process tree); with oha on
            PATH also p50/p99 at a fixed rate = --fixed-pct % of nginx's median rps
  h2        h2load -cH2CONNS -mSTREAMS: h2c (prior knowledge) and HTTPS/h2 (ALPN) rps and CPU/req
  tls       TLS handshakes per second, a new connection per request, each with one proxied
            HTTP/1.0 GET (openssl s_time -www, see WWW below; TLS 1.3, X25519 ECDHE, ECDSA
            P-256 certificate), --tls-clients s_time processes on
            the client cpu: full handshakes (-new) and session resumption (-reuse), with the
            proxy's CPU per handshake; also TLS 1.2 resumption (session id)
  callgrind instructions per request under valgrind --tool=callgrind: after a warm-up, the
            counters are zeroed and dumped around N1 and N2 requests (h2load --h1, keep-alive);
            Ir/req = (Ir(N2) - Ir(N1)) / (N2 - N1), which cancels fixed costs
  strace    system calls per request, strace -c -f attached over N1 and N2 requests, same
            difference
Repetitions: the targets are interleaved inside every repetition (so the machine's noise hits
all alike) and medians are reported, with ratios to nginx and HAProxy from the same run.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# portcullis: access log off, as nginx (access_log off) and HAProxy (no log) here;
# portcullis-log: the same binary with its default access log (text, to stdout, here a
# file), measured in the h1, callgrind and strace phases only.
PROXIES = ["nginx", "haproxy", "portcullis", "portcullis-log"]
LOG_ONLY_PHASES = ("h1", "callgrind", "strace")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", help="portcullis binary [$CARGO_TARGET_DIR or target]/release/portcullis")
    p.add_argument("--phases", default="h1,h2,tls,callgrind,strace")
    p.add_argument("--targets", default="nginx,haproxy,portcullis,portcullis-log",
                   help="proxies to measure [nginx,haproxy,portcullis,portcullis-log]")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds per load run [10]")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--h2-conns", type=int, default=16)
    p.add_argument("--h2-streams", type=int, default=10)
    p.add_argument("--tls-seconds", type=int, default=5)
    p.add_argument("--tls-clients", type=int, default=4, help="parallel s_time processes [4]")
    p.add_argument("--fixed-pct", type=int, default=50)
    p.add_argument("--profile-requests", default="1000,3000", help="N1,N2 for callgrind/strace [1000,3000]")
    p.add_argument("--strace-requests", default="2000,10000", help="N1,N2 for strace [2000,10000]")
    p.add_argument("--client-cpus", default="0")
    p.add_argument("--sut-cpus", default="1")
    p.add_argument("--quiet-pct", type=float, default=10.0,
                   help="a run where other processes used more than this %% of the SUT cpus is redone [10]")
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--base-port", type=int, default=19080)
    p.add_argument("--out", default=f"/tmp/portcullis-sbs.{time.strftime('%Y%m%d-%H%M%S')}")
    p.add_argument("--max-seconds", type=int, default=3000)
    a = p.parse_args()
    if not a.bin:
        a.bin = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release", "portcullis")
    a.phases = [x for x in a.phases.split(",") if x]
    a.profile_requests = [int(x) for x in a.profile_requests.split(",")]
    a.strace_requests = [int(x) for x in a.strace_requests.split(",")]
    return a


A = parse_args()
PROXIES = [t for t in A.targets.split(",") if t]
OUT = A.out
RUN = os.path.join(OUT, "run")
for d in ("logs", "run", "tmp", "conf", "profile"):
    os.makedirs(os.path.join(RUN, d), exist_ok=True)
STARTED = []  # Popen objects, stopped in reverse order
DEADLINE = time.time() + A.max_seconds


def descendants(pid):
    out = []
    try:
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    except Exception:
        kids = []
    for k in kids:
        out.append(int(k))
        out.extend(descendants(int(k)))
    return out


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is not None:
        return
    kids = descendants(proc.pid)
    try:
        proc.send_signal(sig)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    for k in kids:
        try:
            os.kill(k, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc in STARTED:
        STARTED.remove(proc)


def cleanup(*_):
    for p in reversed(list(STARTED)):
        try:
            stop(p)
        except Exception:
            pass


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGALRM, lambda *_: (log(f"watchdog: --max-seconds {A.max_seconds} reached"), on_signal(signal.SIGALRM, None)))
signal.alarm(A.max_seconds)


def start(name, argv, cpus=None, env=None):
    cmd = (["taskset", "-c", cpus] if cpus else []) + argv
    f = open(os.path.join(RUN, "logs", f"{name}.out"), "ab")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=RUN, env=env, start_new_session=True)
    STARTED.append(p)
    log(f"started {name} pid={p.pid}")
    return p


def client(argv, seconds, outfile=None):
    """A bounded client run on the client cpus; returns its stdout."""
    cmd = ["timeout", "-k", "5", str(int(seconds) + 30), "taskset", "-c", A.client_cpus] + argv
    r = subprocess.run(cmd, capture_output=True, text=True)
    out = r.stdout + r.stderr
    if outfile:
        with open(outfile, "w") as f:
            f.write(" ".join(cmd) + "\n" + out)
    return out


def curl_ok(url, *extra):
    r = subprocess.run(["curl", "-s", "-k", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", *extra, url],
                       capture_output=True, text=True)
    return r.stdout.strip() == "200"


def wait_ok(url, *extra, timeout=20, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if curl_ok(url, *extra):
            return True
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer 200 within {timeout}s (see {RUN}/logs)")


def tree_cpu_us(pid):
    total = 0
    for p in [pid] + descendants(pid):
        try:
            f = open(f"/proc/{p}/stat").read()
            fields = f[f.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError):
            pass
    return total * 1_000_000 // CLK_TCK


def cpu_list(spec):
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


SUT_CPUS = cpu_list(A.sut_cpus)


def sut_jiffies():
    """(busy, total) jiffies of the SUT cpus."""
    busy = total = 0
    for line in open("/proc/stat"):
        m = re.match(r"cpu(\d+) (.*)", line)
        if m and int(m.group(1)) in SUT_CPUS:
            v = [int(x) for x in m.group(2).split()]
            # user nice system idle iowait irq softirq steal: "busy" is process time
            # (user + nice + system); the kernel's network softirqs done for our
            # own sockets are not another process's
            total += sum(v[:8])
            busy += v[0] + v[1] + v[2]
    return busy, total


# ------------------------------------------------------------------ ports, certificate, configs
B = A.base_port
PORTS = {
    "backend": B,
    "nginx": (B + 1, B + 2, B + 3),
    "haproxy": (B + 4, B + 5, B + 6),
    "portcullis": (B + 7, B + 8, B + 9),
    "portcullis-log": (B + 11, B + 12, B + 13),
}
ADMIN = {"portcullis": B + 10, "portcullis-log": B + 14}
NOFILE = 20000
try:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    NOFILE = want
except Exception:
    pass

CONF = os.path.join(RUN, "conf")
CRT, KEY, PEM = (os.path.join(CONF, n) for n in ("bench.crt", "bench.key", "bench.pem"))
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=bench.example", "-addext", "subjectAltName=DNS:bench.example", "-days", "2",
                "-keyout", KEY, "-out", CRT], check=True, capture_output=True)
with open(PEM, "w") as f:
    f.write(open(CRT).read() + open(KEY).read())

COMMON_HTTP = """    access_log off;
    client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;"""


def nginx_backend_conf():
    return f"""worker_processes 1;
worker_rlimit_nofile {NOFILE};
error_log logs/backend-error.log warn;
pid run/backend.pid;
events {{ worker_connections {NOFILE - 200}; }}
http {{
{COMMON_HTTP}
    server {{
        listen 127.0.0.1:{B} backlog=4096;
        default_type text/plain;
        location / {{ return 200 "hello from backend\\n"; }}
    }}
}}
"""


def nginx_proxy_conf(single_process=False):
    h1, h2, tls = PORTS["nginx"]
    loc = """        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }"""
    return f"""worker_processes 1;
{"master_process off;" if single_process else ""}
worker_rlimit_nofile {NOFILE};
error_log logs/nginx-error.log warn;
pid run/nginx.pid;
events {{ worker_connections {NOFILE - 200}; }}
http {{
{COMMON_HTTP}
    upstream backend {{
        server 127.0.0.1:{B};
        keepalive 256;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    ssl_certificate {CRT};
    ssl_certificate_key {KEY};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    server {{ listen 127.0.0.1:{h1} backlog=4096;
{loc} }}
    server {{ listen 127.0.0.1:{h2} http2 backlog=4096;
{loc} }}
    server {{ listen 127.0.0.1:{tls} ssl http2 backlog=4096;
{loc} }}
}}
"""


def haproxy_conf():
    h1, h2, tls = PORTS["haproxy"]
    maxconn = min((NOFILE - 200) // 2, 60000)
    return f"""global
    nbthread 1
    maxconn {maxconn}
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    maxconn {maxconn}
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option http-keep-alive
    http-reuse safe
frontend fe_h1
    bind 127.0.0.1:{h1}
    default_backend be
frontend fe_h2
    bind 127.0.0.1:{h2} proto h2
    default_backend be
frontend fe_tls
    bind 127.0.0.1:{tls} ssl crt {PEM} alpn h2,http/1.1
    default_backend be
backend be
    server s1 127.0.0.1:{B}
"""


def portcullis_conf(name):
    import base64
    h1, h2, tls = PORTS[name]
    b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: default}}
spec:
  gatewayClassName: portcullis
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
    - {{name: h1, port: {h1}, protocol: HTTP}}
    - {{name: h2, port: {h2}, protocol: HTTP}}
    - {{name: tls, port: {tls}, protocol: HTTPS, tls: {{certificateRefs: [{{name: bench-cert}}]}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bench-cert, namespace: default}}
type: kubernetes.io/tls
data:
  tls.crt: {b64(CRT)}
  tls.key: {b64(KEY)}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bench, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
    - backendRefs: [{{name: backend, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {B}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend, namespace: default, labels: {{kubernetes.io/service-name: backend}}}}
addressType: IPv4
ports: [{{name: http, port: {B}}}]
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
"""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


write(os.path.join(CONF, "backend.conf"), nginx_backend_conf())
write(os.path.join(CONF, "nginx.conf"), nginx_proxy_conf())
write(os.path.join(CONF, "nginx-single.conf"), nginx_proxy_conf(single_process=True))
write(os.path.join(CONF, "haproxy.cfg"), haproxy_conf())
for _n in ("portcullis", "portcullis-log"):
    os.makedirs(os.path.join(CONF, _n), exist_ok=True)
    write(os.path.join(CONF, _n, "bench.yaml"), portcullis_conf(_n))


def proxy_argv(name, single_process=False):
    if name == "nginx":
        conf = "nginx-single.conf" if single_process else "nginx.conf"
        return ["nginx", "-p", RUN + "/", "-c", os.path.join(CONF, conf), "-g", "daemon off;"]
    if name == "haproxy":
        return ["haproxy", "-db", "-f", os.path.join(CONF, "haproxy.cfg")]
    return [A.bin, "run", "--config", os.path.join(CONF, name), "--admin", f"127.0.0.1:{ADMIN[name]}",
            "--workers", "1", "--log-level", "warn"] + (["--access-log", "off"] if name == "portcullis" else [])


def start_proxy(name, wrapper=(), single_process=False, ready_timeout=20):
    p = start(name, list(wrapper) + proxy_argv(name, single_process), cpus=A.sut_cpus)
    wait_ok(f"http://127.0.0.1:{PORTS[name][0]}/", timeout=ready_timeout, proc=p)
    return p


# ------------------------------------------------------------------ parsing
def us(v):
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else float("nan")


def parse_wrk(t):
    g = lambda rx: re.search(rx, t, re.M)
    rps, p50, p99, n = g(r"Requests/sec:\s+([\d.]+)"), g(r"^\s+50%\s+(\S+)"), g(r"^\s+99%\s+(\S+)"), g(r"(\d+) requests in")
    err = 0
    m = g(r"Non-2xx or 3xx responses:\s+(\d+)")
    if m:
        err += int(m.group(1))
    m = g(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    if m:
        err += sum(int(x) for x in m.groups())
    return dict(rps=float(rps.group(1)) if rps else float("nan"), p50=us(p50.group(1)) if p50 else float("nan"),
                p99=us(p99.group(1)) if p99 else float("nan"), n=int(n.group(1)) if n else 0, errors=err)


def parse_h2load(t):
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", t)
    req = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", t)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", t)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", t)
    err = (int(req.group(3)) + int(req.group(4))) if req else 0
    if st:
        err += int(st.group(3)) + int(st.group(4))
    return dict(rps=float(rps.group(1)) if rps else float("nan"), n=int(req.group(2)) if req else 0, errors=err,
                mean=us(mean.group(1) + mean.group(2)) if mean else float("nan"))


# ------------------------------------------------------------------ measured runs
RESULTS = []  # dicts: target, kind, rep, rps, p50, p99, cpu_us_req, backend_us_req, errors, foreign_pct


def measured(kind, target, rep, pids, backend_pid, run_client):
    """run_client() -> parsed dict with n; CPU deltas of pids (proxy tree) and the backend."""
    for attempt in range(A.retries + 1):
        c0 = sum(tree_cpu_us(p) for p in pids)
        b0 = tree_cpu_us(backend_pid)
        j0 = sut_jiffies()
        r = run_client()
        j1 = sut_jiffies()
        c1 = sum(tree_cpu_us(p) for p in pids)
        b1 = tree_cpu_us(backend_pid)
        busy_us = (j1[0] - j0[0]) * 1_000_000 / CLK_TCK
        total_us = max((j1[1] - j0[1]) * 1_000_000 / CLK_TCK, 1)
        ours = (c1 - c0) + (b1 - b0) if target != "direct" else (b1 - b0)
        foreign = max(0.0, 100.0 * (busy_us - ours) / total_us)
        if foreign <= A.quiet_pct:
            break
        if attempt < A.retries:
            log(f"{kind} {target} rep{rep}: other processes used {foreign:.1f}% of the SUT cpu; redoing")
    n = max(r.get("n", 0), 1)
    row = dict(target=target, kind=kind, rep=rep, rps=r.get("rps", float("nan")), p50=r.get("p50", float("nan")),
               p99=r.get("p99", float("nan")), cpu_us_req=(c1 - c0) / n, backend_us_req=(b1 - b0) / n,
               errors=r.get("errors", 0), n=r.get("n", 0), foreign_pct=round(foreign, 1), extra=r.get("extra"))
    RESULTS.append(row)
    log(f"{kind:9} rep{rep} {target:10} rps={row['rps']:.0f} p50={row['p50']:.0f}us p99={row['p99']:.0f}us "
        f"cpu/req={row['cpu_us_req']:.2f}us backend/req={row['backend_us_req']:.2f}us err={row['errors']} "
        f"foreign={foreign:.1f}%")
    with open(os.path.join(OUT, "results.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def wrk(port, seconds, conns, outfile=None, path="/"):
    return client(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"],
                  seconds, outfile)


def oha_fixed(port, rate, outfile):
    out = client(["oha", "--no-tui", "--output-format", "json", "--latency-correction", "-q", str(rate),
                  "-c", str(A.conns), "-z", f"{A.duration}s", f"http://127.0.0.1:{port}/"], A.duration, outfile)
    try:
        d = json.loads(out[out.index("{"):])
        lp, codes = d["latencyPercentiles"], d.get("statusCodeDistribution", {})
        return dict(rps=d["summary"]["requestsPerSec"], p50=lp["p50"] * 1e6, p99=lp["p99"] * 1e6,
                    n=sum(codes.values()), errors=sum(v for k, v in codes.items() if k != "200"))
    except Exception:
        return dict(n=0)


def h2load(url, outfile, extra=()):
    return client(["h2load", "-t1", f"-c{A.h2_conns}", f"-m{A.h2_streams}", f"--warm-up-time={A.warmup}",
                   f"-D{A.duration}", *extra, url], A.duration + A.warmup, outfile)


# s_time sends "GET <www> HTTP/1.0\r\n\r\n": the path is followed by a Host field (and a dummy
# field that takes the trailing " HTTP/1.0"), since Portcullis answers an HTTP/1.0 request
# without Host with 400, unproxied; nginx and HAProxy get the same request.
WWW = "/ HTTP/1.0\r\nHost: bench.example\r\nX-Pad: x"


def s_time(port, mode, version, seconds, tag):
    """--tls-clients parallel `openssl s_time`; returns handshakes/s and counts."""
    procs = []
    for i in range(A.tls_clients):
        argv = ["timeout", "-k", "5", str(seconds + 30), "taskset", "-c", A.client_cpus, "openssl", "s_time",
                "-connect", f"127.0.0.1:{port}", f"-{mode}", f"-{version}", "-time", str(seconds), "-www", WWW]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    t0 = time.time()
    total = reused = 0
    texts = []
    for p in procs:
        t = p.communicate()[0]
        texts.append(t)
        # "N connections in T real seconds, ..."; the progress line has one character per
        # connection, 'r' for a resumed session
        m = re.search(r"(\d+) connections in (\d+) real seconds", t)
        if m:
            total += int(m.group(1))
        prog = t.split("starting", 1)[1].split("\n\n", 1)[0] if "starting" in t else ""
        reused += prog.count("r")
    wall = time.time() - t0
    with open(os.path.join(RUN, "logs", f"s_time.{tag}.txt"), "w") as f:
        f.write("\n----\n".join(texts))
    return dict(rps=total / max(wall, 0.001), n=total, errors=sum(1 for t in texts if "connections in" not in t),
                extra=dict(reused=reused, wall_s=round(wall, 2)))


# ------------------------------------------------------------------ main
def versions():
    v = {}
    v["nginx"] = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().replace("nginx version: ", "")
    v["haproxy"] = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    v["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    v["h2load"] = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    v["openssl"] = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    v["portcullis"] = A.bin
    try:
        v["portcullis_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                                text=True).stdout.strip()
    except Exception:
        pass
    for tool in ("valgrind", "strace"):
        if shutil.which(tool):
            v[tool] = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return v


def in_phase(target, phase):
    return target != "portcullis-log" or phase in LOG_ONLY_PHASES


def load_phases(backend):
    procs = {n: start_proxy(n) for n in PROXIES}
    h2c, tls = {}, {}
    for n in PROXIES:
        wait_ok(f"http://127.0.0.1:{PORTS[n][1]}/", "--http2-prior-knowledge")
        wait_ok(f"https://127.0.0.1:{PORTS[n][2]}/", "--http2")
    targets = ["direct"] + PROXIES
    port1 = {"direct": B, **{n: PORTS[n][0] for n in PROXIES}}
    pid_of = {"direct": backend.pid, **{n: procs[n].pid for n in PROXIES}}
    logs = os.path.join(RUN, "logs")
    for rep in range(1, A.reps + 1):
        for t in targets:
            if "h1" in A.phases:
                wrk(port1[t], A.warmup, A.conns)
                measured("h1", t, rep, [pid_of[t]], backend.pid,
                         lambda: parse_wrk(wrk(port1[t], A.duration, A.conns, f"{logs}/wrk.{t}.{rep}.txt")))
            if "h2" in A.phases and t != "direct" and in_phase(t, "h2"):
                measured("h2c", t, rep, [pid_of[t]], backend.pid,
                         lambda: parse_h2load(h2load(f"http://127.0.0.1:{PORTS[t][1]}/", f"{logs}/h2c.{t}.{rep}.txt")))
                measured("https-h2", t, rep, [pid_of[t]], backend.pid,
                         lambda: parse_h2load(h2load(f"https://127.0.0.1:{PORTS[t][2]}/", f"{logs}/https.{t}.{rep}.txt")))
    if "h1" in A.phases and shutil.which("oha"):
        rate = int(median([r["rps"] for r in RESULTS if r["target"] == "nginx" and r["kind"] == "h1"]) * A.fixed_pct / 100)
        log(f"fixed-rate phase: {rate} req/s (oha, open loop)")
        for rep in range(1, A.reps + 1):
            for t in targets:
                measured("h1-fixed", t, rep, [pid_of[t]], backend.pid,
                         lambda: oha_fixed(port1[t], rate, f"{logs}/oha.{t}.{rep}.txt"))
    elif "h1" in A.phases:
        log("no fixed-rate load generator (oha or wrk2) on PATH: p99 at a fixed 50% load not measured")
    if "tls" in A.phases:
        for rep in range(1, A.reps + 1):
            for t in (t for t in PROXIES if in_phase(t, "tls")):
                for mode, version in (("new", "tls1_3"), ("reuse", "tls1_3"), ("reuse", "tls1_2")):
                    kind = f"tls-{mode}-{version}"
                    measured(kind, t, rep, [pid_of[t]], backend.pid,
                             lambda: s_time(PORTS[t][2], mode, version, A.tls_seconds, f"{t}.{kind}.{rep}"))
    for n in reversed(PROXIES):
        stop(procs[n])


def h1_requests(port, n, conns=16):
    out = client(["h2load", "--h1", "-t1", f"-c{conns}", f"-n{n}", f"http://127.0.0.1:{port}/"], 600)
    r = parse_h2load(out)
    if r["n"] != n or r["errors"]:
        log(f"warning: asked for {n} requests, {r['n']} succeeded, {r['errors']} errors")
    return r


def callgrind_phase():
    n1, n2 = A.profile_requests
    prof = os.path.join(RUN, "profile")
    for name in PROXIES:
        base = os.path.join(prof, f"callgrind.{name}")
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={base}.%p", "--dump-instr=no",
                   "--trace-children=no"]
        p = start_proxy(name, wrapper, single_process=True, ready_timeout=180)
        port = PORTS[name][0]
        h1_requests(port, 500)  # warm-up: connections, pools, caches
        time.sleep(1)
        dumps = []
        for n in (n1, n2):
            subprocess.run(["callgrind_control", "-z", str(p.pid)], capture_output=True, timeout=60)
            h1_requests(port, n)
            r = subprocess.run(["callgrind_control", f"--dump=n{n}", str(p.pid)], capture_output=True, text=True,
                               timeout=120)
            time.sleep(1)
            dumps.append(r.stdout)
        stop(p)
        files = sorted((f for f in os.listdir(prof) if f.startswith(f"callgrind.{name}.")),
                       key=lambda f: os.path.getmtime(os.path.join(prof, f)))
        totals = {}
        for f in files:
            txt = open(os.path.join(prof, f), errors="replace").read()
            m = re.search(r"^desc: Trigger: (?:Client Request: |dump )?n(\d+)", txt, re.M)
            s = re.search(r"^summary: (\d+)", txt, re.M)
            if m and s:
                totals[int(m.group(1))] = totals.get(int(m.group(1)), 0) + int(s.group(1))
        row = dict(target=name, kind="callgrind", n1=n1, n2=n2, ir_n1=totals.get(n1), ir_n2=totals.get(n2))
        if row["ir_n1"] and row["ir_n2"]:
            row["ir_per_req"] = (row["ir_n2"] - row["ir_n1"]) / (n2 - n1)
            row["ir_per_req_n2"] = row["ir_n2"] / n2
        log(f"callgrind {name}: {row}")
        RESULTS.append(row)
        with open(os.path.join(OUT, "results.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")


def parse_strace(path):
    calls, per = 0, {}
    for line in open(path):
        f = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(f) >= 5 and re.match(r"^[\d.]+$", f[0]) and f[-1] != "total":
            try:
                c = int(f[3])
            except ValueError:
                continue
            per[f[-1]] = per.get(f[-1], 0) + c
            errs = int(f[4]) if len(f) == 6 else 0
            per[f[-1] + " (errors)"] = per.get(f[-1] + " (errors)", 0) + errs
        elif len(f) >= 4 and f[-1] == "total":
            calls = int(f[3])
    return calls, per


def strace_phase():
    n1, n2 = A.strace_requests
    prof = os.path.join(RUN, "profile")
    for name in PROXIES:
        p = start_proxy(name, single_process=True)
        port = PORTS[name][0]
        h1_requests(port, 2000)
        res = {}
        for n in (n1, n2):
            out = os.path.join(prof, f"strace.{name}.{n}.txt")
            st = subprocess.Popen(["timeout", "-s", "INT", "300", "strace", "-c", "-f", "-p", str(p.pid), "-o", out],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            STARTED.append(st)
            time.sleep(1.0)
            h1_requests(port, n)
            time.sleep(0.5)
            st.send_signal(signal.SIGINT)
            st.wait(timeout=30)
            STARTED.remove(st)
            res[n] = parse_strace(out)
        stop(p)
        (c1, p1), (c2, p2) = res[n1], res[n2]
        per_req = {k: (p2.get(k, 0) - p1.get(k, 0)) / (n2 - n1) for k in set(p1) | set(p2)}
        row = dict(target=name, kind="strace", n1=n1, n2=n2, calls_n1=c1, calls_n2=c2,
                   syscalls_per_req=(c2 - c1) / (n2 - n1),
                   by_call={k: round(v, 3) for k, v in sorted(per_req.items(), key=lambda kv: -kv[1]) if abs(v) >= 0.005})
        log(f"strace {name}: {row['syscalls_per_req']:.2f} syscalls/req {row['by_call']}")
        RESULTS.append(row)
        with open(os.path.join(OUT, "results.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt(x, d=0):
    return "–" if x is None or x != x else f"{x:,.{d}f}"


def report(ver, t0):
    lines = [f"# Side by side, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(t0))}–{time.strftime('%H:%M UTC', time.gmtime())}",
             "", f"command: `{' '.join(sys.argv)}` (via bench/sbs.sh)",
             f"host: {os.cpu_count()} cpus ({open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}), "
             f"kernel {os.uname().release}; client cpus {A.client_cpus}, proxy + backend cpus {A.sut_cpus}; one worker per proxy",
             "versions: " + "; ".join(f"{k} {v}" for k, v in ver.items()),
             f"load: wrk -t1 -c{A.conns} -d{A.duration}s --latency (warm-up {A.warmup}s); h2load -t1 -c{A.h2_conns} "
             f"-m{A.h2_streams} -D{A.duration} --warm-up-time={A.warmup}; reps={A.reps}, medians; a run is redone "
             f"(max {A.retries}x) when other processes used > {A.quiet_pct:g}% of the SUT cpu", ""]
    rows = [r for r in RESULTS if "rep" in r]
    S = {}
    for r in rows:
        S.setdefault((r["target"], r["kind"]), []).append(r)
    M = {k: {f: median([x[f] for x in v]) for f in ("rps", "p50", "p99", "cpu_us_req", "backend_us_req", "foreign_pct")}
         | {"errors": sum(x["errors"] for x in v), "runs": len(v)} for k, v in S.items()}
    targets = ["direct"] + PROXIES
    if any(k[1] == "h1" for k in M):
        lines += ["| target | h1 rps | h1 p50 µs | h1 p99 µs | proxy CPU µs/req | backend CPU µs/req | fixed-rate p99 µs | h2c rps | h2c CPU µs/req | HTTPS/h2 rps | HTTPS/h2 CPU µs/req | errors | max foreign % |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for t in targets:
            g = lambda kind, f: M.get((t, kind), {}).get(f)
            errs = sum(M.get((t, k), {}).get("errors", 0) for k in ("h1", "h2c", "https-h2", "h1-fixed"))
            fr = max([x["foreign_pct"] for k in ("h1", "h2c", "https-h2") for x in S.get((t, k), [])] or [0])
            lines.append(f"| {t} | {fmt(g('h1', 'rps'))} | {fmt(g('h1', 'p50'))} | {fmt(g('h1', 'p99'))} | "
                         f"{fmt(g('h1', 'cpu_us_req'), 2) if t != 'direct' else '–'} | {fmt(g('h1', 'backend_us_req'), 2)} | "
                         f"{fmt(g('h1-fixed', 'p99'))} | {fmt(g('h2c', 'rps'))} | {fmt(g('h2c', 'cpu_us_req'), 2)} | "
                         f"{fmt(g('https-h2', 'rps'))} | {fmt(g('https-h2', 'cpu_us_req'), 2)} | {errs} | {fr:.1f} |")
        lines.append("")
    tls_kinds = [k for k in ("tls-new-tls1_3", "tls-reuse-tls1_3", "tls-reuse-tls1_2") if any(x[1] == k for x in M)]
    if tls_kinds:
        lines += ["TLS handshakes (a new connection per request: `openssl s_time -new|-reuse -www '/ HTTP/1.0<CRLF>Host: bench.example…'` (one proxied HTTP/1.0 GET each), "
                  f"{A.tls_clients} clients in parallel, {A.tls_seconds} s, ECDSA P-256 certificate, X25519):", "",
                  "| target | " + " | ".join(f"{k[4:]} conn/s | {k[4:]} proxy CPU µs/conn" for k in tls_kinds) + " |",
                  "|---|" + "---:|---:|" * len(tls_kinds)]
        for t in (t for t in PROXIES if in_phase(t, "tls")):
            lines.append(f"| {t} | " + " | ".join(f"{fmt(M.get((t, k), {}).get('rps'))} | {fmt(M.get((t, k), {}).get('cpu_us_req'), 1)}"
                                                for k in tls_kinds) + " |")
        lines.append("")
        res = []
        for t in (t for t in PROXIES if in_phase(t, "tls")):
            for k in tls_kinds:
                if "reuse" in k:
                    rr = S.get((t, k), [])
                    frac = sum((x.get("extra") or {}).get("reused", 0) for x in rr) / max(sum(x["n"] for x in rr), 1)
                    res.append(f"{t} {k[4:]} {100 * frac:.0f} %")
        lines += ["Connections actually resumed in the -reuse runs: " + ", ".join(res) + ".", ""]
    prof = {(r["target"], r["kind"]): r for r in RESULTS if r["kind"] in ("callgrind", "strace")}
    if prof:
        lines += ["| target | instructions/req (callgrind, difference) | instructions/req (N2 window / N2) | syscalls/req (strace -c -f, difference) | main syscalls per request |",
                  "|---|---:|---:|---:|---|"]
        for t in PROXIES:
            c, s = prof.get((t, "callgrind"), {}), prof.get((t, "strace"), {})
            by = ", ".join(f"{k} {v:.2f}" for k, v in list((s.get("by_call") or {}).items())[:8])
            lines.append(f"| {t} | {fmt(c.get('ir_per_req'))} | {fmt(c.get('ir_per_req_n2'))} | {fmt(s.get('syscalls_per_req'), 2)} | {by} |")
        lines.append("")
        lines.append(f"callgrind: h2load --h1 -c16 keep-alive, windows of {A.profile_requests[0]} and {A.profile_requests[1]} "
                     f"requests after 500 warm-up requests; strace: windows of {A.strace_requests[0]} and {A.strace_requests[1]}; "
                     "nginx with master_process off (one process), HAProxy and Portcullis as in the load phases.")
        lines.append("")
    # ratios
    def ratio(t, ref, kind, f):
        a, b = M.get((t, kind), {}).get(f), M.get((ref, kind), {}).get(f)
        return f"{a / b:.2f}" if a and b and a == a and b == b else "–"

    def pratio(t, ref, kind, f):
        a, b = prof.get((t, kind), {}).get(f), prof.get((ref, kind), {}).get(f)
        return f"{a / b:.2f}" if a and b else "–"
    lines += ["| ratio | h1 rps | h1 p99 | h1 CPU/req | h2c rps | h2c CPU/req | HTTPS/h2 rps | HTTPS/h2 CPU/req | "
              "TLS full conn/s | TLS full CPU/conn | TLS 1.3 resumed conn/s | instructions/req | syscalls/req |",
              "|---|" + "---:|" * 12]
    pairs = [("portcullis", "nginx"), ("portcullis", "haproxy"), ("portcullis-log", "nginx"),
             ("portcullis-log", "portcullis")]
    for t, ref in pairs:
        if t not in PROXIES or ref not in PROXIES:
            continue
        lines.append(f"| {t}/{ref} | {ratio(t, ref, 'h1', 'rps')} | {ratio(t, ref, 'h1', 'p99')} | "
                     f"{ratio(t, ref, 'h1', 'cpu_us_req')} | {ratio(t, ref, 'h2c', 'rps')} | "
                     f"{ratio(t, ref, 'h2c', 'cpu_us_req')} | {ratio(t, ref, 'https-h2', 'rps')} | "
                     f"{ratio(t, ref, 'https-h2', 'cpu_us_req')} | {ratio(t, ref, 'tls-new-tls1_3', 'rps')} | "
                     f"{ratio(t, ref, 'tls-new-tls1_3', 'cpu_us_req')} | {ratio(t, ref, 'tls-reuse-tls1_3', 'rps')} | "
                     f"{pratio(t, ref, 'callgrind', 'ir_per_req')} | {pratio(t, ref, 'strace', 'syscalls_per_req')} |")
    lines += ["", "rps ratios > 1 are better; latency, CPU, instruction and syscall ratios < 1 are better."]
    if "h1" in A.phases and not shutil.which("oha"):
        lines.append("p99 at a fixed 50 % load: not measured (no open-loop load generator: oha or wrk2 not on PATH).")
    text = "\n".join(lines) + "\n"
    write(os.path.join(OUT, "summary.md"), text)
    return text


def main():
    t0 = time.time()
    ver = versions()
    if "portcullis" in PROXIES and not os.access(A.bin, os.X_OK):
        raise SystemExit(f"no portcullis binary at {A.bin} (cargo build --release -p portcullis, or --bin)")
    for n in PROXIES:
        for port in PORTS[n]:
            r = subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True)
            if r.returncode == 0:
                raise SystemExit(f"port {port} is in use; pick --base-port")
    backend = start("backend", ["nginx", "-p", RUN + "/", "-c", os.path.join(CONF, "backend.conf"), "-g", "daemon off;"],
                    cpus=A.sut_cpus)
    wait_ok(f"http://127.0.0.1:{B}/", proc=backend)
    try:
        if any(p in A.phases for p in ("h1", "h2", "tls")):
            load_phases(backend)
        if "callgrind" in A.phases:
            callgrind_phase()
        if "strace" in A.phases:
            strace_phase()
    finally:
        cleanup()
    text = report(ver, t0)
    print(text)
    print(f"raw: {OUT}/results.jsonl  logs: {RUN}/logs  profiles: {RUN}/profile")


main()
