"""Runs the image tests/image/build.sh built as the Helm chart's standalone pod.

`python tests/image/run_image.py IMAGE PODMAN...` (PODMAN: the podman command
line with its storage flags, which build.sh shares with buildah).

The pod is podman-run from the chart's rendered StatefulSet, not from a copy:
the image's own ENTRYPOINT with the container's args verbatim (so it listens
on 0.0.0.0:8086 in its own network namespace, published on a free loopback
port), the pod's user, group and fsGroup, a read-only root filesystem, every
capability dropped, no new privileges, and its volumes as directories (the
PVC, the token Secrets as files of mode defaultMode and group fsGroup, the
/tmp emptyDir). A point written with curl is read back with SQL (exact JSON),
the files on the volume belong to the pod's user, SIGTERM ends it with status
0 and Parquet on the volume. Then the image's default command (no args, no
volume, as `docker run IMAGE`) serves from the image's /var/lib/inflow with
the token it generates there.
"""

import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "helm"))
from local_run import Rendered, container_port, free_port  # noqa: E402

CHART = ROOT / "helm" / "inflow"
RELEASE, NAMESPACE = "demo", "inflow-test"


def helm_binary():
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    found = sorted((ROOT / "target" / "tools").glob("helm-*/helm"))
    assert found, "no Helm: run tests/helm/run.sh once (it installs it) or set HELM"
    return str(found[-1])


