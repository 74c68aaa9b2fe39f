#!/usr/bin/env python3
"""Generate crates/protobuf/src/schema.txt: the wire schema of the Kubernetes messages Skiff decodes.

Sources (both already in the cargo registry as workspace dependencies):
  * k8s-pb 0.9.0 (prost code generated from upstream generated.proto): message names, field tags, wire types;
  * k8s-openapi 0.29.0 (v1_33): the JSON name of every field (`"hostIP" => Field::Key_host_ip`).
Only messages reachable from the ROOTS below are written.

Usage: python3 tools/gen_schema.py > src/schema.txt   (from crates/protobuf)
"""
import glob
import os
import re
import sys

REG = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/"))[0]
PB = os.path.join(REG, "k8s-pb-0.9.0/src")
OA = os.path.join(REG, "k8s-openapi-0.29.0/src/v1_33")

# (apiVersion, kind, message). `*` apiVersion: the kind is accepted under every group version.
ROOTS = [
    ("apps/v1", "Deployment", "api.apps.v1.Deployment"),
    ("apps/v1", "ReplicaSet", "api.apps.v1.ReplicaSet"),
    ("v1", "Service", "api.core.v1.Service"),
    ("v1", "Namespace", "api.core.v1.Namespace"),
    ("v1", "ConfigMap", "api.core.v1.ConfigMap"),
    ("v1", "Secret", "api.core.v1.Secret"),
    ("v1", "ServiceAccount", "api.core.v1.ServiceAccount"),
    ("v1", "Pod", "api.core.v1.Pod"),
    ("v1", "Endpoints", "api.core.v1.Endpoints"),
    ("v1", "Event", "api.core.v1.Event"),
    ("v1", "Node", "api.core.v1.Node"),
    ("v1", "Binding", "api.core.v1.Binding"),
    ("discovery.k8s.io/v1", "EndpointSlice", "api.discovery.v1.EndpointSlice"),
    ("coordination.k8s.io/v1", "Lease", "api.coordination.v1.Lease"),
    ("autoscaling/v1", "Scale", "api.autoscaling.v1.Scale"),
    ("policy/v1", "Eviction", "api.policy.v1.Eviction"),
    ("*", "DeleteOptions", "apimachinery.pkg.apis.meta.v1.DeleteOptions"),
]

# Messages rendered specially by the decoder; their fields are still listed (the decoder reads them).
SPECIAL = {
    "apimachinery.pkg.apis.meta.v1.Time",
    "apimachinery.pkg.apis.meta.v1.MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration",
    "apimachinery.pkg.apis.meta.v1.FieldsV1",
    "apimachinery.pkg.runtime.RawExtension",
    "apimachinery.pkg.util.intstr.IntOrString",
    "apimachinery.pkg.api.resource.Quantity",
}


def json_names():
    """(module, lowercase struct) -> {rust field: JSON name}, and rust field -> set of JSON names (fallback)."""
    per_struct, names = {}, {}
    for path in glob.glob(os.path.join(OA, "**/*.rs"), recursive=True):
        src = open(path).read()
        struct = re.search(r"pub struct (\w+)", src)
        module = os.path.relpath(os.path.dirname(path), OA).replace("/", ".")
        pairs = re.findall(r'"([A-Za-z0-9_$-]+)" => Field::Key_(\w+)', src)
        if struct:
            per_struct[(module, struct.group(1).lower())] = {r.rstrip("_"): j for j, r in pairs}
        for js, rust in pairs:
            names.setdefault(rust.rstrip("_"), set()).add(js)
    return per_struct, names


def camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def split_type(text):
    """The Rust type text of a field up to its closing top-level comma."""
    depth = 0
    for i, c in enumerate(text):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            return text[:i]
    return text


def resolve(module, ty):
    """Full message name of the last path in a Rust type (`super::...::X` relative to module)."""
    paths = re.findall(r"((?:super::|::)?[A-Za-z_][\w:]*)", ty)
    skip = {"Option", "Vec", "BTreeMap", "String", "Box", "u8", "i32", "i64", "bool", "f64"}
    last = [p for p in paths if p.split("::")[-1] not in skip][-1]
    parts = module.split(".")
    segs = last.split("::")
    while segs and segs[0] == "super":
        parts.pop()
        segs.pop(0)
    return ".".join(parts + segs)


def parse():
    per_struct, js = json_names()
    messages = {}
    for path in glob.glob(os.path.join(PB, "**/mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), PB).replace("/", ".")
        src = re.sub(r"^\s*///.*\n", "", open(path).read(), flags=re.M)
        for name, body in re.findall(r"pub struct (\w+) \{(.*?)\n\}", src, flags=re.S):
            fields = []
            known = per_struct.get((module, name.lower()), {})
            for attr, rust, rest in re.findall(r"#\[prost\((.*?)\)\]\s*pub (?:r#)?(\w+):(.*?)(?=#\[prost|\Z)", body, re.S):
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                ty = " ".join(split_type(rest).split())
                exact = [c for c in js.get(rust, set()) if c.lower() == rust.replace("_", "").lower()]
                if rust in known:
                    jname = known[rust]
                elif len(exact) == 1:
                    jname = exact[0]
                else:
                    jname = camel(rust)
                m = re.match(r'btree_map = "string, (\w+)"', attr)
                if m:
                    kind = "map:" + m.group(1)
                    target = resolve(module, ty) if m.group(1) == "message" else None
                else:
                    base = attr.split(",")[0].strip()
                    base = "bytes" if base.startswith("bytes") else base
                    kind = base + ("*" if "repeated" in attr else "")
                    target = resolve(module, ty) if base == "message" else None
                fields.append((tag, jname, kind, target))
            messages[f"{module}.{name}"] = fields
    return messages


def main():
    messages = parse()
    seen, order = set(), []
    todo = [m for _, _, m in ROOTS]
    while todo:
        m = todo.pop(0)
        if m in seen:
            continue
        if m not in messages:
            sys.exit(f"unknown message {m}")
        seen.add(m)
        order.append(m)
        todo.extend(t for _, _, _, t in messages[m] if t)
    print("# Generated by tools/gen_schema.py from k8s-pb 0.9.0 (tags, types) and k8s-openapi 0.29.0 (JSON names).")
    print("# Do not edit by hand. Lines: `kind <apiVersion> <Kind> <message>`, `message <name>`,")
    print("# `<tag> <jsonName> <type> [<message>]` with type string|bytes|int32|int64|bool|double|message,")
    print("# a trailing `*` for repeated, or map:string|map:bytes|map:message.")
    for api, kind, msg in ROOTS:
        print(f"kind {api} {kind} {msg}")
    for m in sorted(order):
        print(f"message {m}")
        for tag, jname, kind, target in messages[m]:
            print(f"{tag} {jname} {kind}" + (f" {target}" if target else ""))


main()
