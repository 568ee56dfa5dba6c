"""Runs the pods of a rendered chart as local processes of the real binary.

Each pod's container args and env are taken from the rendered manifests, not
from a copy, and only what cannot hold off-cluster is rewritten:

- `--http-bind` / `--grpc-bind` 0.0.0.0:PORT -> 127.0.0.1:<ephemeral port>; PORT
  must be one of the container's ports, whose name the probes and Services use;
- `--ingesters=dns:NAME:PORT` -> what that name would resolve to: NAME must be a
  rendered headless Service, and the answer is the local address of the
  target port of every pod it selects (PORT must be that container port, since
  a headless name resolves to pod addresses);
- `--s3-endpoint` -> a local S3 server;
- a path under a volume mount -> a local directory standing for the volume
  (emptyDir and PVC: an empty directory; Secret volumes: the rendered Secret's
  keys written as files). Any other absolute path fails: the root filesystem is
  read-only in the pod;
- env `valueFrom`: `fieldRef` metadata.name/namespace -> the pod's; secretKeyRef
  -> the rendered Secret, or a value the test gives for a Secret the user owns.

A pod given `--tls-cert` serves HTTPS on its http port: its probes are then
sent as the kubelet sends them (scheme from the probe, certificate unchecked).
"""

import base64
import http.client
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


class Rendered:
    """The documents `helm template` printed."""

    def __init__(self, docs, namespace, cluster_domain="cluster.local"):
        self.docs = [d for d in docs if d]
        self.namespace = namespace
        self.cluster_domain = cluster_domain

    def all(self, kind):
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind, name):
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def secret_value(self, name, key):
        """Decoded value of a rendered Secret's key, or None if not rendered."""
        for s in self.all("Secret"):
            if s["metadata"]["name"] == name:
                assert key in s.get("data", {}), f"Secret {name} has no key {key}"
                return base64.b64decode(s["data"][key]).decode()
        return None


class Pod:
    def __init__(self, name, workload, replica):
        self.name = name
        self.workload = workload
        self.replica = replica
        self.spec = workload["spec"]["template"]["spec"]
        self.labels = workload["spec"]["template"]["metadata"]["labels"]
        containers = self.spec["containers"]
        assert len(containers) == 1, f"{name}: one container expected"
        self.container = containers[0]
        self.component = self.labels.get("app.kubernetes.io/component")
        self.process = None
        self.ports = {}  # container port name -> local port
        self.dirs = {}  # mountPath -> local directory
        self.log = None
        self.scheme = "http"  # of the http port: https once --tls-cert is given


def pods(rendered):
    """The pods the StatefulSets and Deployments would create (Deployments at
    their replicas, or their HPA's minReplicas when the HPA owns replicas)."""
    out = []
    hpa_min = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
        for h in rendered.all("HorizontalPodAutoscaler")
    }
    for w in rendered.all("StatefulSet"):
        for i in range(w["spec"].get("replicas", 1)):
            out.append(Pod(f"{w['metadata']['name']}-{i}", w, i))
    for w in rendered.all("Deployment"):
        name = w["metadata"]["name"]
        n = w["spec"]["replicas"] if "replicas" in w["spec"] else hpa_min[name]
        for i in range(n):
            out.append(Pod(f"{name}-7d9f8c6b5-{i:05d}", w, i))
    return out


