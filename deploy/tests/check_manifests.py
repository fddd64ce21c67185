#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests, driven by scripts/validate-manifests.

Every check prints one line, `ok <what>` or `FAIL <what>: <why>`; the exit status is 1 when any
check failed. Subcommands:

  k8s VERSION FILE...            every object against the Kubernetes VERSION OpenAPI schemas (strict:
                                 unknown fields are errors); ENIConfigs against the CRD's schema
  eniconfig CRD accept|reject FILE...
                                 ENIConfig objects against CRD's openAPIV3Schema, expected outcome
  crd CRD                        structural-schema and printer-column rules the API server enforces
  same-crd A B                   the two files hold the same CRD (deploy/crd.yaml and the chart's copy)
  same-daemonset A B             the two DaemonSets have the same name, selector and pod spec
  startup FILE                   ipamd survives its wait for the API server (a startup probe of at
                                 least 4 minutes before liveness), and the init container, privileged,
                                 loosens the primary interface's rp_filter
  env FILE CONTAINER NAME=VALUE|NAME=- ...
                                 the (init) container's env holds NAME once with VALUE, or not at all (-)
  eniconfigs FILE NAME=SUBNET[:SG,SG...] ...
                                 FILE holds exactly these ENIConfigs, with these subnets and groups
  object FILE KIND/NAME PATH=JSON ...
                                 the object's value at the dotted PATH equals the JSON value (PATH steps:
                                 keys, list indexes, key[X] for the item of list key named X)

ENIConfigs cannot be checked by kubernetes-validate (it only knows built-in kinds), hence the
translation of the CRD's OpenAPI v3 schema into JSON Schema here (jsonschema is a dependency of
kubernetes-validate). Unknown fields are refused, as `kubectl apply`'s default strict field
validation does.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

CRD_API_VERSION = "apiextensions.k8s.io/v1"
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PRINTER_COLUMN_TYPES = {"integer", "number", "string", "boolean", "date"}

failures = 0


def ok(what: str) -> None:
    print(f"ok {what}")


def fail(what: str, why: str) -> None:
    global failures
    failures += 1
    print(f"FAIL {what}: {why}")


def documents(path: str) -> Iterator[dict]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    for doc in yaml.safe_load_all(text):
        if doc:
            yield doc


def describe(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


def load_crd(path: str) -> dict:
    docs = [d for d in documents(path) if d.get("kind") == "CustomResourceDefinition"]
    if len(docs) != 1:
        raise SystemExit(f"FAIL {path}: expected exactly one CustomResourceDefinition, found {len(docs)}")
    return docs[0]


# --- ENIConfig objects against the CRD ---------------------------------------------------------


def to_json_schema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes structural schema) -> JSON Schema, refusing unknown fields."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "description", "format"):
            continue
        if key in ("properties",):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = to_json_schema(value) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        else:
            out[key] = copy.deepcopy(value)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def list_map_errors(schema: Any, value: Any, path: str) -> list[str]:
    """x-kubernetes-list-type: map -> the key fields are unique across items."""
    errors: list[str] = []
    if not isinstance(schema, dict):
        return errors
    if schema.get("x-kubernetes-list-type") == "map" and isinstance(value, list):
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = set()
        for item in value:
            if isinstance(item, dict):
                k = tuple(item.get(key) for key in keys)
                if k in seen:
                    errors.append(f"{path}: duplicate entry for {dict(zip(keys, k))}")
                seen.add(k)
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                errors += list_map_errors(sub, value[name], f"{path}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += list_map_errors(schema["items"], item, f"{path}[{i}]")
    return errors


def eniconfig_errors(crd: dict, doc: dict) -> list[str]:
    spec = crd["spec"]
    served = {f"{spec['group']}/{v['name']}": v for v in spec["versions"] if v.get("served")}
    version = served.get(doc.get("apiVersion"))
    if version is None:
        return [f"apiVersion {doc.get('apiVersion')!r} is not served (served: {', '.join(served)})"]
    if doc.get("kind") != spec["names"]["kind"]:
        return [f"kind {doc.get('kind')!r} is not {spec['names']['kind']}"]
    errors = []
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        errors.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
    if spec["scope"] == "Cluster" and "namespace" in meta:
        errors.append("metadata.namespace is set on a cluster-scoped object")
    raw = version["schema"]["openAPIV3Schema"]
    schema = to_json_schema(raw)
    # apiVersion, kind (checked above) and metadata are the API server's business, implicit in
    # every CRD schema (the generated one does not spell them out).
    props = schema.setdefault("properties", {})
    props["metadata"] = {"type": "object"}
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path) or "(root)"
        errors.append(f"{where}: {err.message}")
    errors += list_map_errors(raw, doc, "")
    return errors


