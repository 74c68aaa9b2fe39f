"""Drives a Skiff API server with the official Python client: CRUD, selectors, patch, watch, errors.

Usage: python_client.py KUBECONFIG. Prints "all checks passed" and exits 0 when every check holds.
"""
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()

ns = client.V1Namespace(metadata=client.V1ObjectMeta(name="py"))
core.create_namespace(ns)
assert core.read_namespace("py").status.phase == "Active"

svc = client.V1Service(
    metadata=client.V1ObjectMeta(name="web", labels={"app": "web"}),
    spec=client.V1ServiceSpec(type="NodePort", selector={"app": "web"}, ports=[client.V1ServicePort(port=80, target_port=8080)]),
)
created = core.create_namespaced_service("py", svc)
assert created.spec.cluster_ip.startswith("10.43."), created.spec.cluster_ip
assert 30000 <= created.spec.ports[0].node_port <= 32767
assert created.spec.external_traffic_policy == "Cluster"

listed = core.list_namespaced_service("py", label_selector="app=web")
assert [s.metadata.name for s in listed.items] == ["web"]
assert core.list_namespaced_service("py", label_selector="app!=web").items == []

dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx")]),
        ),
    ),
)
apps.create_namespaced_deployment("py", dep)
scale = apps.read_namespaced_deployment_scale("web", "py")
assert scale.spec.replicas == 2 and scale.status.selector == "app=web", scale
apps.patch_namespaced_deployment_scale("web", "py", {"spec": {"replicas": 4}})
assert apps.read_namespaced_deployment("web", "py").spec.replicas == 4

events = []

def watcher():
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, "py", timeout_seconds=10):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()

t = threading.Thread(target=watcher)
t.start()
time.sleep(0.5)
core.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"a": "1"}))
core.patch_namespaced_config_map("c", "py", {"data": {"a": "2"}})
core.delete_namespaced_config_map("c", "py")
t.join(15)
assert events == [("ADDED", "c"), ("MODIFIED", "c"), ("DELETED", "c")], events

try:
    core.create_namespaced_service("py", client.V1Service(metadata=client.V1ObjectMeta(name="Bad_Name"), spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)])))
    raise SystemExit("an invalid name was accepted")
except ApiException as e:
    assert e.status == 422, e
    assert "metadata.name" in e.body, e.body

try:
    core.read_namespaced_service("missing", "py")
    raise SystemExit("a missing service was found")
except ApiException as e:
    assert e.status == 404, e

core.delete_namespaced_service("web", "py")
print("all checks passed")
