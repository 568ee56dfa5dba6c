"""A Kubernetes API server just real enough for `helm template --dry-run=server`.

Helm's `lookup` only reads the cluster on a server-side dry run (or a real
install). This serves discovery for the kinds the chart renders, answers GET
of the Secrets it is given (404 for anything else, so Helm sees no conflicting
objects) and records every request, so a test can render the chart "against a
cluster" that already holds the release's Secrets, as `helm upgrade` does.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# group/version -> (resource, kind) of every kind the chart renders.
RESOURCES = {
    "v1": [("services", "Service"), ("secrets", "Secret"), ("serviceaccounts", "ServiceAccount")],
    "apps/v1": [("statefulsets", "StatefulSet"), ("deployments", "Deployment")],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy"), ("ingresses", "Ingress")],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler")],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor")],
}


class FakeApiServer:
    """`secrets` maps (namespace, name) to a Secret's `data` (base64 values)."""

    def __init__(self, secrets, release, kube_version="1.35.0"):
        self.secrets = secrets
        self.release = release
        self.kube_version = kube_version
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.requests.append(("GET", self.path))
                code, body = server.answer(self.path.split("?")[0])
                self.reply(code, body)

            def refuse(self):
                # A dry run must never try to change the cluster.
                server.requests.append((self.command, self.path))
                self.reply(405, status(405, "MethodNotAllowed"))

            do_POST = do_PUT = do_PATCH = do_DELETE = refuse

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, path):
        major, minor, _ = self.kube_version.split(".")
        if path == "/version":
            return 200, {"major": major, "minor": minor, "gitVersion": "v" + self.kube_version}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups = []
            for gv in RESOURCES:
                if "/" in gv:
                    group, version = gv.split("/")
                    ref = {"groupVersion": gv, "version": version}
                    groups.append({"name": group, "versions": [ref], "preferredVersion": ref})
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        gv = path[len("/api/"):] if path.startswith("/api/") else path[len("/apis/"):]
        if gv in RESOURCES:
            resources = [
                {"name": r, "singularName": k.lower(), "namespaced": True, "kind": k,
                 "verbs": ["get", "list", "create", "update", "patch", "delete"]}
                for r, k in RESOURCES[gv]
            ]
            return 200, {"kind": "APIResourceList", "groupVersion": gv, "resources": resources}
        parts = path.strip("/").split("/")
        # /api/v1/namespaces/NS/secrets/NAME
        if len(parts) == 6 and parts[:2] == ["api", "v1"] and parts[2] == "namespaces" and parts[4] == "secrets":
            key = (parts[3], parts[5])
            if key in self.secrets:
                return 200, self.secret(*key)
        return 404, status(404, "NotFound")

    def secret(self, namespace, name):
        # Marked as the release's own, as a previous `helm install` leaves it.
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    "meta.helm.sh/release-name": self.release,
                    "meta.helm.sh/release-namespace": namespace,
                },
            },
            "type": "Opaque",
            "data": self.secrets[(namespace, name)],
        }


def status(code, reason):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}