def cmd_eniconfig(crd_path: str, expect: str, files: list[str]) -> None:
    crd = load_crd(crd_path)
    for path in files:
        for doc in documents(path):
            what = f"{path}: {describe(doc)} {'accepted' if expect == 'accept' else 'rejected'}"
            errors = eniconfig_errors(crd, doc)
            if expect == "accept" and errors:
                fail(what, "; ".join(errors))
            elif expect == "reject" and not errors:
                fail(what, "the CRD schema accepts it")
            else:
                ok(what + (f" ({errors[0]})" if errors else ""))


# --- built-in kinds with kubernetes-validate ------------------------------------------------------


def cmd_k8s(version: str, files: list[str], crd_path: str | None) -> None:
    import kubernetes_validate.utils as kv

    crd = load_crd(crd_path) if crd_path else None
    for path in files:
        count = 0
        for doc in documents(path):
            count += 1
            what = f"{path}: {describe(doc)}"
            if crd is not None and doc.get("apiVersion", "").startswith(crd["spec"]["group"] + "/"):
                errors = eniconfig_errors(crd, doc)
                if errors:
                    fail(what + " against the CRD", "; ".join(errors))
                else:
                    ok(what + " against the CRD")
                continue
            try:
                kv.validate(doc, version, strict=True)
                ok(f"{what} against Kubernetes {version} (strict)")
            except kv.ValidationError as e:
                where = ".".join(str(p) for p in e.path) or "(root)"
                fail(what, f"{where}: {e.message}")
            except kv.SchemaNotFoundError as e:
                fail(what, e.message)
            except Exception as e:  # a broken document: say which one
                fail(what, f"{type(e).__name__}: {e}")
        if count == 0:
            fail(path, "no Kubernetes objects in it")


# --- the CRD itself --------------------------------------------------------------------------------


