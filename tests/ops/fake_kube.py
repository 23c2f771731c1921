"""A recording fake Kubernetes API server, enough for `helm install` and `helm upgrade`:
discovery, create/get/list/update/delete of namespaced objects, and a Job watch that reports
the Job complete only if everything its pod needs (ServiceAccount, SecretProviderClass,
ConfigMap) existed when it was created, as a real cluster would run it. Every request is
recorded in order, so a test can assert what helm created, in which order, and that the
install finished (the release Secret ends `deployed`).

Plain HTTP on 127.0.0.1; standard library only.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

# (group/version, resource, kind, namespaced)
RESOURCES = [
    ("v1", "configmaps", "ConfigMap", True),
    ("v1", "secrets", "Secret", True),
    ("v1", "services", "Service", True),
    ("v1", "serviceaccounts", "ServiceAccount", True),
    ("v1", "pods", "Pod", True),
    ("v1", "namespaces", "Namespace", False),
    ("apps/v1", "deployments", "Deployment", True),
    ("batch/v1", "jobs", "Job", True),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    ("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", True),
    ("secrets-store.csi.x-k8s.io/v1", "secretproviderclasses", "SecretProviderClass", True),
]


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.log: list[tuple[str, str, str]] = []  # (verb, resource, name)
        self.job_failures: list[str] = []
        self.release_status: dict[str, str] = {}  # release Secret name -> its status label
        self.lock = threading.Lock()
        self.objects[("v1", "namespaces", "", "payments")] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "payments", "uid": "ns-payments", "resourceVersion": "1"},
            "status": {"phase": "Active"},
        }
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKube:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self) -> str:
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
            f"clusters: [{{name: fake, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: fake, user: {token: fake}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: payments}}]\n"
        )

    def _admit(self, ns: str, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        meta.setdefault("namespace", ns)
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(len(self.log))
        meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
        if resource == "jobs":
            obj["status"] = self._job_status(ns, obj)
        return obj

    # --- the Job "runs" -------------------------------------------------------------------------
    def _job_status(self, ns: str, job: dict[str, Any]) -> dict[str, Any]:
        pod = job["spec"]["template"]["spec"]
        missing = []
        sa = pod.get("serviceAccountName")
        if sa and ("v1", "serviceaccounts", ns, sa) not in self.objects:
            missing.append(f"serviceaccount/{sa}")
        for volume in pod.get("volumes", []):
            spc = (volume.get("csi") or {}).get("volumeAttributes", {}).get("secretProviderClass")
            if spc and ("secrets-store.csi.x-k8s.io/v1", "secretproviderclasses", ns, spc) not in (
                self.objects
            ):
                missing.append(f"secretproviderclass/{spc}")
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                name = (source.get("configMapRef") or {}).get("name")
                if name and ("v1", "configmaps", ns, name) not in self.objects:
                    missing.append(f"configmap/{name}")
        if missing:
            # A real cluster would leave the pod Pending / ContainerCreating: never complete.
            self.job_failures.append(f"{job['metadata']['name']}: missing {', '.join(missing)}")
            return {"active": 1}
        return {
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        }

    # --- HTTP -------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        kube = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _route(self) -> tuple[str, str, str | None, str | None, dict[str, list[str]]]:
                """(group/version, resource, namespace, name, query)."""
                url = urlparse(self.path)
                parts = [p for p in url.path.split("/") if p]
                query = parse_qs(url.query)
                if parts[:1] == ["api"]:
                    gv, rest = parts[1], parts[2:]
                else:
                    gv, rest = "/".join(parts[1:3]), parts[3:]
                ns = None
                if rest[:1] == ["namespaces"] and len(rest) >= 3:
                    ns, rest = rest[1], rest[2:]
                resource = rest[0] if rest else ""
                name = rest[1] if len(rest) > 1 else None
                return gv, resource, ns, name, query

            def do_GET(self) -> None:
                path = urlparse(self.path).path
                if path == "/openapi/v2":
                    # helm validates hooks against the server's OpenAPI (protobuf): an empty
                    # document (swagger "2.0", no definitions) makes every kind pass; the
                    # schemas are checked offline by `make deploy-check`.
                    body = b"\x0a\x032.0\x12\x0a\x0a\x04fake\x12\x02v1"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return None
                if path.startswith("/openapi"):
                    return self._send(404, _status(404, "no OpenAPI document here"))
                if path == "/version":
                    return self._send(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
                if path == "/api":
                    return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
                if path == "/apis":
                    groups = sorted({gv for gv, *_ in RESOURCES if "/" in gv})
                    return self._send(
                        200,
                        {
                            "kind": "APIGroupList",
                            "apiVersion": "v1",
                            "groups": [
                                {
                                    "name": gv.split("/")[0],
                                    "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                                    "preferredVersion": {
                                        "groupVersion": gv,
                                        "version": gv.split("/")[1],
                                    },
                                }
                                for gv in groups
                            ],
                        },
                    )
                gv, resource, ns, name, query = self._route()
                if not resource:  # /api/v1, /apis/apps/v1: resource list
                    return self._send(
                        200,
                        {
                            "kind": "APIResourceList",
                            "groupVersion": gv,
                            "resources": [
                                {
                                    "name": r,
                                    "singularName": k.lower(),
                                    "namespaced": namespaced,
                                    "kind": k,
                                    "verbs": [
                                        "create",
                                        "delete",
                                        "get",
                                        "list",
                                        "patch",
                                        "update",
                                        "watch",
                                    ],
                                }
                                for g, r, k, namespaced in RESOURCES
                                if g == gv
                            ],
                        },
                    )
                watch = query.get("watch", ["false"])[0] in {"true", "1"}
                with kube.lock:
                    kube.log.append(("watch" if watch else "get", resource, name or ""))
                    if name:
                        obj = kube.objects.get((gv, resource, ns or "", name))
                        if obj is None:
                            return self._send(404, _status(404, f"{resource} {name} not found"))
                        return self._send(200, obj)
                    items = [
                        o
                        for (g, r, n, _), o in kube.objects.items()
                        if g == gv
                        and r == resource
                        and (ns is None or n == ns)
                        and _matches(o, query)
                    ]
                if watch:
                    kind = next(k for g, r, k, _ in RESOURCES if g == gv and r == resource)
                    initial = query.get("sendInitialEvents", ["false"])[0] == "true"
                    return self._watch(items, gv, kind, initial)
                return self._send(
                    200,
                    {
                        "kind": "List",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": "1"},
                        "items": items,
                    },
                )

            def _watch(
                self, items: list[dict[str, Any]], gv: str, kind: str, initial: bool
            ) -> None:
                """A watch that reports the current objects. Helm 4's status watcher asks for a
                streaming list (sendInitialEvents=true): the objects as ADDED events, then a
                BOOKMARK marking the end of the initial events, without which its informers
                never sync and every resource stays "Unknown" until the timeout."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                events = [{"type": "ADDED" if initial else "MODIFIED", "object": o} for o in items]
                if initial:
                    with kube.lock:
                        version = str(len(kube.log))
                    events.append(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "apiVersion": gv,
                                "kind": kind,
                                "metadata": {
                                    "resourceVersion": version,
                                    "annotations": {"k8s.io/initial-events-end": "true"},
                                },
                            },
                        }
                    )
                for event in events:
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                time.sleep(1)
                self.wfile.write(b"0\r\n\r\n")

            def _protobuf(self, verb: str, resource: str) -> bool:
                """Helm writes its release records (Secrets) as protobuf: kept opaque, echoed
                back as the server would; the name is read from the bytes."""
                if "protobuf" not in (self.headers.get("Content-Type") or ""):
                    return False
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = re.search(rb"sh\.helm\.release\.v1\.[a-z0-9.-]+?\.v[0-9]+", raw)
                name = match.group().decode() if match else "?"
                status = re.search(rb"status\x12.([a-z-]+)", raw, re.S)
                with kube.lock:
                    kube.log.append((verb, resource, name))
                    if status:
                        kube.release_status[name] = status.group(1).decode()
                self.send_response(201 if verb == "create" else 200)
                self.send_header("Content-Type", "application/vnd.kubernetes.protobuf")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return True

            def do_POST(self) -> None:
                gv, resource, ns, _name, _query = self._route()
                if self._protobuf("create", resource):
                    return
                obj = self._body()
                name = obj["metadata"]["name"]
                key = (gv, resource, ns or "", name)
                with kube.lock:
                    kube.log.append(("create", resource, name))
                    if key in kube.objects:
                        return self._send(409, _status(409, f"{resource} {name} exists"))
                    kube.objects[key] = kube._admit(ns or "", resource, obj)
                return self._send(201, obj)

            def do_PUT(self) -> None:
                gv, resource, ns, name, _query = self._route()
                if self._protobuf("update", resource):
                    return
                obj = self._body()
                with kube.lock:
                    kube.log.append(("update", resource, name or ""))
                    obj["metadata"]["resourceVersion"] = str(len(kube.log))
                    kube.objects[(gv, resource, ns or "", name or "")] = obj
                return self._send(200, obj)

            def do_PATCH(self) -> None:
                gv, resource, ns, name, _query = self._route()
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                apply = "apply-patch" in (self.headers.get("Content-Type") or "")
                patch = json.loads(raw) if raw.lstrip()[:1] == b"{" else yaml.safe_load(raw)
                with kube.lock:
                    key = (gv, resource, ns or "", name or "")
                    obj = kube.objects.get(key)
                    if obj is None and apply:  # server-side apply creates (helm 4)
                        kube.log.append(("create", resource, name or ""))
                        obj = kube._admit(ns or "", resource, patch)
                        kube.objects[key] = obj
                        return self._send(201, obj)
                    kube.log.append(("patch", resource, name or ""))
                    if obj is None:
                        return self._send(404, _status(404, "not found"))
                    _merge(obj, patch)
                    obj["metadata"]["resourceVersion"] = str(len(kube.log))
                return self._send(200, obj)

            def do_DELETE(self) -> None:
                gv, resource, ns, name, _query = self._route()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))  # delete options
                with kube.lock:
                    kube.log.append(("delete", resource, name or ""))
                    obj = kube.objects.pop((gv, resource, ns or "", name or ""), None)
                if obj is None:
                    return self._send(404, _status(404, "not found"))
                return self._send(200, _status(200, "deleted"))

        return Handler

    def created(self) -> list[tuple[str, str]]:
        return [(resource, name) for verb, resource, name in self.log if verb == "create"]


def _status(code: int, message: str) -> dict[str, Any]:
    reason = {404: "NotFound", 409: "AlreadyExists"}.get(code, "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _matches(obj: dict[str, Any], query: dict[str, list[str]]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for selector in query.get("labelSelector", []):
        for term in filter(None, selector.split(",")):
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
    for selector in query.get("fieldSelector", []):
        for term in filter(None, selector.split(",")):
            key, _, value = term.partition("=")
            if key == "metadata.name" and obj["metadata"]["name"] != value:
                return False
    return True


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value
