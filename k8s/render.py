#!/usr/bin/env python3
"""Render a kustomization of k8s/ the way `kubectl kustomize` does, for the features dfs uses.

    k8s/render.py k8s/overlays/small            YAML on stdout (objects separated by ---)
    k8s/render.py --json k8s/overlays/large     a JSON list

kubectl is not a Debian 12 package, so the test suite renders with this instead and, where kubectl
happens to be installed, checks that both agree. Supported, exactly as kustomize v5 does them, and
refused otherwise (an unknown field is an error, never silently ignored):

  resources          files (one or more YAML documents) and directories holding a kustomization
  namespace          set on every namespaced object, and on ServiceAccount subjects of
                     (Cluster)RoleBindings that name the old namespace or none
  configMapGenerator envs (KEY=VALUE files), files (key = file name), literals; behavior create or
                     merge (an overlay adding keys to a base's generator); a name suffix made from a
                     hash of the content (kustomize's algorithm), and every reference from a pod
                     template (envFrom, env valueFrom, volumes, projected volumes) renamed to match
  patches            JSON 6902 patches (add, remove, replace, test) on a target {kind, name}
  replicas           {name, count} on Deployments and StatefulSets
  images             {name, newName, newTag, digest} on every container and init container

Python 3 with PyYAML (Debian's python3-yaml).
"""

import copy
import hashlib
import json
import os
import sys

try:
    import yaml
