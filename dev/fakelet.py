#!/usr/bin/env python3
"""dev/fakelet.py: a fake kubelet for the local control plane (dev/localcluster --workloads).

It runs no containers. It registers one Node and plays that Node's kubelet towards the API
server, so that Deployments, ReplicaSets, the scheduler and the EndpointSlice controller
behave as on a real cluster:

- registers the Node (Ready, with allocatable cpu/memory/pods, InternalIP 127.0.0.1) and keeps
  it Ready: the Ready condition's heartbeat and the Lease in kube-node-lease are renewed every
  10 s;
- watches the Pods bound to the Node and sets their status: phase Running, a pod IP, every
  container running, conditions Ready and ContainersReady;
- finishes the deletion of terminating Pods (DELETE with gracePeriodSeconds=0), as a kubelet
  does once the containers have stopped.

Pod IPs come from a map file (--pod-ips, re-read when it changes), first matching line wins:

    # SELECTOR                 IP           [probe]
    dev/version=v1             10.250.1.2   probe
    */app=other,tier=web       10.250.3.2

SELECTOR is NAMESPACE/KEY=VALUE[,KEY=VALUE...] over the Pod's labels; NAMESPACE may be `*`.
Pods that match no line get the next free address of --cidr (default 10.244.0.0/24, outside
the local cluster's service range 10.96.0.0/16). hostNetwork Pods get the Node's address.

Readiness: a Pod is Ready at once, unless its line in the map file says `probe`; then its
containers' readinessProbe (httpGet or tcpSocket) is run against the pod IP every
--probe-period seconds (default 1, shorter than a kubelet's periodSeconds so that tests are
quick), honouring successThreshold and failureThreshold. Nothing else is ever contacted: only
map-file addresses marked `probe` (which dev/standin.sh gives to processes it runs in network
namespaces of its own) receive probe traffic, never the --cidr addresses.

The API server's address, CA certificate and token are read from the files dev/localcluster
writes into its directory: DIR/apiserver.port, DIR/pki/apiserver.crt, DIR/token.
Python 3.8+ standard library only.
"""

import argparse
import http.client
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

