"""Tests of the Helm chart helm/inflow and the Dockerfile that need no cluster.

Run by tests/helm/run.sh (which installs the pinned tools and sets HELM):
helm lint, helm template with default and other values, the values schema,
the Secrets' `lookup` against a fake API server, offline validation of every
rendered manifest, hadolint, and the rendered pods started as local processes
of the real binary, written to and read from.

Closes with one line `chart: N passed, M failed`; exits non-zero on a failure.
`python tests/helm/test_chart.py NAME...` runs the tests whose names contain
one of the NAMEs.
"""

import base64
import copy
import functools
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import http.client as http_client
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_apiserver import FakeApiServer  # noqa: E402
from local_run import LocalRun, Rendered, container_port, free_port, selects  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "inflow"
HELM = os.environ.get("HELM", str(ROOT / "target" / "tools" / "helm"))
BIN_DIR = Path(sys.executable).parent
INFLOW = Path(os.environ.get("INFLOW_BIN", ROOT / "target" / "debug" / "inflow"))
# The Kubernetes the Helm binary was built against, and the chart's minimum
# (Chart.yaml kubeVersion); both are bundled by kubernetes-validate.
KUBE_VERSIONS = ["1.35.0", "1.29.0"]
RELEASE = "demo"
NAMESPACE = "inflow-test"
FULLNAME = "demo-inflow"

# Cluster mode at its smallest valid values.
CLUSTER = {
    "mode": "cluster",
    "objectStore": {"type": "s3", "s3": {"bucket": "inflow-data", "existingSecret": "inflow-s3"}},
}

# Everything away from its default.
NON_DEFAULT = {
    "mode": "cluster",
    "fullnameOverride": "tsdb",
    "clusterDomain": "k8s.internal",
    "image": {"registry": "registry.example.com", "repository": "inflow", "tag": "9.9.9", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "auth": {"adminToken": {"existingSecret": "ops-token", "secretKey": "token"},
             "clusterToken": {"existingSecret": "", "secretKey": "shared"}},
    "objectStore": {"type": "s3", "s3": {
        "bucket": "metrics-prod", "endpoint": "https://s3.storage.example.com", "region": "eu-west-1",
        "existingSecret": "s3-keys", "accessKeyIdKey": "id", "secretAccessKeyKey": "secret"}},
    "server": {"logFormat": "text", "logFilter": "info,inflow=debug", "shutdownTimeout": "45s"},
    "edge": {"maxRequestBytes": 33554432, "maxDecompressedBytes": 67108864, "writeTimeout": "15s"},
    "ingest": {"bufferBytes": 536870912, "snapshotInterval": "1m", "leaseTtl": "20s"},
    "httpPort": 9086,
    "tls": {"existingSecret": "tsdb-serving-cert"},
    "router": {"writeReplicas": 2, "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 7,
                                                   "targetCPUUtilizationPercentage": 60},
               "extraArgs": ["--max-line-bytes=2048"],
               "env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://router-otel:4317"}],
               "envFrom": [{"secretRef": {"name": "router-env"}}],
               "extraVolumes": [{"name": "ca", "configMap": {"name": "ca-bundle"}}],
               "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/extra", "readOnly": True}],
               "updateStrategy": {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}},
               "podLabels": {"tier": "edge"}, "podAntiAffinity": "soft"},
    "ingester": {"replicas": 4, "grpcPort": 9087, "podDisruptionBudget": {"enabled": True, "maxUnavailable": 2},
                 "startupProbe": {"failureThreshold": 720}, "updateStrategy": {"type": "OnDelete"},
                 "podAntiAffinity": "hard", "podAntiAffinityTopologyKey": "topology.kubernetes.io/zone",
                 "nodeSelector": {"disk": "ssd"},
                 "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "tsdb", "effect": "NoSchedule"}],
                 "priorityClassName": "critical", "podAnnotations": {"backup": "none"}},
    "querier": {"replicas": 3, "podDisruptionBudget": {"enabled": False, "maxUnavailable": 1},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["query"]}]}]}}},
                "readinessProbe": {"periodSeconds": 2, "failureThreshold": 5},
                "extraArgs": ["--query-timeout=1m"]},
    "service": {"grpcPort": 9082},
    "extraEnv": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel:4317"}],
    "ingress": {"enabled": True, "className": "nginx", "hosts": ["tsdb.example.com"],
                "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "120"},
                "tls": [{"secretName": "tsdb-tls", "hosts": ["tsdb.example.com"]}],
                "grpc": {"enabled": True, "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"}}},
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"},
                       "namespace": "monitoring", "annotations": {"owner": "sre"},
                       "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
                       "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
                       "tlsConfig": {"serverName": "tsdb.inflow-test.svc",
                                     "ca": {"secret": {"name": "tsdb-serving-cert", "key": "ca.crt"}}}},
    "networkPolicy": {"clientFrom": [{"namespaceSelector": {"matchLabels": {"team": "telemetry"}}}],
                      "metrics": {"from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}},
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/tsdb"}},
    "podAnnotations": {"team": "telemetry"},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
    "priorityClassName": "high",
}


# --- helpers -------------------------------------------------------------------

def merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def run_cmd(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)


def helm(*args, values=None, env=None):
    argv = [HELM, *args]
    tmp = None
    if values is not None:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump(values, tmp)
        tmp.close()
        argv += ["--values", tmp.name]
    try:
        return run_cmd(argv, env={**os.environ, **(env or {})})
    finally:
        if tmp:
            os.unlink(tmp.name)


def template_text(values=None, *extra):
    r = helm("template", RELEASE, CHART, "--namespace", NAMESPACE, *extra, values=values)
    assert r.returncode == 0, f"helm template failed ({r.returncode}):\n{r.stderr}"
    return r.stdout


def render(values=None, *extra):
    text = template_text(values, *extra)
    return Rendered(list(yaml.safe_load_all(text)), NAMESPACE, (values or {}).get("clusterDomain", "cluster.local"))


def kinds(r):
    return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in r.docs)


def args_of(workload):
    return workload["spec"]["template"]["spec"]["containers"][0]["args"]


def flag(workload, name):
    """The values of `--name=` in a workload's args."""
    return [a.split("=", 1)[1] for a in args_of(workload) if a.startswith(f"--{name}=")]