except ImportError:  # an interpreter without PyYAML (pyenv, venv): Debian's has it
    if os.path.realpath(sys.executable) != "/usr/bin/python3" and os.access("/usr/bin/python3", os.X_OK) \
            and not os.environ.get("DFS_RENDER_REEXEC") and __name__ == "__main__":
        os.environ["DFS_RENDER_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "patches", "replicas",
                "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}

# Internal bookkeeping on generated objects, removed before output.
_ORIGINAL = "__dfs_render_original_name"
_HASHED = "__dfs_render_hash"


class RenderError(Exception):
    pass


def load_yaml_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _pod_spec(obj):
    """The pod spec of a workload (None for other kinds)."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    if kind in WORKLOADS:
        return (spec.get("template") or {}).get("spec")
    return None


def _containers(pod):
    return list(pod.get("initContainers") or []) + list(pod.get("containers") or [])


# ---- configMapGenerator -------------------------------------------------------------------------

def _parse_env_file(path):
    data = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise RenderError("%s:%d: not KEY=VALUE" % (path, lineno))
            k, v = line.split("=", 1)
            data[k] = v
    return data


def _generator_data(gen, base_dir):
    data = {}
    for env in gen.get("envs") or []:
        data.update(_parse_env_file(os.path.join(base_dir, env)))
    for f in gen.get("files") or []:
        key, _, path = f.partition("=") if "=" in f else (os.path.basename(f), None, f)
        with open(os.path.join(base_dir, path), encoding="utf-8") as fh:
            data[key] = fh.read()
    for lit in gen.get("literals") or []:
        if "=" not in lit:
            raise RenderError("literal %r is not KEY=VALUE" % lit)
        k, v = lit.split("=", 1)
        data[k] = v
    return data


def _go_json(value):
    """json.Marshal of Go: sorted keys, no spaces, <, > and & escaped."""
    s = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def configmap_hash(data):
    """kustomize's name suffix for a ConfigMap (api/hasher): sha256 of the JSON encoding of
    {kind, name, data}, 10 hex digits with 0, 1, 3, a, e replaced so that the suffix never looks
    like a number or a word. The name is encoded empty: kustomize v5 (as in kubectl 1.32) hashes the
    generated object before its name is looked up, and the suffixes here match what it prints."""
    enc = _go_json({"data": data, "kind": "ConfigMap", "name": ""})
    h = hashlib.sha256(enc.encode("utf-8")).hexdigest()[:10]
    return h.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


# ---- patches --------------------------------------------------------------------------------------

def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise RenderError("JSON pointer must start with /: %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    cur = doc
    for p in parts:
        if isinstance(cur, list):
            cur = cur[int(p)]
        elif isinstance(cur, dict):
            if p not in cur:
                raise RenderError("path element %r not found" % p)
            cur = cur[p]
        else:
            raise RenderError("cannot descend into %r" % (cur,))
    return cur


def apply_json6902(obj, ops):
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op.get("path", ""))
        if not parts:
            raise RenderError("patching the whole object is not supported")
        parent = _walk(obj, parts[:-1])
        last = parts[-1]
        if kind == "test":
            if _walk(obj, parts) != op.get("value"):
                raise RenderError("test failed at %s" % op["path"])
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                if last not in parent:
                    raise RenderError("remove: %s not found" % op["path"])
                del parent[last]
        elif kind in ("add", "replace"):
            value = copy.deepcopy(op.get("value"))
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                elif kind == "add":
                    parent.insert(int(last), value)
                else:
                    parent[int(last)] = value
            else:
                if kind == "replace" and last not in parent:
                    raise RenderError("replace: %s not found" % op["path"])
                parent[last] = value
        else:
            raise RenderError("JSON patch op %r is not supported" % kind)


# ---- one kustomization ---------------------------------------------------------------------------

def _kustomization_file(d):
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    raise RenderError("no kustomization in %s" % d)


def _build(d):
    kfile = _kustomization_file(d)
    (k,) = load_yaml_documents(kfile)
    unknown = set(k) - KNOWN_FIELDS
    if unknown:
        raise RenderError("%s: fields this renderer does not implement: %s" % (kfile, sorted(unknown)))
    if k.get("kind", "Kustomization") != "Kustomization":
        raise RenderError("%s: not a Kustomization" % kfile)

    objs = []
    for res in k.get("resources") or []:
        p = os.path.normpath(os.path.join(d, res))
        if os.path.isdir(p):
            objs.extend(_build(p))
        elif os.path.isfile(p):
            objs.extend(load_yaml_documents(p))
        else:
            raise RenderError("%s: resource %s not found" % (kfile, res))

    for gen in k.get("configMapGenerator") or []:
        unknown = set(gen) - {"name", "envs", "files", "literals", "behavior"}
        if unknown:
            raise RenderError("%s: configMapGenerator fields not implemented: %s" % (kfile, sorted(unknown)))
        behavior = gen.get("behavior", "create")
        data = _generator_data(gen, d)
        existing = [o for o in objs if o.get("kind") == "ConfigMap" and o.get(_ORIGINAL) == gen["name"]]
        if behavior == "create":
            if existing:
                raise RenderError("%s: ConfigMap %s generated twice" % (kfile, gen["name"]))
            objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]},
                         "data": data, _ORIGINAL: gen["name"], _HASHED: True})
        elif behavior in ("merge", "replace"):
            if len(existing) != 1:
                raise RenderError("%s: no ConfigMap %s to %s" % (kfile, gen["name"], behavior))
            if behavior == "merge":
                existing[0]["data"].update(data)
            else:
                existing[0]["data"] = data
        else:
            raise RenderError("%s: behavior %r" % (kfile, behavior))

    for p in k.get("patches") or []:
        unknown = set(p) - {"target", "patch", "path"}
        if unknown:
            raise RenderError("%s: patch fields not implemented: %s" % (kfile, sorted(unknown)))
        text = p.get("patch")
        if text is None:
            with open(os.path.join(d, p["path"]), encoding="utf-8") as f:
                text = f.read()
        ops = yaml.safe_load(text)
        if not isinstance(ops, list):
            raise RenderError("%s: only JSON 6902 patches (a list of operations) are implemented" % kfile)
        target = p.get("target") or {}
        if set(target) - {"kind", "name"}:
            raise RenderError("%s: patch targets select by kind and name only" % kfile)
        hits = [o for o in objs if o.get("kind") == target.get("kind") and
                o.get("metadata", {}).get("name") == target.get("name")]
        if not hits:
            raise RenderError("%s: patch target %s/%s not found" % (kfile, target.get("kind"), target.get("name")))
        for o in hits:
            apply_json6902(o, ops)

    for r in k.get("replicas") or []:
        hits = [o for o in objs if o.get("kind") in ("Deployment", "StatefulSet", "ReplicaSet") and
                o["metadata"]["name"] == r["name"]]
        if not hits:
            raise RenderError("%s: replicas: no workload %s" % (kfile, r["name"]))
        for o in hits:
            o["spec"]["replicas"] = int(r["count"])

    for img in k.get("images") or []:
        for o in objs:
            pod = _pod_spec(o)
            for c in _containers(pod) if pod else []:
                ref = c.get("image", "")
                name = ref.split("@")[0]
                name = name.rsplit(":", 1)[0] if ":" in name.split("/")[-1] else name
                if name != img["name"]:
                    continue
                new = img.get("newName", name)
                if img.get("digest"):
                    c["image"] = "%s@%s" % (new, img["digest"])
                else:
                    tag = img.get("newTag", ref[len(name) + 1:] if ref.startswith(name + ":") else "")
                    c["image"] = "%s:%s" % (new, tag) if tag else new

    ns = k.get("namespace")
    if ns:
        for o in objs:
            kind = o.get("kind")
            meta = o.setdefault("metadata", {})
            old = meta.get("namespace")
            if kind not in CLUSTER_SCOPED:
                meta["namespace"] = ns
            if kind in ("RoleBinding", "ClusterRoleBinding"):
                for s in o.get("subjects") or []:
                    if s.get("kind") == "ServiceAccount" and s.get("namespace") in (None, "default", old):
                        s["namespace"] = ns
    return objs


def _rename_configmaps(objs):
    names = {}
    for o in objs:
        if o.get("kind") == "ConfigMap" and o.get(_HASHED):
            orig = o[_ORIGINAL]
            new = "%s-%s" % (orig, configmap_hash(o["data"]))
            o["metadata"]["name"] = new
            names[orig] = new
    for o in objs:
        pod = _pod_spec(o)
        if not pod:
            continue
        for c in _containers(pod):
            for ef in c.get("envFrom") or []:
                ref = ef.get("configMapRef")
                if ref and ref.get("name") in names:
                    ref["name"] = names[ref["name"]]
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and ref.get("name") in names:
                    ref["name"] = names[ref["name"]]
        for v in pod.get("volumes") or []:
            if v.get("configMap", {}).get("name") in names:
                v["configMap"]["name"] = names[v["configMap"]["name"]]
            for src in (v.get("projected") or {}).get("sources") or []:
                if (src.get("configMap") or {}).get("name") in names:
                    src["configMap"]["name"] = names[src["configMap"]["name"]]
    for o in objs:
        o.pop(_ORIGINAL, None)
        o.pop(_HASHED, None)


def render(directory):
    """The objects of the kustomization in `directory`, as dicts, in resource order."""
    objs = _build(os.path.abspath(directory))
    _rename_configmaps(objs)
    return objs


def main(argv):
    as_json = "--json" in argv
    args = [a for a in argv if a != "--json"]
    if len(args) != 1:
        print("usage: k8s/render.py [--json] DIR", file=sys.stderr)
        return 2
    try:
        objs = render(args[0])
    except (RenderError, OSError, yaml.YAMLError) as e:
        print("render: %s" % e, file=sys.stderr)
        return 1
    if as_json:
        json.dump(objs, sys.stdout, indent=1)
        print()
    else:
        print("---\n".join(yaml.safe_dump(o, sort_keys=True) for o in objs), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