HEARTBEAT_S = 10
LEASE_S = 40
NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def log(msg):
    print(f"fakelet: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status


class Api:
    """A minimal client for the local API server (bearer token, its own CA)."""

    def __init__(self, d):
        self.dir = d
        with open(os.path.join(d, "token")) as f:
            self.token = f.read().strip()
        self.ctx = ssl.create_default_context(cafile=os.path.join(d, "pki", "apiserver.crt"))

    def _conn(self, timeout):
        # Read the port each time: `dev/localcluster resume` keeps it, but a fresh `start` in
        # the same directory does not.
        with open(os.path.join(self.dir, "apiserver.port")) as f:
            port = int(f.read().strip())
        return http.client.HTTPSConnection("127.0.0.1", port, context=self.ctx, timeout=timeout)

    def request(self, method, path, body=None, ctype="application/json", timeout=15):
        conn = self._conn(timeout)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = ctype
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            if resp.status >= 300:
                raise ApiError(resp.status, raw.decode(errors="replace"))
            return json.loads(raw) if raw else None
        finally:
            conn.close()

    def watch(self, path, params):
        """Yields the events of one watch request until the server ends it."""
        q = dict(params, watch="1", allowWatchBookmarks="true", timeoutSeconds="300")
        conn = self._conn(330)
        try:
            conn.request(
                "GET",
                f"{path}?{urllib.parse.urlencode(q)}",
                headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise ApiError(resp.status, resp.read().decode(errors="replace"))
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


class PodIPs:
    """The map file: first matching line wins; re-read when its mtime changes."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.rules = []

    def _load(self):
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self.rules, self.mtime = [], None
            return
        if mtime == self.mtime:
            return
        rules = []
        with open(self.path) as f:
            for n, line in enumerate(f, 1):
                fields = line.split("#", 1)[0].split()
                if not fields:
                    continue
                try:
                    if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] != "probe"):
                        raise ValueError("want: NAMESPACE/KEY=VALUE[,KEY=VALUE...] IP [probe]")
                    ns, _, sel = fields[0].partition("/")
                    labels = dict(kv.split("=", 1) for kv in sel.split(","))
                    if not ns or not all(labels):
                        raise ValueError("empty namespace or label key")
                    ip = str(ipaddress.ip_address(fields[1]))
                    rules.append((ns, labels, ip, len(fields) == 3))
                except ValueError as e:
                    log(f"{self.path}:{n}: ignored: {e}")
        self.rules, self.mtime = rules, mtime
        log(f"pod IP map {self.path}: {len(rules)} line(s)")

    def lookup(self, pod):
        self._load()
        ns = pod["metadata"]["namespace"]
        labels = pod["metadata"].get("labels") or {}
        for rns, want, ip, probe in self.rules:
            if rns in ("*", ns) and all(labels.get(k) == v for k, v in want.items()):
                return ip, probe
        return None


class Fakelet:
    def __init__(self, args):
        self.api = Api(args.dir)
        self.node = args.node
        self.node_ip = "127.0.0.1"
        self.cidr = ipaddress.ip_network(args.cidr)
        self.map = PodIPs(args.pod_ips)
        self.probe_period = args.probe_period
        self.capacity = {"cpu": args.cpu, "memory": args.memory, "pods": str(args.pods),
                         "ephemeral-storage": "100Gi"}
        self.lock = threading.Lock()
        self.push_lock = threading.Lock()
        # uid -> {"ns", "name", "ip", "probes": [see probes()], "ready": bool,
        #         "ok": consecutive successes, "fail": consecutive failures, "pod": last seen}
        self.pods = {}
        self.wake = threading.Event()

    # --- the Node -------------------------------------------------------------------------
    def node_conditions(self):
        t = now()
        ok = dict(status="False", lastHeartbeatTime=t, lastTransitionTime=t)
        return [
            dict(ok, type="MemoryPressure", reason="KubeletHasSufficientMemory",
                 message="fakelet: no memory pressure"),
            dict(ok, type="DiskPressure", reason="KubeletHasNoDiskPressure",
                 message="fakelet: no disk pressure"),
            dict(ok, type="PIDPressure", reason="KubeletHasSufficientPID",
                 message="fakelet: no PID pressure"),
            dict(type="Ready", status="True", lastHeartbeatTime=t, lastTransitionTime=t,
                 reason="KubeletReady", message="fakelet is posting ready status"),
        ]

    def register(self):
        try:
            version = self.api.request("GET", "/version").get("gitVersion", "v0.0.0")
        except Exception:  # noqa: BLE001 - only cosmetic
            version = "v0.0.0"
        status = {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": self.node_conditions(),
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "fakelet", "systemUUID": "fakelet", "bootID": "fakelet",
                "kernelVersion": os.uname().release, "osImage": "fakelet (no containers)",
                "containerRuntimeVersion": "fakelet://0", "kubeletVersion": version,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        }
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node, "labels": {
                "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "type": "fakelet"}},
            "spec": {},
            "status": status,
        }
        try:
            self.api.request("POST", "/api/v1/nodes", node)
            log(f"registered Node {self.node}")
        except ApiError as e:
            if e.status != 409:
                raise
        # Status sent with a create is not guaranteed to be kept: send it again.
        self.api.request("PATCH", f"/api/v1/nodes/{self.node}/status", {"status": status},
                         ctype="application/merge-patch+json")
        # The TaintNodesByCondition admission plugin gives a new Node the not-ready taint; the
        # node lifecycle controller, which would take it off once the Node is Ready, is not
        # running here, so do its part. Other taints stay.
        node = self.api.request("GET", f"/api/v1/nodes/{self.node}")
        taints = node["spec"].get("taints") or []
        keep = [t for t in taints if t.get("key") not in NOT_READY_TAINTS]
        if len(keep) != len(taints):
            self.api.request("PATCH", f"/api/v1/nodes/{self.node}",
                             {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                              "spec": {"taints": keep or None}},
                             ctype="application/merge-patch+json")

    def heartbeat(self):
        self.api.request("PATCH", f"/api/v1/nodes/{self.node}/status",
                         {"status": {"conditions": self.node_conditions()}},
                         ctype="application/merge-patch+json")
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_S,
                "renewTime": now_micro()}
        try:
            self.api.request("PATCH", path, {"spec": spec}, ctype="application/merge-patch+json")
        except ApiError as e:
            if e.status != 404:
                raise
            self.api.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                             {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                              "metadata": {"name": self.node, "namespace": "kube-node-lease"},
                              "spec": spec})

    def heartbeat_loop(self):
        while True:
            try:
                self.heartbeat()
            except Exception as e:  # noqa: BLE001 - the API server may be paused
                log(f"heartbeat: {e}")
            time.sleep(HEARTBEAT_S)

    # --- Pods -----------------------------------------------------------------------------
    def allocate(self, pod):
        spec = pod["spec"]
        if spec.get("hostNetwork"):
            return self.node_ip, False
        hit = self.map.lookup(pod)
        if hit:
            return hit
        used = {p["ip"] for p in self.pods.values()}
        for ip in self.cidr.hosts():
            s = str(ip)
            if ip == self.cidr.network_address + 1 or s in used:
                continue
            return s, False
        raise RuntimeError(f"no free address left in {self.cidr}")

    @staticmethod
    def probes(pod):
        """The readiness probes that can be run:
        (container, kind, port, path, successThreshold, failureThreshold)."""
        out = []
        for c in pod["spec"].get("containers", []):
            rp = c.get("readinessProbe") or {}
            for kind in ("httpGet", "tcpSocket"):
                if kind not in rp:
                    continue
                port = rp[kind].get("port")
                if isinstance(port, str) and not port.isdigit():
                    port = next((p["containerPort"] for p in c.get("ports", [])
                                 if p.get("name") == port), None)
                if port is not None:
                    out.append((c["name"], kind, int(port), rp[kind].get("path", "/"),
                                rp.get("successThreshold", 1), rp.get("failureThreshold", 3)))
        return out

    def desired_status(self, pod, st):
        old = pod.get("status") or {}
        old_cond = {c["type"]: c for c in old.get("conditions") or []}
        t = now()
        ready = "True" if st["ready"] else "False"

        def cond(ctype, status, reason=None):
            prev = old_cond.get(ctype)
            c = {"type": ctype, "status": status,
                 "lastTransitionTime": prev["lastTransitionTime"]
                 if prev and prev.get("status") == status and prev.get("lastTransitionTime") else t,
                 "lastProbeTime": None}
            if reason:
                c["reason"] = reason
            return c

        started = old.get("startTime") or t
        conditions = [
            cond("PodReadyToStartContainers", "True"),
            cond("Initialized", "True"),
            cond("Ready", ready, None if st["ready"] else "ContainersNotReady"),
            cond("ContainersReady", ready, None if st["ready"] else "ContainersNotReady"),
            cond("PodScheduled", "True"),
        ]
        uid = pod["metadata"]["uid"]
        statuses = [{
            "name": c["name"], "image": c.get("image", ""), "imageID": "",
            "containerID": f"fakelet://{uid}/{c['name']}", "ready": st["ready"],
            "started": True, "restartCount": 0,
            "state": {"running": {"startedAt": started}},
        } for c in pod["spec"].get("containers", [])]
        init = [{
            "name": c["name"], "image": c.get("image", ""), "imageID": "",
            "containerID": f"fakelet://{uid}/{c['name']}", "ready": True, "started": False,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                     "startedAt": started, "finishedAt": started}},
        } for c in pod["spec"].get("initContainers", [])]
        status = {
            "phase": "Running", "hostIP": self.node_ip, "hostIPs": [{"ip": self.node_ip}],
            "podIP": st["ip"], "podIPs": [{"ip": st["ip"]}], "startTime": started,
            "conditions": conditions, "containerStatuses": statuses,
        }
        if init:
            status["initContainerStatuses"] = init
        return status

    @staticmethod
    def up_to_date(pod, st):
        s = pod.get("status") or {}
        cond = {c["type"]: c.get("status") for c in s.get("conditions") or []}
        want = "True" if st["ready"] else "False"
        return (s.get("phase") == "Running" and s.get("podIP") == st["ip"]
                and cond.get("Ready") == want and cond.get("ContainersReady") == want)

    def push_status(self, uid):
        # One status write at a time: the watch and the prober may both find a Pod out of date.
        with self.push_lock:
            self._push_status(uid)

    def _push_status(self, uid):
        with self.lock:
            st = self.pods.get(uid)
            if not st:
                return
            pod = st["pod"]
            if self.up_to_date(pod, st):
                return
            status = self.desired_status(pod, st)
            ns, name = st["ns"], st["name"]
        try:
            updated = self.api.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status",
                                       {"metadata": {"uid": uid}, "status": status},
                                       ctype="application/merge-patch+json")
        except ApiError as e:
            # Gone, or replaced by a Pod of the same name (the uid in the patch differs).
            if e.status in (404, 409, 422):
                return
            raise
        with self.lock:
            if uid in self.pods and updated:
                self.pods[uid]["pod"] = updated
        log(f"pod {ns}/{name}: Running, IP {status['podIP']}, Ready={status['conditions'][2]['status']}")

    def finish_delete(self, pod):
        md = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": md["uid"]}}
        try:
            self.api.request("DELETE", f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}", body)
            log(f"pod {md['namespace']}/{md['name']}: deleted")
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    def handle(self, pod):
        md = pod["metadata"]
        uid = md["uid"]
        if md.get("deletionTimestamp"):
            with self.lock:
                self.pods.pop(uid, None)
            self.finish_delete(pod)
            return
        with self.lock:
            st = self.pods.get(uid)
            if st is None:
                ip = (pod.get("status") or {}).get("podIP")
                probe = False
                if not ip:
                    ip, probe = self.allocate(pod)
                else:
                    hit = self.map.lookup(pod)
                    probe = bool(hit and hit[0] == ip and hit[1])
                probes = self.probes(pod) if probe else []
                st = {"ns": md["namespace"], "name": md["name"], "ip": ip, "probes": probes,
                      "ready": not probes, "ok": 0, "fail": 0, "pod": pod}
                self.pods[uid] = st
                if probes:
                    self.wake.set()
            else:
                st["pod"] = pod
        self.push_status(uid)

    def forget(self, pod):
        with self.lock:
            self.pods.pop(pod["metadata"]["uid"], None)

    def run_probe(self, ip, kind, port, path):
        try:
            if kind == "tcpSocket":
                socket.create_connection((ip, port), timeout=1).close()
                return True
            conn = http.client.HTTPConnection(ip, port, timeout=1)
            try:
                conn.request("GET", path, headers={"User-Agent": "fakelet-probe"})
                return 200 <= conn.getresponse().status < 400
            finally:
                conn.close()
        except OSError:
            return False

    def probe_loop(self):
        while True:
            self.wake.wait(self.probe_period)
            self.wake.clear()
            with self.lock:
                todo = [(uid, st["ip"], list(st["probes"])) for uid, st in self.pods.items()
                        if st["probes"]]
            for uid, ip, probes in todo:
                ok = all(self.run_probe(ip, kind, port, path)
                         for _c, kind, port, path, _s, _f in probes)
                succ = max(p[4] for p in probes)
                fail = max(p[5] for p in probes)
                with self.lock:
                    st = self.pods.get(uid)
                    if not st:
                        continue
                    if ok:
                        st["ok"], st["fail"] = st["ok"] + 1, 0
                        if not st["ready"] and st["ok"] >= succ:
                            st["ready"] = True
                    else:
                        st["ok"], st["fail"] = 0, st["fail"] + 1
                        if st["ready"] and st["fail"] >= fail:
                            st["ready"] = False
                try:
                    self.push_status(uid)
                except Exception as e:  # noqa: BLE001
                    log(f"status of a probed pod: {e}")

    # --- main loop ------------------------------------------------------------------------
    def run(self):
        while True:
            try:
                self.register()
                break
            except Exception as e:  # noqa: BLE001
                log(f"registering Node {self.node}: {e}; retrying")
                time.sleep(1)
        threading.Thread(target=self.heartbeat_loop, daemon=True).start()
        threading.Thread(target=self.probe_loop, daemon=True).start()
        sel = {"fieldSelector": f"spec.nodeName={self.node}"}
        delay = 0.2
        while True:
            try:
                lst = self.api.request("GET", "/api/v1/pods?" + urllib.parse.urlencode(sel))
                rv = lst["metadata"]["resourceVersion"]
                seen = {p["metadata"]["uid"] for p in lst["items"]}
                with self.lock:
                    for uid in [u for u in self.pods if u not in seen]:
                        del self.pods[uid]
                for pod in lst["items"]:
                    self.handle(pod)
                delay = 0.2
                while True:
                    expired = False
                    for ev in self.api.watch("/api/v1/pods", dict(sel, resourceVersion=rv)):
                        typ, obj = ev.get("type"), ev.get("object") or {}
                        if typ == "ERROR":
                            expired = True
                            log(f"watch: {obj.get('message', obj)}; listing again")
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if typ == "BOOKMARK":
                            continue
                        if typ == "DELETED":
                            self.forget(obj)
                        else:
                            self.handle(obj)
                    if expired:
                        break
            except Exception as e:  # noqa: BLE001 - the API server may be paused or restarting
                log(f"pods: {e}; listing again in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="the dev/localcluster directory")
    ap.add_argument("--node", default="local-node")
    ap.add_argument("--pod-ips", help="pod IP map file (default DIR/podips)")
    ap.add_argument("--cidr", default="10.244.0.0/24")
    ap.add_argument("--probe-period", type=float, default=1.0)
    ap.add_argument("--cpu", default="8")
    ap.add_argument("--memory", default="16Gi")
    ap.add_argument("--pods", type=int, default=110)
    args = ap.parse_args()
    args.pod_ips = args.pod_ips or os.path.join(args.dir, "podips")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log(f"node {args.node}, pod IPs from {args.pod_ips} else {args.cidr}")
    try:
        Fakelet(args).run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