def structural_errors(node: Any, path: str, root: bool = False) -> list[str]:
    errors: list[str] = []
    if not isinstance(node, dict):
        return [f"{path}: not a schema object"]
    if "type" not in node and not (
        node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    ):
        errors.append(f"{path}: no type (a structural schema needs one at every level)")
    if node.get("x-kubernetes-list-type") == "map":
        keys = node.get("x-kubernetes-list-map-keys") or []
        items = node.get("items") or {}
        if not keys:
            errors.append(f"{path}: list-type map without list-map-keys")
        for key in keys:
            if key not in (items.get("required") or []) and "default" not in (items.get("properties") or {}).get(key, {}):
                errors.append(f"{path}: list-map key {key!r} is neither required nor defaulted")
    for name in node.get("required") or []:
        if name not in (node.get("properties") or {}):
            errors.append(f"{path}: required {name!r} is not among the properties")
    for name, sub in (node.get("properties") or {}).items():
        if root and name == "metadata":
            extra = set(sub) - {"type", "properties", "description"}
            if extra or set((sub.get("properties") or {})) - {"name", "generateName"}:
                errors.append(f"{path}.metadata: only type and name/generateName may be specified")
        errors += structural_errors(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        errors += structural_errors(node["items"], f"{path}[]")
    return errors


def cmd_crd(path: str) -> None:
    crd = load_crd(path)
    what = f"{path}: CRD"
    errors = []
    if crd.get("apiVersion") != CRD_API_VERSION:
        errors.append(f"apiVersion is {crd.get('apiVersion')}, expected {CRD_API_VERSION}")
    spec = crd["spec"]
    names = spec["names"]
    if crd["metadata"]["name"] != f"{names['plural']}.{spec['group']}":
        errors.append(f"metadata.name must be {names['plural']}.{spec['group']}")
    storage = [v["name"] for v in spec["versions"] if v.get("storage")]
    if len(storage) != 1:
        errors.append(f"exactly one storage version expected, got {storage}")
    for v in spec["versions"]:
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errors.append(f"version {v['name']}: no openAPIV3Schema")
            continue
        errors += structural_errors(schema, f"{v['name']}", root=True)
        if "status" in (schema.get("properties") or {}) and "status" not in (v.get("subresources") or {}):
            errors.append(f"version {v['name']}: a status schema without the status subresource")
        for col in v.get("additionalPrinterColumns") or []:
            if col.get("type") not in PRINTER_COLUMN_TYPES:
                errors.append(f"printer column {col.get('name')}: type {col.get('type')!r}")
            if not str(col.get("jsonPath", "")).startswith("."):
                errors.append(f"printer column {col.get('name')}: jsonPath must start with '.'")
    if errors:
        fail(what, "; ".join(errors))
    else:
        ok(f"{what} is structural, printer columns valid")


def cmd_same_crd(a: str, b: str) -> None:
    if load_crd(a) == load_crd(b):
        ok(f"{b} is the same CRD as {a}")
    else:
        fail(f"{b} vs {a}", f"the CRDs differ: copy {a} to {b}")


def daemonset(path: str) -> dict:
    docs = [d for d in documents(path) if d.get("kind") == "DaemonSet"]
    if len(docs) != 1:
        raise SystemExit(f"FAIL {path}: expected exactly one DaemonSet, found {len(docs)}")
    return docs[0]


def first_difference(x: Any, y: Any, path: str = "") -> str | None:
    if isinstance(x, dict) and isinstance(y, dict):
        for key in sorted(set(x) | set(y), key=str):
            if key not in x or key not in y:
                return f"{path}.{key} only in {'the first' if key in x else 'the second'}"
            found = first_difference(x[key], y[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(x, list) and isinstance(y, list):
        for i, (p, q) in enumerate(zip(x, y)):
            found = first_difference(p, q, f"{path}[{i}]")
            if found:
                return found
        return None if len(x) == len(y) else f"{path}: {len(x)} vs {len(y)} items"
    return None if x == y else f"{path}: {x!r} vs {y!r}"


def cmd_same_daemonset(a: str, b: str) -> None:
    da, db = daemonset(a), daemonset(b)
    diffs = []
    for label, get in (
        ("metadata.name", lambda d: d["metadata"]["name"]),
        ("metadata.namespace", lambda d: d["metadata"].get("namespace")),
        ("spec.selector", lambda d: d["spec"]["selector"]),
        ("spec.updateStrategy", lambda d: d["spec"].get("updateStrategy")),
        ("spec.template.metadata.labels", lambda d: d["spec"]["template"]["metadata"].get("labels")),
        ("spec.template.spec", lambda d: d["spec"]["template"]["spec"]),
    ):
        found = first_difference(get(da), get(db), label)
        if found:
            diffs.append(found)
    if diffs:
        fail(f"{b} vs {a}", f"the DaemonSets differ: {'; '.join(diffs)}")
    else:
        ok(f"{b} renders the same DaemonSet as {a}")


def cmd_env(path: str, container: str, expectations: list[str]) -> None:
    ds = daemonset(path)
    pod = ds["spec"]["template"]["spec"]
    matches = [c for c in pod.get("containers", []) + pod.get("initContainers", []) if c["name"] == container]
    if len(matches) != 1:
        fail(f"{path}: container {container}", "not found")
        return
    env = matches[0].get("env") or []
    for expectation in expectations:
        name, _, want = expectation.partition("=")
        entries = [e for e in env if e["name"] == name]
        if want == "-":
            if entries:
                fail(f"{path}: {container} {name} not set", f"it is set to {entries[0].get('value')!r}")
            else:
                ok(f"{path}: {container} {name} not set")
        elif len(entries) != 1 or entries[0].get("value") != want:
            got = [e.get("value", e.get("valueFrom")) for e in entries]
            fail(f"{path}: {container} {name}={want}", f"found {got}")
        else:
            ok(f"{path}: {container} {name}={want}")


def cmd_eniconfigs(path: str, expectations: list[str]) -> None:
    found = {}
    for doc in documents(path):
        if doc.get("kind") == "ENIConfig":
            spec = doc.get("spec") or {}
            found[doc["metadata"]["name"]] = (spec.get("subnet"), spec.get("securityGroups") or [])
    wanted = {}
    for e in expectations:
        name, _, rest = e.partition("=")
        subnet, _, groups = rest.partition(":")
        wanted[name] = (subnet, [g for g in groups.split(",") if g])
    what = f"{path}: ENIConfigs {', '.join(expectations)}"
    if found == wanted:
        ok(what)
    else:
        fail(what, f"found {found}")


def walk(value: Any, path: str) -> Any:
    for step in path.split("."):
        key, _, item = step.partition("[")
        if item:
            items = [v for v in value[key] if isinstance(v, dict) and v.get("name") == item.rstrip("]")]
            if len(items) != 1:
                raise KeyError(f"{len(items)} items of {key} named {item.rstrip(']')!r}")
            value = items[0]
        elif isinstance(value, list):
            value = value[int(step)]
        else:
            value = value[step]
    return value


def cmd_object(path: str, which: str, expectations: list[str]) -> None:
    import json

    kind, _, name = which.partition("/")
    objects = [d for d in documents(path) if d.get("kind") == kind and (d.get("metadata") or {}).get("name") == name]
    if len(objects) != 1:
        fail(f"{path}: {which}", f"{len(objects)} such objects")
        return
    for e in expectations:
        where, _, want = e.partition("=")
        what = f"{path}: {which} {where} = {want}"
        try:
            got = walk(objects[0], where)
        except (KeyError, IndexError, ValueError, TypeError) as err:
            fail(what, f"no such path: {err}")
            continue
        if got == json.loads(want):
            ok(what)
        else:
            fail(what, f"found {json.dumps(got)}")


# ipamd's bounded wait for the API server (crates/cluster/src/connect.rs) is about three minutes.
API_SERVER_WAIT_SECONDS = 240


def cmd_startup(path: str) -> None:
    pod = daemonset(path)["spec"]["template"]["spec"]
    node = [c for c in pod.get("containers", []) if c["name"] == "aws-node"]
    if len(node) != 1:
        fail(f"{path}: container aws-node", "not found")
        return
    probe = node[0].get("startupProbe")
    if not probe:
        fail(f"{path}: aws-node startupProbe", "missing: the liveness probe would kill ipamd while it waits for the API server")
    else:
        budget = probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        if budget < API_SERVER_WAIT_SECONDS:
            fail(f"{path}: aws-node startupProbe", f"allows {budget} s, less than the {API_SERVER_WAIT_SECONDS} s ipamd may wait for the API server")
        else:
            ok(f"{path}: aws-node startupProbe allows {budget} s before liveness")
    init = [c for c in pod.get("initContainers", []) if c["name"] == "aws-vpc-cni-init"]
    if len(init) != 1:
        fail(f"{path}: init container aws-vpc-cni-init", "not found")
        return
    privileged = (init[0].get("securityContext") or {}).get("privileged") is True
    sets = "--primary-rp-filter" in (init[0].get("command") or [])
    if privileged and sets:
        ok(f"{path}: the privileged init container sets the primary interface's rp_filter")
    else:
        fail(f"{path}: init container rp_filter", f"privileged={privileged}, --primary-rp-filter={sets}: /proc/sys is read-only otherwise")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "k8s":
        crd = None
        if args[:1] == ["--crd"]:
            crd, args = args[1], args[2:]
        cmd_k8s(args[0], args[1:], crd)
    elif cmd == "eniconfig":
        cmd_eniconfig(args[0], args[1], args[2:])
    elif cmd == "crd":
        cmd_crd(args[0])
    elif cmd == "same-crd":
        cmd_same_crd(args[0], args[1])
    elif cmd == "same-daemonset":
        cmd_same_daemonset(args[0], args[1])
    elif cmd == "env":
        cmd_env(args[0], args[1], args[2:])
    elif cmd == "eniconfigs":
        cmd_eniconfigs(args[0], args[1:])
    elif cmd == "object":
        cmd_object(args[0], args[1], args[2:])
    elif cmd == "startup":
        cmd_startup(args[0])
    else:
        print(f"unknown subcommand {cmd!r}\n{__doc__}", file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