def render():
    out = subprocess.run([helm_binary(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE],
                         capture_output=True, text=True, check=True).stdout
    return Rendered(list(yaml.safe_load_all(out)), NAMESPACE)


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def curl(*args):
    r = subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"curl {args}: {r.stderr}"
    return r.stdout


class Podman:
    def __init__(self, argv):
        self.argv = argv

    def __call__(self, *args, check=True, text=True, timeout=120):
        r = subprocess.run([*self.argv, *args], capture_output=True, text=text, timeout=timeout)
        assert not check or r.returncode == 0, f"podman {' '.join(args)}: {r.stderr}"
        return r

    def state(self, name):
        r = self("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
        status, code = r.stdout.split()
        return status, int(code)

    def wait_ready(self, name, url, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, code = self.state(name)
            assert status == "running", f"{name} {status} (exit {code}):\n{self.logs(name)}"
            if http_status(url) == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"{name} not ready after {timeout}s:\n{self.logs(name)}")

    def logs(self, name):
        r = self("logs", "--tail", "30", name, check=False)
        return r.stdout + r.stderr

    def stop(self, name, grace):
        """SIGTERM (the image's default stop signal), as the kubelet sends; the exit code."""
        self("stop", "--time", str(grace), name, timeout=grace + 60)
        status, code = self.state(name)
        assert status == "exited", status
        return code


def limits():
    """`--ulimit` flags: podman's defaults (1048576 files, the host's processes)
    are above what root may set in this sandbox; the host's hard file limit and
    8192 processes are what a container gets here."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    files = 1048576 if files == resource.RLIM_INFINITY else min(files, 1048576)
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=8192:8192"]


def volume_dirs(rendered, spec, container, fs_group, workdir):
    """`-v` flags for the container's volumeMounts, as the kubelet would give
    them (group fsGroup, setgid and group-writable where writable), and the
    local directory of each volume by name."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    flags, dirs = [], {}
    for m in container.get("volumeMounts", []):
        d = Path(tempfile.mkdtemp(prefix=f"{m['name']}-", dir=workdir))
        v = volumes.get(m["name"])
        if v is None or "emptyDir" in v:  # a volumeClaimTemplate (the PVC) or an emptyDir
            os.chown(d, 0, fs_group)
            d.chmod(0o2775 if v is None else 0o2777)
        else:
            sources = v["projected"]["sources"] if "projected" in v else [{"secret": {
                **v["secret"], "name": v["secret"]["secretName"]}}]
            mode = v.get("projected", v.get("secret", {})).get("defaultMode", 0o644)
            for src in sources:
                assert list(src) == ["secret"], f"volume {m['name']}: {sorted(src)} not emulated"
                for item in src["secret"]["items"]:
                    value = rendered.secret_value(src["secret"]["name"], item["key"])
                    assert value is not None, f"Secret {src['secret']['name']} not rendered"
                    f = d / item["path"]
                    f.write_text(value)
                    os.chown(f, 0, fs_group)
                    f.chmod(mode)
            d.chmod(0o755)
        flags += ["--volume", f"{d}:{m['mountPath']}{':ro' if m.get('readOnly') else ''}"]
        dirs[m["name"]] = d
    return flags, dirs


def env_flags(rendered, container, pod_name):
    flags = []
    for e in container.get("env", []):
        if "value" in e:
            value = str(e["value"])
        elif "fieldRef" in e["valueFrom"]:
            value = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            value = rendered.secret_value(ref["name"], ref["key"])
        flags += ["--env", f"{e['name']}={value}"]
    return flags


def write_and_read(base, token, db):
    now = int(time.time())
    status = curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                  f"{base}/api/v2/write?bucket={db}&org=inflow&precision=s",
                  "-H", f"Authorization: Token {token}",
                  "--data-binary", f"home,room=kitchen temp=21.5,hum=40i {now}")
    assert status == "204", f"write answered {status}"
    rows = json.loads(curl("-X", "POST", f"{base}/api/v3/query_sql",
                           "-H", f"Authorization: Token {token}", "-H", "Content-Type: application/json",
                           "--data", json.dumps({"db": db, "format": "json", "q":
                                                 "SELECT room, temp, hum, CAST(time AS BIGINT) / 1000000000 AS t "
                                                 "FROM home"})))
    assert rows == [{"room": "kitchen", "temp": 21.5, "hum": 40, "t": now}], rows
    return rows


def run_as_pod(podman, image, workdir):
    rendered = render()
    (sts,) = [w for w in rendered.all("StatefulSet")
              if w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "standalone"]
    pod_name = f"{sts['metadata']['name']}-0"
    spec = sts["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert "command" not in container, "the chart runs the image's ENTRYPOINT"
    psc, csc = spec["securityContext"], container["securityContext"]
    uid, gid, fs_group = psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"]
    assert psc["runAsNonRoot"] and uid != 0
    assert csc["readOnlyRootFilesystem"] and csc["capabilities"]["drop"] == ["ALL"]
    assert csc["allowPrivilegeEscalation"] is False

    http = container_port(container, "http")["containerPort"]
    port = free_port()
    name = f"inflow-image-test-{os.getpid()}"
    volumes, dirs = volume_dirs(rendered, spec, container, fs_group, workdir)
    flags = ["--name", name, "--detach", "--read-only", "--user", f"{uid}:{gid}", "--group-add", str(fs_group),
             "--cap-drop", "all", "--security-opt", "no-new-privileges",
             "--publish", f"127.0.0.1:{port}:{http}", *limits(), *volumes,
             *env_flags(rendered, container, pod_name)]
    args = [str(a) for a in container["args"]]
    print("pod args:", " ".join(args))
    try:
        podman("run", *flags, image, *args)
        probe = container["readinessProbe"]["httpGet"]
        podman.wait_ready(name, f"http://127.0.0.1:{port}{probe['path']}")
        token = rendered.secret_value(f"{sts['metadata']['name']}-admin-token", "admin-token")
        rows = write_and_read(f"http://127.0.0.1:{port}", token, "image_e2e")
        print("pod: wrote with curl, read with SQL:", json.dumps(rows))
        code = podman.stop(name, spec.get("terminationGracePeriodSeconds", 30))
        assert code == 0, f"exit {code} after SIGTERM:\n{podman.logs(name)}"
        files = list(dirs["data"].rglob("*"))
        assert any(p.suffix == ".parquet" for p in files), f"no Parquet on the volume: {files}"
        owners = {(p.stat().st_uid, p.stat().st_gid) for p in files}
        assert {o[0] for o in owners} == {uid}, f"volume files owned by {owners}, not the pod's user {uid}"
        print(f"pod: exit 0 on SIGTERM; {len(files)} files on the volume, owners {sorted(owners)}")
    finally:
        podman("rm", "--force", name, check=False)


def run_default(podman, image):
    """`docker run IMAGE`: the image's CMD, its data in the image's /var/lib/inflow."""
    port = free_port()
    name = f"inflow-image-default-{os.getpid()}"
    try:
        podman("run", "--name", name, "--detach", "--publish", f"127.0.0.1:{port}:8086", *limits(), image)
        podman.wait_ready(name, f"http://127.0.0.1:{port}/ready")
        # The token the server generated into its data directory (a tar stream on stdout).
        tar = podman("cp", f"{name}:/var/lib/inflow/admin-token", "-", text=False).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            (member,) = t.getmembers()
            assert (member.uid, member.gid) == (65532, 65532), (member.uid, member.gid)
            token = t.extractfile(member).read().decode().strip()
        rows = write_and_read(f"http://127.0.0.1:{port}", token, "default_e2e")
        print("default: wrote with curl, read with SQL:", json.dumps(rows))
        code = podman.stop(name, 30)
        assert code == 0, f"exit {code} after SIGTERM:\n{podman.logs(name)}"
    finally:
        podman("rm", "--force", name, check=False)


def main(argv):
    image, podman = argv[0], Podman(argv[1:])
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    print("image config:", json.dumps({k: config.get(k) for k in ("User", "WorkingDir", "Entrypoint", "Cmd")}))
    with tempfile.TemporaryDirectory(prefix="inflow-image-") as workdir:
        os.chmod(workdir, 0o755)
        run_as_pod(podman, image, workdir)
    run_default(podman, image)


if __name__ == "__main__":
    main(sys.argv[1:])