def selects(selector, labels):
    """Whether a LabelSelector (or a Service's plain selector map) selects labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        op, key, values = e["operator"], e["key"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def container_port(container, ref):
    """The containerPort named or numbered `ref`."""
    for p in container.get("ports", []):
        if p.get("name") == ref or p["containerPort"] == ref:
            return p
    raise AssertionError(f"container has no port {ref!r}")


class LocalRun:
    """Starts and stops pods of `rendered` as processes of `binary`."""

    def __init__(self, rendered, binary, workdir, s3_endpoint=None, user_secrets=None):
        self.r = rendered
        self.binary = binary
        self.workdir = Path(workdir)
        self.s3_endpoint = s3_endpoint
        self.user_secrets = user_secrets or {}
        self.pods = pods(rendered)
        self.claims = {}  # (pod, claim) -> directory: a PVC outlives its pod

    def component(self, name):
        return [p for p in self.pods if p.component == name]

    # --- volumes -------------------------------------------------------------

    def _volume_dir(self, pod, mount):
        name = mount["name"]
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in pod.workload["spec"].get("volumeClaimTemplates", [])}
        d = Path(tempfile.mkdtemp(prefix=f"{pod.name}-{name}-", dir=self.workdir))
        if name in claims or "persistentVolumeClaim" in volumes.get(name, {}):
            key = (pod.name, name)
            if key not in self.claims:
                self.claims[key] = d
            return self.claims[key], True
        volume = volumes.get(name)
        assert volume is not None, f"{pod.name}: volumeMount {name} has no volume"
        if "emptyDir" in volume:
            return d, True
        sources = []
        if "secret" in volume:
            sources = [{"secret": {**volume["secret"], "name": volume["secret"]["secretName"]}}]
        elif "projected" in volume:
            sources = volume["projected"]["sources"]
        else:
            raise AssertionError(f"{pod.name}: volume {name}: kind not emulated: {sorted(volume)}")
        for src in sources:
            assert list(src) == ["secret"], f"{pod.name}: projected source {sorted(src)} not emulated"
            secret = src["secret"]
            for item in secret["items"]:
                value = self.secret(secret["name"], item["key"])
                path = d / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(value)
                path.chmod(0o440)
        return d, not mount.get("readOnly", False)

    def secret(self, name, key):
        value = self.r.secret_value(name, key)
        if value is None:
            value = self.user_secrets.get((name, key))
        assert value is not None, f"Secret {name} (key {key}) is neither rendered nor given by the test"
        return value

    def _local_path(self, pod, mounts, flag, value):
        best = None
        for mount_path, (local, writable) in mounts.items():
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                if best is None or len(mount_path) > len(best[0]):
                    best = (mount_path, local, writable)
        assert best, f"{pod.name}: {flag}={value} is on no volume (the root filesystem is read-only)"
        mount_path, local, writable = best
        if flag == "--data-dir":
            assert writable, f"{pod.name}: --data-dir {value} is on a read-only volume"
        return str(local / os.path.relpath(value, mount_path))

    # --- the command line ----------------------------------------------------

    def resolve_ingesters(self, pod, value):
        """`dns:NAME:PORT` -> the local addresses NAME would resolve to."""
        assert value.startswith("dns:"), f"{pod.name}: --ingesters={value} is not a dns: name"
        name, port = value[len("dns:"):].rsplit(":", 1)
        port = int(port)
        suffix = f".{self.r.namespace}.svc.{self.r.cluster_domain}"
        assert name.endswith(suffix), f"{pod.name}: {name} is not a Service of namespace {self.r.namespace}"
        svc = self.r.one("Service", name[: -len(suffix)])
        assert svc["spec"].get("clusterIP") == "None", f"Service {name} is not headless"
        targets = [p for p in self.pods if selects(svc["spec"]["selector"], p.labels)]
        assert targets, f"Service {name} selects no pod"
        sp = [p for p in svc["spec"]["ports"] if p["port"] == port]
        assert sp, f"Service {name} has no port {port}"
        addrs = []
        for t in targets:
            cp = container_port(t.container, sp[0].get("targetPort", port))
            # A headless name resolves to pod addresses: PORT is dialled on the pod.
            assert cp["containerPort"] == port, f"{name}:{port} reaches pod port {cp['containerPort']}"
            assert t.process and t.process.poll() is None, f"{t.name} is not running"
            addrs.append(f"127.0.0.1:{t.ports[cp['name']]}")
        return ",".join(addrs)

    def command(self, pod):
        c = pod.container
        assert "command" not in c, f"{pod.name}: the image's ENTRYPOINT is the binary; no command expected"
        mounts = {}
        for m in c.get("volumeMounts", []):
            mounts[m["mountPath"]] = self._volume_dir(pod, m)
        pod.dirs = {k: v[0] for k, v in mounts.items()}
        args = []
        for a in c["args"]:
            if not a.startswith("--"):
                args.append(a)
                continue
            flag, eq, value = a.partition("=")
            assert eq, f"{pod.name}: {a}: flags are rendered as --flag=value"
            if flag in ("--http-bind", "--grpc-bind"):
                host, port = value.rsplit(":", 1)
                assert host == "0.0.0.0", f"{pod.name}: {a}: pods listen on every address"
                cp = container_port(c, int(port))
                assert "name" in cp, f"{pod.name}: container port {port} has no name"
                pod.ports[cp["name"]] = free_port()
                value = f"127.0.0.1:{pod.ports[cp['name']]}"
            elif flag == "--ingesters":
                value = self.resolve_ingesters(pod, value)
            elif flag == "--tls-cert":
                pod.scheme = "https"
                value = self._local_path(pod, mounts, flag, value)
            elif flag == "--s3-endpoint":
                assert self.s3_endpoint, "the chart set an S3 endpoint; the test gave none"
                value = self.s3_endpoint
            elif value.startswith("/"):
                value = self._local_path(pod, mounts, flag, value)
            args.append(f"{flag}={value}")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if "/tmp" in pod.dirs:
            env["TMPDIR"] = str(pod.dirs["/tmp"])
        assert "envFrom" not in c, f"{pod.name}: envFrom not emulated"
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            ref = e["valueFrom"]
            if "fieldRef" in ref:
                field = ref["fieldRef"]["fieldPath"]
                known = {"metadata.name": pod.name, "metadata.namespace": self.r.namespace}
                assert field in known, f"{pod.name}: env {e['name']}: fieldRef {field} not emulated"
                env[e["name"]] = known[field]
            elif "secretKeyRef" in ref:
                env[e["name"]] = self.secret(ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            else:
                raise AssertionError(f"{pod.name}: env {e['name']}: {sorted(ref)} not emulated")
        return [str(self.binary)] + args, env

    # --- processes -----------------------------------------------------------

    def start(self, pod):
        argv, env = self.command(pod)
        cwd = Path(tempfile.mkdtemp(prefix=f"{pod.name}-cwd-", dir=self.workdir))
        pod.log = self.workdir / f"{pod.name}.log"
        pod.argv = argv
        with open(pod.log, "ab") as log:
            pod.process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        return pod

    def url(self, pod, port="http"):
        scheme = pod.scheme if port == "http" else "http"
        return f"{scheme}://127.0.0.1:{pod.ports[port]}"

    def probe(self, pod, kind):
        """GET a rendered httpGet probe, as the kubelet does: HTTP or HTTPS by
        its scheme, a certificate not checked; its HTTP status (None: no
        answer, as when the scheme is not what the port serves)."""
        get = pod.container[kind]["httpGet"]
        port = container_port(pod.container, get["port"])
        scheme = get.get("scheme", "HTTP")
        assert scheme in ("HTTP", "HTTPS"), f"{pod.name}: {kind} scheme {scheme}"
        url = f"{scheme.lower()}://127.0.0.1:{pod.ports[port['name']]}{get['path']}"
        context = None
        if scheme == "HTTPS":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, timeout=3, context=context) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, http.client.HTTPException):
            return None

    def wait_ready(self, pod, timeout=90):
        """Until the rendered readiness probe answers 200 (as the kubelet waits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pod.process.poll() is not None:
                raise AssertionError(f"{pod.name} exited with {pod.process.returncode}:\n{self.tail(pod)}")
            if self.probe(pod, "readinessProbe") == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"{pod.name} not ready after {timeout}s:\n{self.tail(pod)}")

    def stop(self, pod):
        """SIGTERM, as the kubelet sends; the exit code, or None if the pod's
        terminationGracePeriodSeconds ran out (it is then killed)."""
        grace = pod.spec.get("terminationGracePeriodSeconds", 30)
        pod.process.send_signal(signal.SIGTERM)
        try:
            return pod.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pod.process.kill()
            pod.process.wait()
            return None

    def tail(self, pod, lines=30):
        if not pod.log or not pod.log.exists():
            return ""
        text = pod.log.read_text(errors="replace").splitlines()
        return "\n".join(f"  {pod.name}| {line}" for line in text[-lines:])

    def kill_all(self):
        for p in self.pods:
            if p.process and p.process.poll() is None:
                p.process.kill()
                p.process.wait()
