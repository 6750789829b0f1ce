#!/usr/bin/env python3
"""The Gateway API conformance cases for HTTPRoute, run through `meshloop explain`.

    dev/conformance.py [--meshloop BIN] [--module DIR] [--json] [--verbose] [--min-agree N]

The `httproute-*` tests of sigs.k8s.io/gateway-api/conformance (the release pinned in
dev/localcluster) pair manifests (tests/<name>.yaml, on top of base/manifests.yaml) with
expected answers in Go (`http.ExpectedResponse`: a request's Host, path, method and headers,
and the backend, status code or redirect it must get). This script reads both, and for each
case runs `meshloop explain -o json` offline against the Gateway the test sends it to, then
compares:
- a backend: the destination with the largest share must be `<backend>.<namespace>`;
- a status code: explain's outcome must give it (404 no route, 500 invalid backends, ...);
- a redirect: status, scheme, host, port and path of the Location.
Expectations on what the backend receives (rewritten paths, added headers) are outside what
explain answers and are not compared; the case still counts on its backend.

The Gateway a case goes to is known from the Go code (`gwAddr := ...NewGatewayRef(gwNN)`,
then the `MakeRequest...(..., gwAddr, tc)` that sends the case). The script gives explain
what istiod creates for that Gateway: the Service `<name>-istio` selecting the Pods labelled
`gateway.networking.k8s.io/gateway-name: <name>`, a Deployment with that label, and the
config `ingress:` pointing at that Service, so only that Gateway's listeners apply, as for a
real request to its address. Exit 0; with --min-agree N, exit 1 when fewer cases agree.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFRA = "gateway-conformance-infra"
CONSTS = {
    "confsuite.InfrastructureNamespace": INFRA,
    "confsuite.InfraBackendServiceNameV1": "infra-backend-v1",
    "confsuite.InfraBackendServiceNameV2": "infra-backend-v2",
    "confsuite.InfraBackendServiceNameV3": "infra-backend-v3",
    "confsuite.AppBackendNamespace": "gateway-conformance-app-backend",
    "confsuite.WebBackendNamespace": "gateway-conformance-web-backend",
}


def module_dir():
    pin = re.search(r"^GATEWAY_API_VERSION=(\S+)", open(os.path.join(ROOT, "dev/localcluster")).read(), re.M)
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"sigs.k8s.io/gateway-api/conformance@{pin.group(1)}"],
        cwd=os.path.join(ROOT, "dev/gomod/etcd"), capture_output=True, text=True, check=True,
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
    )
    return json.loads(out.stdout)["Dir"]


def block(text, start):
    """The text of the brace block opening at or after `start`."""
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j], j + 1
    raise ValueError("unbalanced braces")


# A value computed at run time (a loop variable, a concatenation): the case is not static.
DYNAMIC = object()


def value(expr, env):
    expr = expr.strip().rstrip(",")
    if expr.startswith('"'):
        return json.loads(expr)
    for prefix in ("confsuite.", "suite."):
        if expr.startswith(prefix) and "confsuite." + expr[len(prefix):] in CONSTS:
            return CONSTS["confsuite." + expr[len(prefix):]]
    if expr in env:
        return env[expr]
    if re.fullmatch(r"\d+", expr):
        return int(expr)
    return DYNAMIC


def field(body, name, env):
    m = re.search(rf'(?<![\w.]){name}:\s*("(?:[^"\\]|\\.)*"|[\w.]+)(\s*\+)?', body)
    if not m:
        return None
    return DYNAMIC if m.group(2) else value(m.group(1), env)


def parse_case(body, env):
    req_at = re.search(r"Request:\s*http\.Request\s*{", body)
    req, _ = block(body, req_at.start()) if req_at else ("", 0)
    headers = {}
    h = re.search(r"Headers:\s*map\[string\]string\s*{", req)
    if h:
        hb, _ = block(req, h.start())
        headers = {k: v for k, v in re.findall(r'"([^"]+)":\s*"([^"]*)"', hb)}
    case = {
        "host": field(req, "Host", env) or "",
        "path": field(req, "Path", env) or "/",
        "method": field(req, "Method", env) or "GET",
        "headers": headers,
        "backend": field(body, "Backend", env),
        "namespace": field(body, "Namespace", env),
        "status": None,
        "redirect": None,
    }
    resp = re.search(r"Response:\s*http\.Response\s*{", body)
    if resp:
        rb, _ = block(body, resp.start())
        case["status"] = field(rb, "StatusCode", env)
    rr = re.search(r"RedirectRequest:\s*&roundtripper\.RedirectRequest\s*{", body)
    if rr:
        rb, _ = block(body, rr.start())
        case["redirect"] = {k: field(rb, k, env) for k in ("Scheme", "Host", "Port", "Path")}
    return case


def parse_test(go):
    """(case, gateway name) for every expectation of one test file."""
    env = {k: v for k, v in re.findall(r'(\w+)\s*:?=\s*("[^"\n]*")', go)}
    env = {k: json.loads(v) for k, v in env.items()}
    env["ns"] = INFRA
    gw_now, addr_gw, out = None, {}, []
    events = []
    for m in re.finditer(r'(\w+)\s*:?=\s*types\.NamespacedName{Name:\s*"([^"]+)"', go):
        if "gw" in m.group(1).lower():
            events.append((m.start(), "gw", m.group(2)))
    for m in re.finditer(r"(\w+)\s*:?=\s*kubernetes\.GatewayAndHTTPRoutesMustBeAccepted\(", go):
        events.append((m.start(), "addr", m.group(1)))
    for m in re.finditer(r"MakeRequestAndExpectEventuallyConsistentResponse\([^)]*?,\s*(\w+),\s*\w+\)", go):
        events.append((m.start(), "send", m.group(1)))
    for m in re.finditer(r"http\.ExpectedResponse\s*{", go):
        events.append((m.start(), "case", m.start()))
    pending = []
    for _, kind, v in sorted(events, key=lambda e: e[0]):
        if kind == "gw":
            gw_now = v
        elif kind == "addr":
            addr_gw[v] = gw_now
        elif kind == "case":
            body, _ = block(go, v)
            # A literal passed straight to a MakeRequest call goes to that call's address.
            inline = re.search(r"MakeRequestAndExpectEventuallyConsistentResponse\([^;]*?,\s*(\w+),\s*$", go[max(0, v - 300):v])
            if inline:
                out.append((parse_case(body, env), addr_gw.get(inline.group(1), gw_now)))
            else:
                pending.append(parse_case(body, env))
        elif kind == "send":
            for c in pending:
                out.append((c, addr_gw.get(v, gw_now)))
            pending = []
    out.extend((c, gw_now) for c in pending)
    return out


def cases_of(go):
    # Rewrite list elements into `http.ExpectedResponse{...}` literals so one parser serves.
    out, i = [], 0
    for m in re.finditer(r"\[\]http\.ExpectedResponse\s*{", go):
        body, end = block(go, m.start())
        out.append(go[i:m.start()])
        elems, j = [], 0
        while True:
            k = body.find("{", j)
            if k < 0:
                break
            inner, j = block(body, k)
            elems.append("http.ExpectedResponse{" + inner + "}")
        out.append("\n".join(elems))
        i = end
    out.append(go[i:])
    return "".join(out)


def gateway_files(gw, listeners_port):
    svc = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{gw}-istio", "namespace": INFRA},
        "spec": {"selector": {"gateway.networking.k8s.io/gateway-name": gw},
                 "ports": [{"name": "http", "port": listeners_port}]},
    }
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{gw}-istio", "namespace": INFRA},
        "spec": {"template": {"metadata": {"labels": {"gateway.networking.k8s.io/gateway-name": gw}},
                              "spec": {"containers": [{"name": "istio-proxy", "image": "proxyv2"}]}}},
    }
    return json.dumps(svc) + "\n---\n" + json.dumps(dep) + "\n"


def listener_ports(texts, gw):
    for t in texts:
        m = re.search(rf"kind: Gateway\s*\nmetadata:\s*\n\s+name: {re.escape(gw)}\s*\n(.*?)(?:\n---|\Z)", t, re.S)
        if m:
            return [int(p) for p in re.findall(r"port:\s*(\d+)", m.group(1))]
    return []


def listener_port(texts, gw):
    return (listener_ports(texts, gw) or [80])[0]


def explain(meshloop, workdir, case, port):
    args = [meshloop, "explain", "--offline", "-o", "json", "--config", os.path.join(workdir, "meshloop.yaml"),
            "--host", case["host"] or "example.com", "--path", case["path"], "--method", case["method"],
            "--port", str(port)]
    for k, v in case["headers"].items():
        args += ["--header", f"{k}={v}"]
    args.append(os.path.join(workdir, "manifests"))
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        return None, r.stderr.strip()
    return json.loads(r.stdout), None


def judge(case, ex, port):
    """None when explain agrees, else why not."""
    # `detail` is the outcome with its reason; `outcome` is the oracle's one-word decision.
    outcome = ex["detail"]
    result = outcome["result"]
    status = {"no_route": 404, "no_healthy_upstream": 503, "no_listener": None}.get(result)
    if result in ("redirect", "direct_response"):
        status = outcome["status"]
    if case["redirect"]:
        want_status = case["status"] or 302
        if result != "redirect" or outcome["status"] != want_status:
            return f"expected redirect {want_status}, got {result} {status}"
        loc = re.match(r"(\w+)://([^/:]+)(?::(\d+))?(.*)", outcome["location"])
        r = case["redirect"]
        want = {"Scheme": r["Scheme"] or "http", "Host": r["Host"] or case["host"], "Port": r["Port"], "Path": r["Path"]}
        got = {"Scheme": loc.group(1), "Host": loc.group(2), "Port": loc.group(3), "Path": loc.group(4)}
        for k in ("Scheme", "Host", "Path"):
            if want[k] and want[k] != got[k]:
                return f"redirect {k}: expected {want[k]}, got {got[k]}"
        if want["Port"] and str(want["Port"]) != (got["Port"] or ""):
            return f"redirect port: expected {want['Port']}, got {got['Port']}"
        if not want["Port"] and got["Port"] not in (None, "80", "443"):
            return f"redirect port: expected none, got {got['Port']}"
        return None
    want_status = case["status"] or 200
    if want_status != 200:
        return None if status == want_status else f"expected {want_status}, got {result} {status or ''}".strip()
    if result != "routed":
        return f"expected {case['backend']}, got {result}: {outcome.get('reason', '')}"
    if not case["backend"]:
        return None
    dests = sorted(ex["destinations"], key=lambda d: -d["weight"])
    want = f"{case['backend']}.{case['namespace'] or INFRA}."
    got = dests[0]["host"] if dests else ""
    return None if got.startswith(want) or got == want[:-1] else f"expected {want[:-1]}, got {got}"


def run_test(meshloop, mod, name, verbose):
    go = open(os.path.join(mod, "tests", name + ".go")).read()
    base = open(os.path.join(mod, "base", "manifests.yaml")).read().replace("{GATEWAY_CLASS_NAME}", "istio")
    ypath = os.path.join(mod, "tests", name + ".yaml")
    own = open(ypath).read().replace("{GATEWAY_CLASS_NAME}", "istio") if os.path.exists(ypath) else ""
    results = []
    for case, gw in parse_test(cases_of(go)):
        gw = gw or "same-namespace"
        dynamic = [k for k, v in case.items() if v is DYNAMIC]
        if dynamic:
            results.append({"test": name, "gateway": gw, "skipped": f"{', '.join(dynamic)} computed at run time"})
            continue
        port = listener_port([own, base], gw)
        # A test that dials the port of its Host header (listener port matching) says so by
        # naming a port one of the Gateway's listeners has; otherwise the port in Host is
        # only text the gateway must ignore (hostname intersection).
        host_port = re.fullmatch(r"(.*):(\d+)", case["host"])
        if host_port and int(host_port.group(2)) in listener_ports([own, base], gw):
            port = int(host_port.group(2))
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "manifests"))
            for fname, text in (("base.yaml", base), ("test.yaml", own), ("gateway.yaml", gateway_files(gw, port))):
                open(os.path.join(d, "manifests", fname), "w").write(text)
            open(os.path.join(d, "meshloop.yaml"), "w").write(
                f"instance: conformance\nnamespace: {INFRA}\ningress:\n  namespace: {INFRA}\n  service: {gw}-istio\n  port: http\n")
            ex, err = explain(meshloop, d, case, port)
        why = err if ex is None else judge(case, ex, port)
        results.append({"test": name, "gateway": gw, "case": case, "agree": why is None, "why": why})
        if verbose and why:
            print(f"  {name}: {case['host']}{case['path']} {case['headers'] or ''}: {why}", file=sys.stderr)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--meshloop", default=os.path.join(ROOT, "target/debug/meshloop"))
    ap.add_argument("--module")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--min-agree", type=int, default=0)
    a = ap.parse_args()
    mod = a.module or module_dir()
    names = sorted(f[:-3] for f in os.listdir(os.path.join(mod, "tests")) if f.startswith("httproute-") and f.endswith(".go"))
    results = []
    for n in names:
        results.extend(run_test(a.meshloop, mod, n, a.verbose))
    skipped = [r for r in results if "skipped" in r]
    results = [r for r in results if "skipped" not in r]
    agree = sum(r["agree"] for r in results)
    if a.json:
        json.dump(results, sys.stdout, indent=1)
    else:
        by_test = {}
        for r in results:
            t = by_test.setdefault(r["test"], [0, 0, []])
            t[0] += r["agree"]
            t[1] += 1
            if not r["agree"]:
                t[2].append(r["why"])
        for t, (ok, n, whys) in by_test.items():
            print(f"{ok:3}/{n:<3} {t}" + (f"  ({whys[0]})" if whys else ""))
        for r in skipped:
            print(f"  skip    {r['test']}: {r['skipped']}")
        print(f"conformance: {agree} of {len(results)} cases agree ({len(by_test)} tests with expectations, {len(names)} httproute tests; {len(skipped)} cases not static, skipped)")
    sys.exit(1 if agree < a.min_agree else 0)


if __name__ == "__main__":
    main()