def http(method, url, body=None, headers=None, timeout=15, context=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_pod_hardening(r):
    """Non-root, read-only root filesystem, and every path a container writes
    to on a writable volume."""
    for w in r.all("StatefulSet") + r.all("Deployment"):
        name = w["metadata"]["name"]
        spec = w["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            assert "/tmp" in mounts and not mounts["/tmp"].get("readOnly"), f"{name}: /tmp is not writable"
            data = flag(w, "data-dir")
            assert data and data[0] in mounts and not mounts[data[0]].get("readOnly"), \
                f"{name}: --data-dir {data} is not a writable mount"
            for p in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert c[p]["httpGet"]["port"] == "http", f"{name}: {p}"
            assert c["livenessProbe"]["httpGet"]["path"] == "/health", name
            assert c["readinessProbe"]["httpGet"]["path"] == "/ready", name


# --- lint and template -----------------------------------------------------------

def test_helm_lint_strict():
    for label, values in [("standalone", None), ("cluster", CLUSTER), ("non-default", NON_DEFAULT)]:
        r = helm("lint", "--strict", CHART, values=values)
        assert r.returncode == 0, f"helm lint --strict ({label}) failed:\n{r.stdout}{r.stderr}"
        assert "0 chart(s) failed" in r.stdout, r.stdout


def test_template_default_is_standalone():
    r = render()
    assert kinds(r) == [
        "NetworkPolicy/demo-inflow-clients", "Secret/demo-inflow-admin-token",
        "Secret/demo-inflow-cluster-token", "Service/demo-inflow", "ServiceAccount/demo-inflow",
        "StatefulSet/demo-inflow",
    ], kinds(r)
    sts = r.one("StatefulSet", FULLNAME)
    assert sts["spec"]["replicas"] == 1
    assert args_of(sts)[:2] == ["serve", "--role=all"], args_of(sts)
    assert flag(sts, "object-store") == ["file"]
    assert flag(sts, "max-request-bytes") == ["10485760"]
    assert flag(sts, "buffer-bytes") == ["1073741824"], "numbers must be printed as integers"
    assert flag(sts, "admin-token-file") == ["/etc/inflow/secrets/admin-token"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    mounts = {m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["data"] == flag(sts, "data-dir")[0]
    check_pod_hardening(r)
    svc = r.one("Service", FULLNAME)
    assert selects(svc["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])


def test_template_cluster_defaults():
    r = render(CLUSTER)
    assert kinds(r) == [
        "Deployment/demo-inflow-querier", "Deployment/demo-inflow-router",
        "HorizontalPodAutoscaler/demo-inflow-router", "NetworkPolicy/demo-inflow-clients",
        "NetworkPolicy/demo-inflow-ingester", "PodDisruptionBudget/demo-inflow-ingester",
        "PodDisruptionBudget/demo-inflow-querier", "PodDisruptionBudget/demo-inflow-router",
        "Secret/demo-inflow-admin-token", "Secret/demo-inflow-cluster-token",
        "Service/demo-inflow-ingester", "Service/demo-inflow-querier", "Service/demo-inflow-router",
        "ServiceAccount/demo-inflow", "StatefulSet/demo-inflow-ingester",
    ], kinds(r)
    router = r.one("Deployment", "demo-inflow-router")
    querier = r.one("Deployment", "demo-inflow-querier")
    ingester = r.one("StatefulSet", "demo-inflow-ingester")
    dns = "dns:demo-inflow-ingester.inflow-test.svc.cluster.local:8087"
    assert flag(router, "ingesters") == [dns], flag(router, "ingesters")
    assert flag(querier, "ingesters") == [dns], flag(querier, "ingesters")
    assert flag(ingester, "grpc-bind") == ["0.0.0.0:8087"]
    for w in (router, querier, ingester):
        assert flag(w, "object-store") == ["s3"] and flag(w, "s3-bucket") == ["inflow-data"]
        assert flag(w, "cluster-token-file") == ["/etc/inflow/secrets/cluster-token"]
        env = {e["name"]: e for e in w["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "inflow-s3", "key": "AWS_ACCESS_KEY_ID"}
    assert args_of(router)[:2] == ["serve", "--role=router"]
    assert args_of(querier)[:2] == ["serve", "--role=querier"]
    assert args_of(ingester)[:2] == ["serve", "--role=ingester"]
    # Ingesters never authenticate clients: no operator token there.
    assert flag(ingester, "admin-token-file") == []
    env = {e["name"]: e for e in ingester["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["INFLOW_INGESTER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    headless = r.one("Service", "demo-inflow-ingester")
    assert headless["spec"]["clusterIP"] == "None"
    assert ingester["spec"]["serviceName"] == "demo-inflow-ingester"
    assert "replicas" not in router["spec"], "the HPA owns the router's replicas"
    hpa = r.one("HorizontalPodAutoscaler", "demo-inflow-router")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo-inflow-router"}
    check_pod_hardening(r)
    # Every PDB selects exactly its own component's pods.
    workloads = {w["metadata"]["name"]: w for w in r.all("Deployment") + r.all("StatefulSet")}
    for pdb in r.all("PodDisruptionBudget"):
        chosen = [n for n, w in workloads.items()
                  if selects(pdb["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
        assert chosen == [pdb["metadata"]["name"]], (pdb["metadata"]["name"], chosen)


def test_template_non_default_values():
    r = render(NON_DEFAULT)
    router = r.one("Deployment", "tsdb-router")
    querier = r.one("Deployment", "tsdb-querier")
    ingester = r.one("StatefulSet", "tsdb-ingester")
    dns = "dns:tsdb-ingester.inflow-test.svc.k8s.internal:9087"
    assert flag(router, "ingesters") == [dns] and flag(querier, "ingesters") == [dns]
    assert flag(ingester, "grpc-bind") == ["0.0.0.0:9087"]
    headless = r.one("Service", "tsdb-ingester")
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == {"grpc": 9087, "http": 9086}
    assert ingester["spec"]["replicas"] == 4 and querier["spec"]["replicas"] == 3
    for w in (router, querier, ingester):
        c = w["spec"]["template"]["spec"]["containers"][0]
        assert c["image"] == "registry.example.com/inflow:9.9.9" and c["imagePullPolicy"] == "Always"
        assert flag(w, "http-bind") == ["0.0.0.0:9086"]
        assert container_port(c, "http")["containerPort"] == 9086
        assert flag(w, "s3-endpoint") == ["https://s3.storage.example.com"]
        assert flag(w, "s3-region") == ["eu-west-1"] and flag(w, "s3-bucket") == ["metrics-prod"]
        assert flag(w, "log-filter") == ["info,inflow=debug"] and flag(w, "shutdown-timeout") == ["45s"]
        env = {e["name"]: e for e in c["env"]}
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s3-keys", "key": "secret"}
        # A component's env entry replaces the global one of its name.
        assert [e["name"] for e in c["env"]].count("OTEL_EXPORTER_OTLP_ENDPOINT") == 1
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == \
            ("http://router-otel:4317" if w is router else "http://otel:4317")
        spec = w["spec"]["template"]["spec"]
        assert spec["priorityClassName"] == ("critical" if w is ingester else "high")
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        # TLS: the user's kubernetes.io/tls Secret, mounted, named in the flags.
        assert flag(w, "tls-cert") == ["/etc/inflow/tls/tls.crt"] and flag(w, "tls-key") == ["/etc/inflow/tls/tls.key"]
        vols = {v["name"]: v for v in spec["volumes"]}
        assert vols["tls"]["secret"]["secretName"] == "tsdb-serving-cert"
        (spread,) = spec["topologySpreadConstraints"]
        assert selects(spread["labelSelector"], w["spec"]["template"]["metadata"]["labels"])
        assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == \
            w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    assert flag(router, "max-request-bytes") == ["33554432"]
    assert flag(router, "max-decompressed-bytes") == ["67108864"]
    assert flag(router, "write-replicas") == ["2"]
    assert flag(router, "max-line-bytes") == ["1048576", "2048"], "extraArgs come last and win"
    assert flag(ingester, "buffer-bytes") == ["536870912"] and flag(ingester, "lease-ttl") == ["20s"]
    assert flag(querier, "max-request-bytes") == [], "edge flags belong to routers"
    hpa = r.one("HorizontalPodAutoscaler", "tsdb-router")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert [p["metadata"]["name"] for p in r.all("PodDisruptionBudget")] == ["tsdb-router", "tsdb-ingester"]
    assert r.one("PodDisruptionBudget", "tsdb-ingester")["spec"]["maxUnavailable"] == 2

    # The operator token comes from the user's Secret: none rendered for it,
    # and the pods mount that Secret's key; the cluster token is still generated.
    secrets = [s["metadata"]["name"] for s in r.all("Secret")]
    assert secrets == ["tsdb-cluster-token"], secrets
    assert list(r.one("Secret", "tsdb-cluster-token")["data"]) == ["shared"]
    vols = {v["name"]: v for v in router["spec"]["template"]["spec"]["volumes"]}
    sources = [s["secret"] for s in vols["secrets"]["projected"]["sources"]]
    assert sources == [
        {"name": "ops-token", "items": [{"key": "token", "path": "admin-token"}]},
        {"name": "tsdb-cluster-token", "items": [{"key": "shared", "path": "cluster-token"}]},
    ], sources

    # Per component: envFrom, extra volumes, labels, strategies, scheduling, probes.
    rc = router["spec"]["template"]["spec"]["containers"][0]
    assert rc["envFrom"] == [{"secretRef": {"name": "router-env"}}]
    assert {"name": "ca", "mountPath": "/etc/ssl/extra", "readOnly": True} in rc["volumeMounts"]
    assert {"name": "ca", "configMap": {"name": "ca-bundle"}} in router["spec"]["template"]["spec"]["volumes"]
    assert router["spec"]["template"]["metadata"]["labels"]["tier"] == "edge"
    assert "tier" not in ingester["spec"]["template"]["metadata"]["labels"]
    assert router["spec"]["strategy"] == {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}}
    assert ingester["spec"]["updateStrategy"] == {"type": "OnDelete"} and "strategy" not in querier["spec"]
    ispec = ingester["spec"]["template"]["spec"]
    assert ispec["nodeSelector"] == {"disk": "ssd"} and ispec["tolerations"][0]["key"] == "dedicated"
    assert "nodeSelector" not in router["spec"]["template"]["spec"]
    assert ingester["spec"]["template"]["metadata"]["annotations"] == {"team": "telemetry", "backup": "none"}
    assert router["spec"]["template"]["metadata"]["annotations"] == {"team": "telemetry"}
    ic = ispec["containers"][0]
    assert ic["startupProbe"]["failureThreshold"] == 720 and ic["startupProbe"]["periodSeconds"] == 5
    qc = querier["spec"]["template"]["spec"]["containers"][0]
    assert (qc["readinessProbe"]["periodSeconds"], qc["readinessProbe"]["failureThreshold"]) == (2, 5)
    assert qc["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http", "scheme": "HTTPS"}
    assert flag(querier, "query-timeout") == ["1m"]
    # hard anti-affinity on the zone for ingesters; the querier's own affinity as given.
    (term,) = ispec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "topology.kubernetes.io/zone"
    assert selects(term["labelSelector"], ingester["spec"]["template"]["metadata"]["labels"])
    assert querier["spec"]["template"]["spec"]["affinity"] == NON_DEFAULT["querier"]["affinity"]

    # The Ingress: nginx's body limit is the router's --max-request-bytes.
    ing = r.one("Ingress", "tsdb")
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-body-size"] == flag(router, "max-request-bytes")[0]
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "120"
    assert ann["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS", "the pods serve TLS"
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"secretName": "tsdb-tls", "hosts": ["tsdb.example.com"]}]
    (rule,) = ing["spec"]["rules"]
    routes = [(p["path"], p["pathType"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]]
    assert routes == [("/api/v3/query_sql", "Exact", "tsdb-querier"),
                      ("/api/v3/query_influxql", "Exact", "tsdb-querier"),
                      ("/query", "Exact", "tsdb-querier"), ("/", "Prefix", "tsdb-router")], routes
    for p in rule["http"]["paths"]:
        svc = r.one("Service", p["backend"]["service"]["name"])
        assert p["backend"]["service"]["port"]["name"] in [sp["name"] for sp in svc["spec"]["ports"]]

    # The ServiceMonitor scrapes /metrics on the port named http of every
    # Service, over HTTPS since the pods serve TLS.
    sm = r.one("ServiceMonitor", "tsdb")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["metadata"]["namespace"] == "monitoring" and sm["metadata"]["annotations"] == {"owner": "sre"}
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    sm_values = NON_DEFAULT["serviceMonitor"]
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "scheme": "https",
                                        "interval": "15s", "scrapeTimeout": "10s",
                                        "tlsConfig": sm_values["tlsConfig"],
                                        "relabelings": sm_values["relabelings"],
                                        "metricRelabelings": sm_values["metricRelabelings"]}]
    scraped = [s for s in r.all("Service") if selects(sm["spec"]["selector"], s["metadata"]["labels"])]
    assert sorted(s["metadata"]["name"] for s in scraped) == ["tsdb-ingester", "tsdb-querier", "tsdb-router"]
    for s in scraped:
        assert "http" in [p["name"] for p in s["spec"]["ports"]]
    sa = r.one("ServiceAccount", "tsdb")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam")
    check_pod_hardening(r)


def peer_admits(peer, source):
    """Whether a NetworkPolicyPeer admits a pod `source` = (namespace,
    namespace labels, pod labels); the policy is in the release's namespace."""
    ns, ns_labels, labels = source
    if "ipBlock" in peer:
        return False
    ns_ok = selects(peer["namespaceSelector"], ns_labels) if "namespaceSelector" in peer else ns == NAMESPACE
    return ns_ok and selects(peer.get("podSelector", {}), labels)


def admitted(r, pod_labels, port, source):
    """Whether the rendered NetworkPolicies let `source` connect to the named
    container port of a pod with `pod_labels` (Kubernetes' semantics: a pod no
    policy selects takes anything; otherwise some rule must admit)."""
    applying = [p for p in r.all("NetworkPolicy") if selects(p["spec"]["podSelector"], pod_labels)]
    if not applying:
        return True
    for policy in applying:
        for rule in policy["spec"].get("ingress", []):
            if "ports" in rule and port not in [p["port"] for p in rule["ports"]]:
                continue
            if "from" not in rule or any(peer_admits(peer, source) for peer in rule["from"]):
                return True
    return False


def monitoring_pod(ns="monitoring"):
    return ns, {"kubernetes.io/metadata.name": ns, "name": ns}, {"app.kubernetes.io/name": "prometheus"}


def test_network_policies():
    """Clients reach routers and queriers (only from clientFrom when given);
    ingesters only from routers and queriers, on the grpc port; nothing lets
    ingesters reach each other (they share only the object store); and the
    scraper (networkPolicy.metrics.from) reaches the http port of every role."""
    for values in (CLUSTER, NON_DEFAULT):
        r = render(values)
        pods_by = {w["metadata"]["labels"]["app.kubernetes.io/component"]: w["spec"]["template"]["metadata"]["labels"]
                   for w in r.all("Deployment") + r.all("StatefulSet")}
        assert set(pods_by) == {"router", "querier", "ingester"}
        policies = r.all("NetworkPolicy")
        for component, labels in pods_by.items():
            applying = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
            assert len(applying) == 1, (component, [p["metadata"]["name"] for p in applying])
            assert applying[0]["spec"]["policyTypes"] == ["Ingress"]

        def own(component):
            return NAMESPACE, {"kubernetes.io/metadata.name": NAMESPACE}, pods_by[component]

        # The scraper, from the monitoring namespace, on every role's http port; not on the ingesters' grpc.
        for component, labels in pods_by.items():
            assert admitted(r, labels, "http", monitoring_pod()), f"scraper refused by {component}"
        assert not admitted(r, pods_by["ingester"], "grpc", monitoring_pod())
        # Ingesters' grpc: routers and queriers only, never another ingester.
        assert admitted(r, pods_by["ingester"], "grpc", own("router"))
        assert admitted(r, pods_by["ingester"], "grpc", own("querier"))
        assert not admitted(r, pods_by["ingester"], "grpc", own("ingester")), "ingester to ingester"
        for policy in policies:
            for rule in policy["spec"]["ingress"]:
                if selects(policy["spec"]["podSelector"], pods_by["ingester"]):
                    assert rule.get("from"), f"an ingester rule open to anyone: {rule}"
        app = ("apps", {"kubernetes.io/metadata.name": "apps"}, {"app": "grafana"})
        telemetry = ("telemetry-ns", {"team": "telemetry"}, {"app": "telegraf"})
        if values is CLUSTER:
            # No clientFrom: anyone reaches routers and queriers.
            assert admitted(r, pods_by["router"], "http", app) and admitted(r, pods_by["querier"], "http", app)
        else:
            # clientFrom (telemetry) and metrics.from (the namespace labelled name=monitoring) only.
            assert admitted(r, pods_by["router"], "http", telemetry)
            assert not admitted(r, pods_by["router"], "http", app)
            assert not admitted(r, pods_by["ingester"], "http", app)
            assert not admitted(r, pods_by["ingester"], "http", telemetry)
            assert not admitted(r, pods_by["querier"], "http", monitoring_pod("other")), "metrics.from ignored"

    # metrics.from narrowed to the monitoring namespace: only it reaches ingesters' http.
    narrowed = merge(CLUSTER, {"networkPolicy": {"metrics": {"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}}})
    r = render(narrowed)
    ingester = r.one("StatefulSet", "demo-inflow-ingester")["spec"]["template"]["metadata"]["labels"]
    assert admitted(r, ingester, "http", monitoring_pod())
    assert not admitted(r, ingester, "http", monitoring_pod("default"))
    # metrics.enabled false: nobody reaches the ingesters' http port (the kubelet's probes are not policed).
    r = render(merge(CLUSTER, {"networkPolicy": {"metrics": {"enabled": False}}}))
    assert not admitted(r, ingester, "http", monitoring_pod())
    # metrics.from empty: anyone.
    r = render(merge(CLUSTER, {"networkPolicy": {"metrics": {"from": []}}}))
    assert admitted(r, ingester, "http", monitoring_pod("anywhere"))

    # Standalone: one policy for the one pod, its http port open; with
    # clientFrom the scraper is still let in.
    r = render()
    (policy,) = r.all("NetworkPolicy")
    sts = r.one("StatefulSet", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"], sts)
    r = render({"networkPolicy": {"clientFrom": [{"podSelector": {"matchLabels": {"app": "telegraf"}}}]}})
    assert admitted(r, sts, "http", monitoring_pod())
    assert admitted(r, sts, "http", (NAMESPACE, {}, {"app": "telegraf"}))
    # A policy sees ports, not paths: the default metrics.from (any pod of the
    # cluster) reaches the API port too, as values.yaml warns; narrowed, it does not.
    assert admitted(r, sts, "http", (NAMESPACE, {}, {"app": "other"}))
    scraper_only = [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    r = render({"networkPolicy": {"clientFrom": [{"podSelector": {"matchLabels": {"app": "telegraf"}}}],
                                  "metrics": {"from": scraper_only}}})
    assert admitted(r, sts, "http", monitoring_pod())
    assert not admitted(r, sts, "http", (NAMESPACE, {}, {"app": "other"}))
    r = render({"networkPolicy": {"clientFrom": [{"podSelector": {"matchLabels": {"app": "telegraf"}}}],
                                  "metrics": {"enabled": False}}})
    assert not admitted(r, sts, "http", monitoring_pod())
    assert render({"networkPolicy": {"enabled": False}}).all("NetworkPolicy") == []


def test_ingress_standalone_and_body_size_follows_limit():
    r = render({"ingress": {"enabled": True}, "edge": {"maxRequestBytes": 1234567}})
    sts = r.one("StatefulSet", FULLNAME)
    ing = r.one("Ingress", FULLNAME)
    assert flag(sts, "max-request-bytes") == ["1234567"]
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "1234567"
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in paths] == [("/", FULLNAME)]


def test_standalone_variants():
    r = render({"standalone": {"persistence": {"enabled": False}},
                "objectStore": {"type": "s3", "s3": {"bucket": "small-bucket"}}})
    sts = r.one("StatefulSet", FULLNAME)
    assert "volumeClaimTemplates" not in sts["spec"]
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"] == {"name": "data", "emptyDir": {}}
    assert flag(sts, "object-store") == ["s3"] and flag(sts, "s3-bucket") == ["small-bucket"]
    env = sts["spec"]["template"]["spec"]["containers"][0].get("env", [])
    assert env == [], "no credentials Secret named: none mounted (a ServiceAccount role then)"
    r = render({"standalone": {"persistence": {"existingClaim": "my-claim"}, "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}}})
    sts = r.one("StatefulSet", FULLNAME)
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"] == {"claimName": "my-claim"}
    assert "volumeClaimTemplates" not in sts["spec"]
    assert r.one("PodDisruptionBudget", FULLNAME)["spec"]["maxUnavailable"] == 1


def containers(r):
    """The inflow container of every workload, by component."""
    return {w["metadata"]["labels"]["app.kubernetes.io/component"]: w["spec"]["template"]["spec"]["containers"][0]
            for w in r.all("Deployment") + r.all("StatefulSet")}


def workloads(r):
    return {w["metadata"]["labels"]["app.kubernetes.io/component"]: w
            for w in r.all("Deployment") + r.all("StatefulSet")}


def test_image_reference():
    """registry/repository:tag, the tag defaulting to the chart's appVersion;
    a digest wins over the tag; an empty registry leaves the repository whole."""
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

    def image(values=None):
        (c,) = containers(render(values)).values()
        return c["image"]

    assert image() == f"ghcr.io/inflow-db/inflow:{app_version}"
    assert image({"image": {"tag": "1.2.3"}}) == "ghcr.io/inflow-db/inflow:1.2.3"
    digest = "sha256:" + "ab" * 32
    assert image({"image": {"tag": "1.2.3", "digest": digest}}) == f"ghcr.io/inflow-db/inflow@{digest}"
    assert image({"image": {"registry": "", "repository": "inflow"}}) == f"inflow:{app_version}"
    assert image({"image": {"registry": "registry.example.com:5000", "repository": "team/inflow"}}) == \
        f"registry.example.com:5000/team/inflow:{app_version}"
    # One image for every component.
    r = render(merge(CLUSTER, {"image": {"digest": digest}}))
    assert {c["image"] for c in containers(r).values()} == {f"ghcr.io/inflow-db/inflow@{digest}"}
    # imagePullSecrets reach every pod.
    r = render(merge(CLUSTER, {"imagePullSecrets": [{"name": "regcred"}]}))
    for w in workloads(r).values():
        assert w["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_component_settings():
    """Each component's own values reach its pods only, merged with or in
    place of the global ones as values.yaml says."""
    values = merge(CLUSTER, {
        "extraEnv": [{"name": "SHARED", "value": "global"}, {"name": "TZ", "value": "UTC"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "global", "operator": "Exists"}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "podLabels": {"team": "tsdb"},
        "ingester": {
            "env": [{"name": "SHARED", "value": "ingester"}],
            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "6Gi"}},
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "ingest", "operator": "Exists"}],
            "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "DoNotSchedule"}],
            # A selector label cannot be overridden: the chart's wins.
            "podLabels": {"app.kubernetes.io/component": "hijacked", "shard": "a"},
            "livenessProbe": {"failureThreshold": 9},
            "extraArgs": ["--compaction-interval=5m"],
        },
        "querier": {"extraVolumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                    "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                    "envFrom": [{"configMapRef": {"name": "querier-env"}}]},
    })
    r = render(values)
    c = containers(r)
    w = workloads(r)
    env = {k: [(e["name"], e.get("value")) for e in v["env"] if e["name"] in ("SHARED", "TZ")] for k, v in c.items()}
    assert env["ingester"] == [("TZ", "UTC"), ("SHARED", "ingester")], env["ingester"]
    assert env["router"] == [("SHARED", "global"), ("TZ", "UTC")], env["router"]
    assert c["ingester"]["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "6Gi"}}
    assert c["router"]["resources"]["requests"]["cpu"] == "500m"
    spec = {k: v["spec"]["template"]["spec"] for k, v in w.items()}
    assert spec["ingester"]["nodeSelector"] == {"kubernetes.io/os": "linux", "disk": "ssd"}
    assert spec["querier"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["ingester"]["tolerations"] == [{"key": "ingest", "operator": "Exists"}]
    assert spec["router"]["tolerations"] == [{"key": "global", "operator": "Exists"}]
    (own,) = spec["ingester"]["topologySpreadConstraints"]
    assert (own["maxSkew"], own["topologyKey"]) == (2, "kubernetes.io/hostname")
    (shared,) = spec["querier"]["topologySpreadConstraints"]
    assert shared["topologyKey"] == "topology.kubernetes.io/zone"
    assert selects(shared["labelSelector"], w["querier"]["spec"]["template"]["metadata"]["labels"])
    labels = w["ingester"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "ingester" and labels["shard"] == "a" and labels["team"] == "tsdb"
    assert selects(w["ingester"]["spec"]["selector"], labels)
    assert "shard" not in w["router"]["spec"]["template"]["metadata"]["labels"]
    assert c["ingester"]["livenessProbe"]["failureThreshold"] == 9
    assert c["router"]["livenessProbe"]["failureThreshold"] == 3
    assert args_of(w["ingester"])[-1] == "--compaction-interval=5m", "extraArgs come last"
    assert not [a for a in args_of(w["router"]) if a.startswith("--compaction-interval")]
    assert {"name": "scratch", "mountPath": "/scratch"} in c["querier"]["volumeMounts"]
    assert {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}} in spec["querier"]["volumes"]
    assert "scratch" not in [v["name"] for v in spec["router"]["volumes"]]
    assert c["querier"]["envFrom"] == [{"configMapRef": {"name": "querier-env"}}] and "envFrom" not in c["router"]
    # Defaults: every probe on the http port; the startup probe allows 5
    # minutes, and a larger failureThreshold lets a long WAL replay finish.
    for comp, cont in containers(render()).items():
        assert cont["startupProbe"]["periodSeconds"] * cont["startupProbe"]["failureThreshold"] == 300, comp
        assert cont["startupProbe"]["httpGet"] == {"path": "/health", "port": "http", "scheme": "HTTP"}
    (cont,) = containers(render({"standalone": {"startupProbe": {"failureThreshold": 720}}})).values()
    assert cont["startupProbe"]["periodSeconds"] * cont["startupProbe"]["failureThreshold"] == 3600
    # Update strategies: a Deployment's strategy, a StatefulSet's updateStrategy.
    r = render(merge(CLUSTER, {"querier": {"updateStrategy": {"type": "Recreate"}},
                               "ingester": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}))
    w = workloads(r)
    assert w["querier"]["spec"]["strategy"] == {"type": "Recreate"}
    assert w["ingester"]["spec"]["updateStrategy"] == {"rollingUpdate": {"partition": 1}}
    assert "strategy" not in w["router"]["spec"] and "updateStrategy" not in workloads(render())["standalone"]["spec"]


def test_ingester_anti_affinity():
    """By default ingesters prefer different nodes (kubernetes.io/hostname);
    routers and queriers have no affinity. An affinity the user gives, the
    component's or the global one, replaces the preset."""
    w = workloads(render(CLUSTER))
    aff = w["ingester"]["spec"]["template"]["spec"]["affinity"]
    assert list(aff) == ["podAntiAffinity"] and list(aff["podAntiAffinity"]) == [
        "preferredDuringSchedulingIgnoredDuringExecution"], aff
    (pref,) = aff["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pref["weight"] == 100 and pref["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = pref["podAffinityTerm"]["labelSelector"]
    assert selects(selector, w["ingester"]["spec"]["template"]["metadata"]["labels"])
    for other in ("router", "querier"):
        assert not selects(selector, w[other]["spec"]["template"]["metadata"]["labels"]), other
        assert "affinity" not in w[other]["spec"]["template"]["spec"], other
    assert "affinity" not in workloads(render())["standalone"]["spec"]["template"]["spec"]

    node_affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ingest"]}]}]}}}
    for given in ({"ingester": {"affinity": node_affinity}}, {"affinity": node_affinity}):
        w = workloads(render(merge(CLUSTER, given)))
        assert w["ingester"]["spec"]["template"]["spec"]["affinity"] == node_affinity, given
    # Hard, on another topology key; or none.
    w = workloads(render(merge(CLUSTER, {"ingester": {"podAntiAffinity": "hard",
                                                      "podAntiAffinityTopologyKey": "topology.kubernetes.io/zone"}})))
    (req,) = w["ingester"]["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]
    assert req["topologyKey"] == "topology.kubernetes.io/zone"
    w = workloads(render(merge(CLUSTER, {"ingester": {"podAntiAffinity": ""}})))
    assert "affinity" not in w["ingester"]["spec"]["template"]["spec"]


def test_tls_from_existing_secret():
    """tls.existingSecret: the Secret's tls.crt and tls.key mounted read-only
    and named by --tls-cert/--tls-key in every role; probes use HTTPS."""
    for values in ({"tls": {"existingSecret": "inflow-cert"}},
                   merge(CLUSTER, {"tls": {"existingSecret": "inflow-cert"}})):
        r = render(values)
        for comp, w in workloads(r).items():
            spec = w["spec"]["template"]["spec"]
            c = spec["containers"][0]
            vols = {v["name"]: v for v in spec["volumes"]}
            mounts = {m["name"]: m for m in c["volumeMounts"]}
            assert vols["tls"]["secret"]["secretName"] == "inflow-cert", comp
            items = {i["key"]: i["path"] for i in vols["tls"]["secret"]["items"]}
            assert items == {"tls.crt": "tls.crt", "tls.key": "tls.key"}
            assert mounts["tls"]["readOnly"] is True
            base = mounts["tls"]["mountPath"]
            assert flag(w, "tls-cert") == [f"{base}/tls.crt"] and flag(w, "tls-key") == [f"{base}/tls.key"], comp
            for p in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert c[p]["httpGet"]["scheme"] == "HTTPS", (comp, p)
        check_pod_hardening(r)
    # Off by default: no flag, no volume, plain HTTP probes.
    for comp, w in workloads(render(CLUSTER)).items():
        assert flag(w, "tls-cert") == [] and flag(w, "tls-key") == []
        assert "tls" not in [v["name"] for v in w["spec"]["template"]["spec"]["volumes"]]
        assert w["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["scheme"] == "HTTP"


FLIGHT = "/arrow.flight.protocol.FlightService"


def test_flight_service_port_and_grpc_ingress():
    """The client Services name a grpc port (appProtocol grpc) that reaches the
    pods' one HTTP+gRPC port; ingress.grpc routes Flight: DoPut to routers,
    every other call to queriers (standalone: all to the one Service)."""
    edge_tls = [{"secretName": "edge-tls", "hosts": ["inflow.example.com"]}]
    r = render(merge(CLUSTER, {"ingress": {"enabled": True, "tls": edge_tls, "grpc": {"enabled": True}}}))
    for name in ("demo-inflow-router", "demo-inflow-querier"):
        ports = {p["name"]: p for p in r.one("Service", name)["spec"]["ports"]}
        assert ports["grpc"] == {"name": "grpc", "port": 8082, "targetPort": "http", "protocol": "TCP",
                                 "appProtocol": "grpc"}, ports
        assert ports["http"]["port"] == 8086 and "appProtocol" not in ports["http"]
    headless = {p["name"]: p for p in r.one("Service", "demo-inflow-ingester")["spec"]["ports"]}
    assert headless["grpc"]["appProtocol"] == "grpc"
    grpc = r.one("Ingress", "demo-inflow-grpc")
    ann = grpc["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert ann["nginx.ingress.kubernetes.io/proxy-body-size"] == "10485760"
    assert grpc["spec"]["tls"] == edge_tls, "ingress.tls by default"
    (rule,) = grpc["spec"]["rules"]
    assert rule["host"] == "inflow.example.com"
    routes = [(p["path"], p["pathType"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"])
              for p in rule["http"]["paths"]]
    assert routes == [(f"{FLIGHT}/DoPut", "ImplementationSpecific", "demo-inflow-router", "grpc"),
                      (FLIGHT, "ImplementationSpecific", "demo-inflow-querier", "grpc")], routes
    # No path of the HTTP Ingress is a Flight path: the two can share a host.
    http_paths = [p["path"] for p in r.one("Ingress", FULLNAME)["spec"]["rules"][0]["http"]["paths"]]
    assert not [p for p in http_paths if p.startswith(FLIGHT)]
    # Standalone, TLS to the pods, own hosts, a user annotation winning, Prefix.
    r = render({"tls": {"existingSecret": "inflow-cert"}, "service": {"grpcPort": 9000},
                "ingress": {"grpc": {"enabled": True, "hosts": ["flight.example.com"], "pathType": "Prefix",
                                     "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "64m"}}}})
    assert r.all("Ingress") == [r.one("Ingress", "demo-inflow-grpc")], "ingress.enabled stays off"
    grpc = r.one("Ingress", "demo-inflow-grpc")
    assert grpc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    assert grpc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "64m"
    (rule,) = grpc["spec"]["rules"]
    assert rule["host"] == "flight.example.com"
    assert [(p["path"], p["pathType"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]] == [
        (FLIGHT, "Prefix", FULLNAME)]
    ports = {p["name"]: p for p in r.one("Service", FULLNAME)["spec"]["ports"]}
    assert ports["grpc"]["port"] == 9000 and ports["grpc"]["targetPort"] == "http"
    assert not render().all("Ingress")
    # The grpc port cannot be the http port.
    bad = helm("template", RELEASE, CHART, values={"service": {"grpcPort": 8086}})
    assert bad.returncode != 0 and "service.grpcPort and httpPort must differ" in bad.stderr, bad.stderr


def test_service_monitor_every_role():
    """One ServiceMonitor selects the Service of every role and scrapes its
    http port: plain HTTP without TLS (tlsConfig then unused), in the
    release's namespace unless told."""
    r = render(merge(CLUSTER, {"serviceMonitor": {"enabled": True, "tlsConfig": {"insecureSkipVerify": True}}}))
    sm = r.one("ServiceMonitor", FULLNAME)
    assert sm["metadata"]["namespace"] == NAMESPACE
    (ep,) = sm["spec"]["endpoints"]
    assert ep == {"port": "http", "path": "/metrics", "scheme": "http", "interval": "30s", "scrapeTimeout": "10s"}
    scraped = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in r.all("Service")
               if selects(sm["spec"]["selector"], s["metadata"]["labels"])}
    assert scraped == {"router", "ingester", "querier"}
    for comp, w in workloads(r).items():
        svc = [s for s in r.all("Service") if s["metadata"]["labels"]["app.kubernetes.io/component"] == comp]
        (svc,) = svc
        assert selects(svc["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        (port,) = [p for p in svc["spec"]["ports"] if p["name"] == "http"]
        assert container_port(w["spec"]["template"]["spec"]["containers"][0], port["targetPort"])
    r = render({"serviceMonitor": {"enabled": True}, "tls": {"existingSecret": "c"}})
    (ep,) = r.one("ServiceMonitor", FULLNAME)["spec"]["endpoints"]
    assert ep["scheme"] == "https" and "tlsConfig" not in ep


def test_generated_secrets_are_kept():
    """Generated token Secrets carry helm.sh/resource-policy: keep; with both
    existingSecrets the chart generates none and mounts the user's."""
    r = render()
    for s in r.all("Secret"):
        assert s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", s["metadata"]["name"]
    r = render(merge(CLUSTER, {"auth": {"adminToken": {"existingSecret": "gitops-tokens"},
                                        "clusterToken": {"existingSecret": "gitops-tokens"}}}))
    assert r.all("Secret") == []
    for comp, w in workloads(r).items():
        vols = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
        names = {src["secret"]["name"] for src in vols["secrets"]["projected"]["sources"]}
        assert names == {"gitops-tokens"}, (comp, names)


# --- the values schema ------------------------------------------------------------

SCHEMA_REJECTS = [
    ({"mode": "distributed"}, "/mode"),
    ({"mode": "cluster"}, "/objectStore/type"),  # cluster needs S3
    ({"mode": "cluster", "objectStore": {"type": "s3"}}, "/objectStore/s3/bucket"),
    ({"edge": {"maxRequestBytes": "10MB"}}, "/edge/maxRequestBytes"),
    ({"edge": {"maxRequestBytes": 0}}, "/edge/maxRequestBytes"),
    ({"ingest": {"snapshotInterval": "thirty seconds"}}, "/ingest/snapshotInterval"),
    ({"server": {"logFormat": "xml"}}, "/server/logFormat"),
    ({"edge": {"maxRequestByte": 10}}, "maxRequestByte"),  # a typo is not ignored
    ({"replicas": 3}, "replicas"),
    ({"router": {"extraArgs": ["--role", "all"]}}, "/router/extraArgs"),
    ({"httpPort": 70000}, "/httpPort"),
    ({"objectStore": {"s3": {"endpoint": "minio:9000"}}}, "/objectStore/s3/endpoint"),
    # Misspelled keys of the per-component settings are refused, not ignored.
    ({"ingester": {"podAntiAfinity": "soft"}}, "podAntiAfinity"),
    ({"ingester": {"startupProbe": {"failureTreshold": 720}}}, "failureTreshold"),
    ({"router": {"extraVolumeMount": []}}, "extraVolumeMount"),
    ({"tls": {"existingSecrets": "cert"}}, "existingSecrets"),
    ({"networkPolicy": {"metricsFrom": []}}, "metricsFrom"),
    ({"serviceMonitor": {"tlsConfig": {"insecure": True}}}, "insecure"),
    ({"ingress": {"grpc": {"enable": True}}}, "enable"),
    ({"affinity": {"podAntiAfinity": {}}}, "podAntiAfinity"),
    # Wrong values.
    ({"ingester": {"podAntiAffinity": "preferred"}}, "/ingester/podAntiAffinity"),
    ({"ingester": {"updateStrategy": {"type": "Recreate"}}}, "/ingester/updateStrategy/type"),
    ({"querier": {"updateStrategy": {"type": "OnDelete"}}}, "/querier/updateStrategy/type"),
    ({"router": {"livenessProbe": {"periodSeconds": 0}}}, "/router/livenessProbe/periodSeconds"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"router": {"extraVolumeMounts": [{"name": "x", "mountPath": "relative"}]}},
     "/router/extraVolumeMounts/0/mountPath"),
    ({"ingress": {"grpc": {"pathType": "Exact"}}}, "/ingress/grpc/pathType"),
    ({"service": {"grpcPort": 0}}, "/service/grpcPort"),
]


def test_schema_rejects_bad_values():
    for bad, where in SCHEMA_REJECTS:
        r = helm("template", RELEASE, CHART, values=bad)
        assert r.returncode != 0, f"accepted {bad}"
        assert "don't meet the specifications of the schema" in r.stderr, r.stderr
        assert where in r.stderr, f"{bad}: error does not name {where}:\n{r.stderr}"
        # lint reads the same schema.
        lint = helm("lint", "--strict", CHART, values=bad)
        assert lint.returncode != 0, f"lint accepted {bad}"
    # What the schema cannot say, the templates check.
    r = helm("template", RELEASE, CHART, values=merge(CLUSTER, {"ingester": {"grpcPort": 8086}}))
    assert r.returncode != 0 and "must differ" in r.stderr, r.stderr
    r = helm("template", RELEASE, CHART,
             values=merge(CLUSTER, {"router": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}))
    assert r.returncode != 0 and "minReplicas" in r.stderr, r.stderr
    # The same files with good values pass: the failures above are the values'.
    assert helm("template", RELEASE, CHART, values=merge(CLUSTER, {"edge": {"maxRequestBytes": 1}})).returncode == 0


# --- Secrets: generated once, kept by lookup --------------------------------------

def test_tokens_generated_then_kept_by_lookup():
    def secrets(r):
        return {s["metadata"]["name"]: s["data"] for s in r.all("Secret")}

    # No cluster to look in (helm template): a fresh random token each render.
    a, b = secrets(render()), secrets(render())
    for name in ("demo-inflow-admin-token", "demo-inflow-cluster-token"):
        (key,) = a[name]
        token = base64.b64decode(a[name][key]).decode()
        assert re.fullmatch(r"[A-Za-z0-9]{48}", token), token
        assert a[name] != b[name], "a token must be random, not fixed in the chart"

    def against(existing):
        with FakeApiServer(existing, RELEASE) as api:
            r = helm("template", RELEASE, CHART, "--namespace", NAMESPACE, "--dry-run=server",
                     "--disable-openapi-validation", "--kube-apiserver", api.url,
                     env={"KUBECONFIG": os.devnull})
            assert r.returncode == 0, r.stderr
            looked = [p for m, p in api.requests if "/secrets/" in p]
            writes = [(m, p) for m, p in api.requests if m != "GET"]
        assert not writes, writes
        return secrets(Rendered(list(yaml.safe_load_all(r.stdout)), NAMESPACE)), looked

    # A first install: nothing there yet, so new tokens; and the chart did ask.
    fresh, looked = against({})
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/demo-inflow-admin-token" in looked, looked
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/demo-inflow-cluster-token" in looked, looked
    assert set(fresh) == {"demo-inflow-admin-token", "demo-inflow-cluster-token"}
    # An upgrade: the live Secrets' tokens come back unchanged.
    live = {
        (NAMESPACE, "demo-inflow-admin-token"): {"admin-token": base64.b64encode(b"kept-operator-token").decode()},
        (NAMESPACE, "demo-inflow-cluster-token"): {"cluster-token": base64.b64encode(b"kept-cluster-token").decode()},
    }
    kept, _ = against(live)
    assert kept == {name: data for (_, name), data in live.items()}, kept


# --- offline validation of every rendered manifest ---------------------------------

VALIDATE_SETS = [
    ("standalone", None),
    ("standalone-s3-ingress", {"objectStore": {"type": "s3", "s3": {"bucket": "b-small"}},
                               "standalone": {"persistence": {"enabled": False}},
                               "ingress": {"enabled": True}, "serviceMonitor": {"enabled": True}}),
    ("cluster", CLUSTER),
    ("cluster-no-hpa", merge(CLUSTER, {"router": {"autoscaling": {"enabled": False}},
                                       "networkPolicy": {"enabled": False}, "serviceAccount": {"create": False}})),
    ("non-default", NON_DEFAULT),
    ("standalone-tls-grpc", {"tls": {"existingSecret": "inflow-cert"}, "image": {"digest": "sha256:" + "0" * 64},
                             "ingress": {"enabled": True, "grpc": {"enabled": True}},
                             "serviceMonitor": {"enabled": True, "tlsConfig": {"insecureSkipVerify": True}},
                             "standalone": {"extraVolumes": [{"name": "ca", "secret": {"secretName": "ca"}}],
                                            "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}],
                                            "envFrom": [{"secretRef": {"name": "env"}}],
                                            "updateStrategy": {"type": "OnDelete"},
                                            "startupProbe": {"failureThreshold": 720, "initialDelaySeconds": 10}}}),
    ("cluster-settings", merge(CLUSTER, {
        "ingester": {"podAntiAffinity": "hard", "updateStrategy": {"rollingUpdate": {"partition": 0}},
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                    "whenUnsatisfiable": "DoNotSchedule"}]},
        "router": {"podAntiAffinity": "soft", "updateStrategy": {"type": "Recreate"}},
        "querier": {"updateStrategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}},
        "networkPolicy": {"clientFrom": [{"podSelector": {"matchLabels": {"app": "telegraf"}}}]}})),
]


def validate(path, version):
    return run_cmd([BIN_DIR / "kubernetes-validate", "--strict", "-k", version, path])


def test_manifests_validate_strict():
    with tempfile.TemporaryDirectory() as tmp:
        for label, values in VALIDATE_SETS:
            text = template_text(values)
            path = Path(tmp) / f"{label}.yaml"
            path.write_text(text)
            docs = [d for d in yaml.safe_load_all(text) if d]
            core = [d for d in docs if d["kind"] != "ServiceMonitor"]
            for version in KUBE_VERSIONS:
                r = validate(path, version)
                assert r.returncode == 0, f"{label} against {version}:\n{r.stdout}{r.stderr}"
                passed = re.findall(r"passed for resource (\S+) against", r.stdout + r.stderr)
                assert len(passed) == len(core), f"{label}: {len(passed)} of {len(core)} validated:\n{r.stdout}"
                # The ServiceMonitor is a CRD kubernetes-validate has no schema
                # for; test_template_non_default_values checks its fields.
                unknown = re.findall(r"Couldn't find schema for kind (\S+)", r.stdout + r.stderr)
                assert set(unknown) <= {"ServiceMonitor"}, unknown
        # The validator does reject: an unknown field in a rendered Deployment.
        docs = [d for d in yaml.safe_load_all(template_text(CLUSTER)) if d]
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
        bad = Path(tmp) / "bad.yaml"
        bad.write_text(yaml.safe_dump(deployment))
        r = validate(bad, KUBE_VERSIONS[0])
        assert r.returncode != 0 and "readinessProbes" in r.stdout + r.stderr, r.stdout


def test_chart_kube_version_floor():
    r = helm("template", RELEASE, CHART, "--kube-version", "1.28.0")
    assert r.returncode != 0 and "kubeVersion" in r.stderr, r.stderr
    assert helm("template", RELEASE, CHART, "--kube-version", KUBE_VERSIONS[-1]).returncode == 0


# --- the Dockerfile ------------------------------------------------------------------

def test_dockerfile_hadolint():
    hadolint = BIN_DIR / "hadolint"
    r = run_cmd([hadolint, ROOT / "Dockerfile"])
    assert r.returncode == 0, f"hadolint:\n{r.stdout}{r.stderr}"
    # hadolint does fail a Dockerfile that breaks its rules.
    r = run_cmd([hadolint, "-"], input="FROM debian:latest\nRUN apt-get install curl\n")
    assert r.returncode != 0 and "DL3007" in r.stdout, r.stdout


def test_dockerfile_matches_chart():
    """The image runs as the user the chart names, and its ENTRYPOINT is the
    binary, so the chart's args are an inflow command line."""
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert len(stages) >= 2, "multi-stage"
    assert re.search(r"^RUN\b[\s\S]*?cargo build --release", text, re.M), "builds with cargo build --release"
    final = text[text.rfind("\nFROM "):]
    (user,) = re.findall(r"^USER\s+(\S+)", final, re.M)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid, _, gid = user.partition(":")
    assert int(uid) == values["podSecurityContext"]["runAsUser"] != 0
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]
    (entry,) = re.findall(r"^ENTRYPOINT\s+(\[.*\])", final, re.M)
    assert Path(json.loads(entry)[0]).name == "inflow"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target/" in ignored, "the build context must not carry target/"


# --- the rendered configuration, run ---------------------------------------------------

def start_moto():
    port = free_port()
    proc = subprocess.Popen([BIN_DIR / "moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def s3_keys(endpoint, bucket):
    status, body = http("GET", f"{endpoint}/{bucket}?list-type=2&max-keys=1000")
    assert status == 200, body
    return re.findall(r"<Key>([^<]+)</Key>", body.decode())


def notes(values):
    r = helm("install", RELEASE, CHART, "--namespace", NAMESPACE, "--dry-run=client", values=values,
             env={"KUBECONFIG": os.devnull})
    assert r.returncode == 0, r.stderr
    return r.stdout[r.stdout.index("NOTES:"):]


def run_notes(text, rendered, forwards, token):
    """Follows NOTES.txt: checks its token command against the rendered
    Secret, then runs its curl commands with the port-forwards pointing at the
    local processes. Returns what each curl printed."""
    m = re.search(r"kubectl get secret --namespace (\S+) (\S+) \\\s*\n\s*-o jsonpath='\{\.data\.([^}]+)\}' \| base64 -d", text)
    assert m, f"NOTES do not say how to get the token:\n{text}"
    ns, secret, key = m.group(1), m.group(2), m.group(3).replace("\\.", ".")
    assert ns == NAMESPACE and rendered.secret_value(secret, key) == token, (ns, secret, key)
    pf = dict((port, svc) for svc, port in re.findall(r"service/(\S+) (\d+):\d+", text))
    assert set(pf.values()) == set(forwards), (pf, forwards)
    commands = re.findall(r"^  (curl .*?)(?=\n\n|\n*\Z)", text, re.S | re.M)
    assert len(commands) == 2, commands
    outputs = []
    for cmd in commands:
        for port, svc in pf.items():
            scheme = forwards[svc].split("://")[0]
            other = {"http": "https", "https": "http"}[scheme]
            assert f"{other}://127.0.0.1:{port}/" not in cmd, f"NOTES say {other} where {svc} serves {scheme}: {cmd}"
            cmd = cmd.replace(f"{scheme}://127.0.0.1:{port}/", f"{forwards[svc]}/")
        r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True,
                           env={**os.environ, "INFLOW_TOKEN": token}, timeout=30)
        assert r.returncode == 0, f"{cmd}\n{r.stderr}"
        outputs.append(r.stdout)
    return outputs


POINTS = b"home,room=kitchen temp=21.5,hum=40i 1700000000\nhome,room=living\\ room temp=20.25,hum=38i 1700000060\n"
EXPECTED = [
    {"room": "kitchen", "temp": 21.5, "hum": 40, "t": 1700000000},
    {"room": "living room", "temp": 20.25, "hum": 38, "t": 1700000060},
]
QUERY = "SELECT room, temp, hum, CAST(time AS BIGINT) / 1000000000 AS t FROM home ORDER BY room"


def write_and_read(write_url, query_url, token, context=None):
    """Writes POINTS through write_url and reads them back (SQL and InfluxQL)
    through query_url; over HTTPS, trusting only `context`, when given."""
    call = functools.partial(http, context=context)
    status, body = call("POST", f"{write_url}/api/v2/write?bucket=helm_e2e&org=inflow&precision=s", POINTS,
                        {"Authorization": f"Token {token}"})
    assert status == 204, (status, body)
    status, body = call("POST", f"{write_url}/api/v2/write?bucket=helm_e2e&org=inflow", POINTS,
                        {"Authorization": "Token not-the-token"})
    assert status == 401, (status, body)
    status, body = call("POST", f"{query_url}/api/v3/query_sql",
                        json.dumps({"db": "helm_e2e", "q": QUERY, "format": "json"}).encode(),
                        {"Authorization": f"Token {token}", "Content-Type": "application/json"})
    assert status == 200, (status, body)
    rows = json.loads(body)
    assert rows == EXPECTED, rows
    # InfluxQL on the querier, as Grafana asks it.
    q = urllib.parse.urlencode({"db": "helm_e2e", "epoch": "s", "q": "SELECT temp, hum FROM home GROUP BY room"})
    status, body = call("GET", f"{query_url}/query?{q}", None, {"Authorization": f"Token {token}"})
    assert status == 200, (status, body)
    series = json.loads(body)["results"][0]["series"]
    assert [(s["tags"]["room"], s["values"]) for s in series] == [
        (r["room"], [[r["t"], r["temp"], r["hum"]]]) for r in EXPECTED
    ], series


def check_probes(run, pod):
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        status = run.probe(pod, kind)
        assert status == 200, f"{pod.name}: {kind} {pod.container[kind]['httpGet']} answered {status}"


def self_signed(directory):
    """A certificate for 127.0.0.1 and its key (PEM), as a kubernetes.io/tls
    Secret holds them, and an SSL context that trusts only it."""
    cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
    r = run_cmd(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=inflow-test",
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
    assert r.returncode == 0, r.stderr
    return cert.read_text(), key.read_text(), ssl.create_default_context(cafile=str(cert))


def plain_http_refused(url):
    """Whether a plain-text request to a TLS port gets no HTTP answer."""
    try:
        http("GET", url, timeout=3)
    except (OSError, http_client.HTTPException):
        return True
    return False


def service_grpc_address(rendered, service, pod):
    """host:port a Flight client reaches through the Service's grpc port: its
    targetPort on `pod`, which the Service must select."""
    svc = rendered.one("Service", service)
    (port,) = [p for p in svc["spec"]["ports"] if p["name"] == "grpc"]
    assert port.get("appProtocol") == "grpc", port
    assert selects(svc["spec"]["selector"], pod.labels), f"{service} does not select {pod.name}"
    target = container_port(pod.container, port["targetPort"])
    return f"127.0.0.1:{pod.ports[target['name']]}"


def flight_through_services(rendered, router, querier, token, cert_pem):
    """Flight over TLS through the Services' grpc ports: DoPut on the routers,
    DoGet (the InfluxDB 3 ticket) on the queriers; and each refuses the
    other's call, which is why the gRPC Ingress sends DoPut to the routers and
    the rest to the queriers."""
    import pyarrow as pa
    import pyarrow.flight as flight

    def client(service, pod):
        return flight.FlightClient(f"grpc+tls://{service_grpc_address(rendered, service, pod)}",
                                   tls_root_certs=cert_pem.encode())

    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    table = pa.table({"host": pa.array(["a", "b"]), "v": pa.array([1.5, 2.5]),
                      "time": pa.array([1_700_000_000, 1_700_000_060], pa.timestamp("s"))})
    descriptor = flight.FlightDescriptor.for_path("helm_e2e", "flight")
    ticket = flight.Ticket(json.dumps({"database": "helm_e2e", "sql_query": "SELECT host, v FROM flight ORDER BY host",
                                       "query_type": "sql"}).encode())

    writes, queries = client("demo-inflow-router", router), client("demo-inflow-querier", querier)
    writer, reader = writes.do_put(descriptor, table.schema, options=options)
    writer.write_table(table)
    writer.done_writing()
    assert reader.read() is not None, "no acknowledgement of the DoPut"
    writer.close()
    rows = queries.do_get(ticket, options).read_all().to_pylist()
    assert rows == [{"host": "a", "v": 1.5}, {"host": "b", "v": 2.5}], rows

    def refusal(call):
        try:
            call()
        except pa.ArrowNotImplementedError as e:  # gRPC UNIMPLEMENTED
            return str(e)
        raise AssertionError("accepted")

    assert "served by the querier role" in refusal(lambda: writes.do_get(ticket, options).read_all())

    def put_to_querier():
        w, r = queries.do_put(descriptor, table.schema, options=options)
        w.write_table(table)
        w.done_writing()
        r.read()
        w.close()  # the call's status comes with its end

    assert "served by the router role" in refusal(put_to_querier)


def test_rendered_cluster_runs_locally():
    """cluster mode with TLS (tls.existingSecret) and extraArgs: 2 ingesters,
    a router and a querier started from the rendered args and env, on a local
    S3 (moto); every role serves HTTPS with the Secret's certificate and takes
    the extra flags; a point written through the router is read back through
    the querier (HTTP, and Flight through the Services' grpc ports), and every
    process stops cleanly on SIGTERM within its terminationGracePeriodSeconds."""
    assert INFLOW.exists(), f"{INFLOW} missing: build it (cargo build) or set INFLOW_BIN"
    values = merge(CLUSTER, {
        "objectStore": {"s3": {"endpoint": "http://minio.storage.svc:9000"}},
        "tls": {"existingSecret": "inflow-cert"},
        "router": {"autoscaling": {"enabled": False}, "replicas": 1,
                   "extraArgs": ["--max-connections=500", "--http-idle-timeout=2m"]},
        "querier": {"replicas": 1, "extraArgs": ["--query-timeout=1m", "--max-concurrent-queries=4"]},
        "ingester": {"replicas": 2, "extraArgs": ["--compaction-interval=5m"]},
        "server": {"logFormat": "text", "shutdownTimeout": "5s"},
        "ingest": {"snapshotInterval": "2s"},
    })
    rendered = render(values)
    moto, endpoint = start_moto()
    workdir = tempfile.mkdtemp(prefix="inflow-chart-")
    cert, key, trust = self_signed(tempfile.mkdtemp(prefix="tls-", dir=workdir))
    run = LocalRun(rendered, INFLOW, workdir, s3_endpoint=endpoint,
                   user_secrets={("inflow-s3", "AWS_ACCESS_KEY_ID"): "test",
                                 ("inflow-s3", "AWS_SECRET_ACCESS_KEY"): "test",
                                 ("inflow-cert", "tls.crt"): cert, ("inflow-cert", "tls.key"): key})
    ok = False
    try:
        bucket = flag(rendered.one("StatefulSet", "demo-inflow-ingester"), "s3-bucket")[0]
        deadline = time.monotonic() + 30
        while http_status("PUT", f"{endpoint}/{bucket}") != 200:
            assert time.monotonic() < deadline, "moto_server did not come up"
            time.sleep(0.1)
        ingesters = run.component("ingester")
        assert [p.name for p in ingesters] == ["demo-inflow-ingester-0", "demo-inflow-ingester-1"]
        for p in ingesters:
            run.start(p)
        for p in ingesters:
            run.wait_ready(p)
        (router,) = run.component("router")
        (querier,) = run.component("querier")
        for p in (router, querier):
            run.start(p)
        for p in (router, querier):
            run.wait_ready(p)
        for p in ingesters + [router, querier]:
            check_probes(run, p)
            # TLS for real: the Secret's certificate, and no plain text.
            assert run.url(p).startswith("https://"), p.name
            assert http("GET", f"{run.url(p)}/health", context=trust)[0] == 200, p.name
            assert plain_http_refused(run.url(p).replace("https://", "http://") + "/health"), p.name
        # The extra flags were given (and taken: the processes run).
        for p, extra in ((router, "--max-connections=500"), (querier, "--query-timeout=1m"),
                         (ingesters[0], "--compaction-interval=5m")):
            assert extra in p.argv, (p.name, p.argv)
        # The router resolved the headless Service to both ingesters.
        (addrs,) = [a.split("=", 1)[1] for a in router.argv if a.startswith("--ingesters=")]
        assert addrs == ",".join(f"127.0.0.1:{p.ports['grpc']}" for p in ingesters), addrs

        token = rendered.secret_value("demo-inflow-admin-token", "admin-token")
        write_and_read(run.url(router), run.url(querier), token, context=trust)
        flight_through_services(rendered, router, querier, token, cert)
        # Durable on S3 under the ingesters' pod names (INFLOW_INGESTER_ID).
        keys = s3_keys(endpoint, bucket)
        assert any(k.startswith("wal/demo-inflow-ingester-") for k in keys), keys
        assert not list(Path(workdir).rglob("*.parquet")), "data written to local disk, not S3"

        # NOTES.txt's steps, run against the local processes.
        out = run_notes(notes(values), rendered,
                        {"demo-inflow-router": run.url(router), "demo-inflow-querier": run.url(querier)}, token)
        assert "204" in out[0].splitlines()[0], out[0]
        assert '"room":"kitchen"' in out[1], out[1]

        for p in (router, querier) + tuple(ingesters):
            code = run.stop(p)
            assert code == 0, f"{p.name}: exit {code} after SIGTERM:\n{run.tail(p)}"
        keys = s3_keys(endpoint, bucket)
        assert any(k.endswith(".parquet") for k in keys), f"no Parquet after shutdown: {keys}"
        ok = True
    finally:
        if not ok:
            for p in run.pods:
                if p.log:
                    print(run.tail(p), file=sys.stderr)
        run.kill_all()
        moto.kill()
        moto.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def test_rendered_standalone_runs_locally():
    """standalone mode: the one `all` pod from the rendered args, its data
    directory standing for the PVC; write, read, NOTES, SIGTERM; then the same
    PVC in a new pod still has the point."""
    assert INFLOW.exists(), f"{INFLOW} missing: build it (cargo build) or set INFLOW_BIN"
    values = {"server": {"logFormat": "text", "shutdownTimeout": "5s"},
              "standalone": {"extraArgs": ["--max-connections=500", "--query-timeout=1m"]}}
    rendered = render(values)
    workdir = tempfile.mkdtemp(prefix="inflow-chart-")
    run = LocalRun(rendered, INFLOW, workdir)
    (pod,) = run.pods
    ok = False
    try:
        assert pod.name == "demo-inflow-0"
        run.start(pod)
        run.wait_ready(pod)
        check_probes(run, pod)
        token = rendered.secret_value("demo-inflow-admin-token", "admin-token")
        write_and_read(run.url(pod), run.url(pod), token)
        out = run_notes(notes(values), rendered, {"demo-inflow": run.url(pod)}, token)
        assert "204" in out[0].splitlines()[0], out[0]
        # A read token made against the running pod's data directory (README:
        # `kubectl exec ... inflow token create --data-dir ...`) reads at once.
        (data_dir,) = [a.split("=", 1)[1] for a in pod.argv if a.startswith("--data-dir=")]
        made = run_cmd([INFLOW, "token", "create", "--data-dir", data_dir, "--database", "helm_e2e",
                        "--permission", "read"])
        assert made.returncode == 0, made.stderr
        reader = made.stdout.strip().splitlines()[-1]
        status, body = http("POST", f"{run.url(pod)}/api/v3/query_sql",
                            json.dumps({"db": "helm_e2e", "q": QUERY}).encode(),
                            {"Authorization": f"Token {reader}"})
        assert status == 200 and json.loads(body)[:2] == EXPECTED, (status, body)
        code = run.stop(pod)
        assert code == 0, f"exit {code} after SIGTERM:\n{run.tail(pod)}"
        claim = run.claims[(pod.name, "data")]
        assert list(claim.rglob("*.parquet")), "no Parquet on the volume after shutdown"
        # The StatefulSet's next pod gets the same claim.
        run.start(pod)
        run.wait_ready(pod)
        status, body = http("POST", f"{run.url(pod)}/api/v3/query_sql",
                            json.dumps({"db": "helm_e2e", "q": QUERY, "format": "json"}).encode(),
                            {"Authorization": f"Token {token}"})
        assert status == 200 and json.loads(body)[:2] == EXPECTED, (status, body)
        assert run.stop(pod) == 0
        ok = True
    finally:
        if not ok:
            print(run.tail(pod), file=sys.stderr)
        run.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)


def http_status(method, url):
    try:
        return http(method, url, b"", timeout=2)[0]
    except OSError:
        return None


# --- the Grafana dashboard and the alert rules (grafanaDashboard, prometheusRule) --------

DASHBOARD_FILE = CHART / "dashboards" / "inflow.json"
RULES_FILE = CHART / "rules" / "inflow-alerts.yaml"


def test_monitoring_extras_are_off_by_default():
    for values in (None, CLUSTER):
        r = render(values)
        assert not r.all("ConfigMap") and not r.all("PrometheusRule"), kinds(r)


def test_grafana_dashboard_configmap():
    r = render({"grafanaDashboard": {"enabled": True}})
    cm = r.one("ConfigMap", f"{FULLNAME}-dashboard")
    meta = cm["metadata"]
    assert meta["namespace"] == NAMESPACE
    # The label Grafana's sidecar looks for by default, beside the chart's own.
    assert meta["labels"]["grafana_dashboard"] == "1", meta
    assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE, meta
    assert "annotations" not in meta, meta
    # The file whole: a .json key the sidecar loads, the same JSON as in the chart.
    assert list(cm["data"]) == ["inflow.json"]
    assert json.loads(cm["data"]["inflow.json"]) == json.loads(DASHBOARD_FILE.read_text())

    r = render({"grafanaDashboard": {"enabled": True, "labels": {"grafana_dashboard": "inflow", "team": "ops"},
                                     "annotations": {"grafana_folder": "Databases"},
                                     "namespace": "monitoring"}})
    meta = r.one("ConfigMap", f"{FULLNAME}-dashboard")["metadata"]
    assert meta["namespace"] == "monitoring"
    assert (meta["labels"]["grafana_dashboard"], meta["labels"]["team"]) == ("inflow", "ops"), meta
    assert meta["annotations"] == {"grafana_folder": "Databases"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard.yaml"
        path.write_text(template_text({"grafanaDashboard": {"enabled": True}}))
        for version in KUBE_VERSIONS:
            v = validate(path, version)
            assert v.returncode == 0, f"against {version}:\n{v.stdout}{v.stderr}"


def test_prometheus_rule():
    extra = {"alert": "InflowNoWrites", "expr": "sum(rate(inflow_write_lines_total[10m])) == 0",
             "for": "30m", "labels": {"severity": "warning"}}
    r = render(merge(CLUSTER, {"prometheusRule": {"enabled": True, "labels": {"release": "kps"},
                                                  "additionalRules": [extra]}}))
    (rule,) = r.all("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == FULLNAME and rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kps", rule["metadata"]
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    # The chart's file as it is, then the user's rules in a group of their own.
    assert rule["spec"]["groups"] == groups + [{"name": "inflow.additional", "rules": [extra]}]
    alerts = [a for g in groups for a in g["rules"]]
    names = {a["alert"] for a in alerts}
    for wanted in ["InflowIngesterBufferNearFull", "InflowSnapshotsFailing", "InflowWalFlushSlow",
                   "InflowIngesterUnreachable", "InflowLeaseTakeover", "InflowObjectStoreErrors"]:
        assert wanted in names, names
    for a in alerts:
        assert a["labels"]["severity"] in ("warning", "critical"), a
        assert a["annotations"]["summary"] and a["annotations"]["description"], a
        # Prometheus' template syntax survives the chart: .Files.Get does not template.
        assert "{{ $labels." in a["annotations"]["summary"] + a["annotations"]["description"], a
    assert sum("for" in a for a in alerts) >= len(alerts) - 3, "most alerts wait before firing"

    r = render({"prometheusRule": {"enabled": True, "namespace": "monitoring"}})
    (rule,) = r.all("PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring"
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in groups]


def test_schema_rejects_bad_monitoring_values():
    for bad, where in [
        ({"grafanaDashboard": {"enabled": "yes"}}, "/grafanaDashboard/enabled"),
        ({"grafanaDashboard": {"label": {"a": "b"}}}, "label"),
        ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "/grafanaDashboard/labels"),
        ({"grafanaDashboard": {"namespace": "Monitoring"}}, "/grafanaDashboard/namespace"),
        ({"prometheusRule": {"additionalRules": [{"expr": "up == 0"}]}}, "/prometheusRule/additionalRules"),
        ({"prometheusRule": {"additionalRules": [{"alert": "A", "expr": "up == 0", "for": "5 min"}]}},
         "/prometheusRule/additionalRules"),
        ({"prometheusRule": {"rules": []}}, "rules"),
    ]:
        r = helm("template", RELEASE, CHART, values=bad)
        assert r.returncode != 0, f"accepted {bad}"
        assert "don't meet the specifications of the schema" in r.stderr, r.stderr
        assert where in r.stderr, f"{bad}: error does not name {where}:\n{r.stderr}"
    good = {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
            "prometheusRule": {"enabled": True, "additionalRules": [{"record": "inflow:lines:rate5m",
                                                                    "expr": "sum(rate(inflow_write_lines_total[5m]))"}]}}
    assert helm("template", RELEASE, CHART, values=good).returncode == 0
    lint = helm("lint", "--strict", CHART, values=good)
    assert lint.returncode == 0, lint.stdout + lint.stderr


# --- runner ----------------------------------------------------------------------------

def main(argv):
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    if argv:
        tests = [(n, f) for n, f in tests if any(a in n for a in argv)]
    passed = failed = 0
    started = time.monotonic()
    for name, fn in tests:
        t0 = time.monotonic()
        try:
            fn()
        except Exception:  # noqa: BLE001 - every failure is reported the same way
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - t0:.1f}s)")
            print("".join("    " + line for line in traceback.format_exc().splitlines(True)))
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - t0:.1f}s)")
    print(f"chart tests took {time.monotonic() - started:.0f}s")
    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
