"""Tests of the Kubernetes manifests (k8s/): they render, every object is valid against the Kubernetes
OpenAPI schemas, and what they say matches what the binaries do.

Rendering: k8s/render.py (the kustomize features k8s/ uses; kubectl is not a Debian 12 package). Where
kubectl is installed, `kubectl kustomize` must produce exactly the same objects.

Schemas: the npm package kubernetes-models (the Kubernetes API's OpenAPI definitions compiled to
validators), installed by tools/k8s-validator into a cache folder from the npm registry the first time
and offline afterwards; k8s/validate/validate.js also reports fields the schemas do not know.

Consistency, by running the real binaries: every flag in a container's arguments is in the binary's
--help; the daemons start with the manifests' own arguments (settings from the ConfigMap, the pod's
downward-API variables, paths moved under a temp folder, listen ports moved to free ones) and answer the
health service names the probes ask for; ports, Service selectors and target ports, the headless
Service and the advertised DNS name, volumes and mounts, writable paths under a read-only root, config
map references, the zone init script (against a stand-in API server), the client Job's commands
(against a local cluster), the benchmark Job's flags, and the Containerfile's packages against the
libraries the binaries link.
"""

import grpcinspect  # noqa: I100  (first: may re-run this file under Debian's python3, which has PyYAML too)

import copy
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time

import harness

HERE = os.path.dirname(os.path.abspath(__file__))


def repo_root():
    """The folder holding k8s/ and tools/: the runfiles tree under Bazel, else the checkout."""
    for base in harness._runfiles_dirs() + [os.path.dirname(HERE)]:
        if os.path.isfile(os.path.join(base, "k8s", "render.py")):
            return base
    raise AssertionError("k8s/render.py not found (add //k8s to the test's data)")


ROOT = repo_root()
sys.path.insert(0, os.path.join(ROOT, "k8s"))
import render  # noqa: E402

TREES = ["base", "overlays/small", "overlays/large", "jobs"]
DEPLOYABLE = ["overlays/small", "overlays/large"]
DAEMONS = ("dfs-metadata", "dfs-storage")


def rendered(tree):
    return render.render(os.path.join(ROOT, "k8s", tree))


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def named(objs, kind, name):
    (o,) = [x for x in objs if x["kind"] == kind and x["metadata"]["name"] == name]
    return o


def pod_spec(obj):
    return render._pod_spec(obj)


def containers(obj):
    pod = pod_spec(obj)
    return render._containers(pod) if pod else []


def help_flags(exe):
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out))


def flag_name(arg):
    return arg.split("=", 1)[0]


def expand(text, env):
    """The kubelet's $(VAR) expansion ($$ escapes); an undefined reference is left as it is."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def container_env(objs, c, extra):
    """The environment a container gets: envFrom ConfigMaps, then env (values or downward API via
    `extra`)."""
    env = {}
    for ef in c.get("envFrom") or []:
        cm = named(objs, "ConfigMap", ef["configMapRef"]["name"])
        env.update(cm["data"])
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        else:
            ref = e["valueFrom"].get("fieldRef", {}).get("fieldPath")
            env[e["name"]] = extra[ref]
    return env


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_file(path, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().endswith("\n"):
            return open(path).read().strip()
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s before it was ready" % (proc.args[0], proc.returncode))
        time.sleep(0.02)
    raise AssertionError("%s not ready after %d s" % (proc.args[0], timeout))


class Render(harness.TestCase):
    def test_every_tree_renders_and_matches_kubectl(self):
        kubectl = shutil.which("kubectl")
        # kustomize does not follow the symlinks Bazel's runfiles are made of: give it real files.
        real = self.tmp("k8s")
        shutil.copytree(os.path.join(ROOT, "k8s"), real, symlinks=False)
        for tree in TREES:
            objs = rendered(tree)
            self.assertTrue(objs, tree)
            keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
            self.assertEqual(len(keys), len(set(keys)), "%s: an object twice" % tree)
            for o in objs:
                if o["kind"] not in render.CLUSTER_SCOPED:
                    self.assertEqual(o["metadata"].get("namespace"), "dfs", (tree, o["kind"]))
            if not kubectl:
                continue
            p = subprocess.run([kubectl, "kustomize", os.path.join(real, tree)], capture_output=True,
                               text=True, timeout=60)
            if p.returncode != 0 and "unknown command" in p.stderr:
                continue
            self.assertEqual(p.returncode, 0, p.stderr)
            theirs = [o for o in render.yaml.safe_load_all(p.stdout) if o]
            key = lambda o: (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])  # noqa: E731
            self.assertEqual({key(o): o for o in objs}, {key(o): o for o in theirs}, tree)
        if not kubectl:
            print("k8s_test: kubectl not installed: rendered with k8s/render.py only", flush=True)

    def test_renderer_refuses_what_it_does_not_implement(self):
        d = self.tmp("k")
        os.makedirs(d)
        with open(os.path.join(d, "kustomization.yaml"), "w") as f:
            f.write("resources: []\ncommonLabels: {a: b}\n")
        with self.assertRaises(render.RenderError):
            render.render(d)
        # kustomize's ConfigMap name suffix (checked against kubectl 1.32's kustomize v5.5).
        self.assertEqual(render.configmap_hash({"a": "b"}), "4h2mbtbbt6")


class Schemas(harness.TestCase):
    def validate(self, objs):
        folder = subprocess.run([os.path.join(ROOT, "tools", "k8s-validator")], capture_output=True, text=True,
                                timeout=600)
        if folder.returncode != 0:
            self.fail("tools/k8s-validator could not install the validator (it needs the npm registry the first "
                      "time):\n" + folder.stderr[-2000:])
        self._n = getattr(self, "_n", 0) + 1
        path = self.tmp("objects-%d.json" % self._n)
        with open(path, "w") as f:
            json.dump(objs, f)
        env = dict(os.environ, NODE_PATH=os.path.join(folder.stdout.strip(), "node_modules"))
        p = subprocess.run(["node", os.path.join(ROOT, "k8s", "validate", "validate.js"), path], capture_output=True,
                           text=True, env=env, timeout=120)
        try:
            report = json.loads(p.stdout)
        except ValueError:
            self.fail("validator output is not JSON (rc %d): %s %s" % (p.returncode, p.stdout[-500:], p.stderr[-2000:]))
        return p.returncode, report

    def test_every_object_is_valid(self):
        for tree in DEPLOYABLE + ["jobs"]:
            objs = rendered(tree)
            rc, report = self.validate(objs)
            bad = [o for o in report["objects"] if o["errors"] or o["unknown"]]
            self.assertEqual(bad, [], tree)
            self.assertEqual(rc, 0)
            self.assertEqual(len(report["objects"]), len(objs))
        print("k8s_test: schemas of kubernetes-models %s" % report["kubernetesModels"], flush=True)

    def test_the_validator_catches_mistakes(self):
        objs = rendered("overlays/small")
        ss = copy.deepcopy(named(objs, "StatefulSet", "dfs-storage"))
        c = ss["spec"]["template"]["spec"]["containers"][0]
        c["readinesProbe"] = c.pop("readinessProbe")  # a misspelt field
        c["livenessProbe"]["periodSeconds"] = "10"  # a string for an integer
        del ss["spec"]["selector"]  # a required field
        rc, report = self.validate([ss])
        self.assertEqual(rc, 1)
        (o,) = report["objects"]
        self.assertIn("/spec/template/spec/containers/0/readinesProbe", o["unknown"])
        self.assertTrue(any("livenessProbe/periodSeconds" in e for e in o["errors"]), o["errors"])
        self.assertTrue(any("selector" in e for e in o["errors"]), o["errors"])


class Consistency(harness.TestCase):
    def setUp(self):
        self.bins = harness.find_binaries()
        self.flags = {n: help_flags(self.bins[n]) for n in ("dfs-metadata", "dfs-storage", "dfs")}

    def test_flags_exist_and_references_resolve(self):
        for tree in DEPLOYABLE + ["jobs"]:
            objs = rendered(tree)
            configmaps = {o["metadata"]["name"] for o in by_kind(objs, "ConfigMap")}
            for w in [o for o in objs if pod_spec(o)]:
                pod = pod_spec(w)
                for c in containers(w):
                    what = "%s %s/%s" % (tree, w["metadata"]["name"], c["name"])
                    self.assertRegex(c["image"], r"^dfs(-bench)?:", what)
                    for ef in c.get("envFrom") or []:
                        self.assertIn(ef["configMapRef"]["name"], configmaps, what)
                    env = container_env(objs, c, {"metadata.name": "p-0", "metadata.namespace": "dfs",
                                                  "spec.nodeName": "n"})
                    for arg in (c.get("command") or []) + (c.get("args") or []):
                        for ref in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                            self.assertIn(ref, env, "%s: $(%s) is not defined" % (what, ref))
                    cmd = c.get("command") or [""]
                    prog = os.path.basename(cmd[0])
                    if cmd[-1:] == ["/etc/dfs/scripts/metadata.sh"]:
                        prog = "dfs-metadata"  # the wrapper execs it with --replica-id added
                    if prog in DAEMONS:
                        for arg in c.get("args") or []:
                            self.assertTrue(arg.startswith("--"), what)
                            self.assertIn(flag_name(arg), self.flags[prog], "%s: %s" % (what, arg))
                    self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"], what)
                    self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"], what)
                self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                self.assertGreater(pod["securityContext"]["runAsUser"], 0)
                for v in pod.get("volumes") or []:
                    if "configMap" in v:
                        self.assertIn(v["configMap"]["name"], configmaps)

    def test_ports_probes_services_volumes(self):
        for tree in DEPLOYABLE:
            objs = rendered(tree)
            services = {o["metadata"]["name"]: o for o in by_kind(objs, "Service")}
            for ss in by_kind(objs, "StatefulSet"):
                name = ss["metadata"]["name"]
                tmpl = ss["spec"]["template"]
                labels = tmpl["metadata"]["labels"]
                self.assertTrue(set(ss["spec"]["selector"]["matchLabels"].items()) <= set(labels.items()))
                (c,) = tmpl["spec"]["containers"]
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                args = dict(a.split("=", 1) for a in c["args"])
                listen = int(args["--listen"].rsplit(":", 1)[1])
                self.assertEqual(ports["grpc"], listen, name)
                self.assertEqual(ports["metrics"], int(args["--metrics-listen"].rsplit(":", 1)[1]), name)
                svc_name = {"dfs-metadata": "dfs.v1.Metadata", "dfs-storage": "dfs.v1.Storage"}[name]
                # HTTP probes on the metrics port (the gRPC port speaks TLS).
                self.assertEqual(c["readinessProbe"]["httpGet"],
                                 {"port": "metrics", "path": "/healthz?service=" + svc_name})
                self.assertEqual(c["livenessProbe"]["httpGet"],
                                 {"port": "metrics", "path": "/healthz?service=liveness"})
                self.assertEqual(c["startupProbe"]["httpGet"]["port"], "metrics")
                # Every link over TLS, with the tokens from their Secret.
                for flag in ("--tls-cert", "--tls-key", "--tls-ca"):
                    self.assertTrue(args[flag].startswith("/etc/dfs/tls/"), (name, flag))
                self.assertNotIn("--insecure", args)
                mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
                self.assertEqual((mounts["tls"], mounts["tokens"]), ("/etc/dfs/tls", "/etc/dfs/tokens"))
                if name == "dfs-storage":
                    # A storage pod holds the enrollment token only, never the admin one.
                    vol = next(v for v in tmpl["spec"]["volumes"] if v["name"] == "tokens")
                    self.assertEqual(vol["secret"]["items"], [{"key": "bootstrap", "path": "bootstrap"}])
                    self.assertEqual(args["--token-file"], "/etc/dfs/tokens/bootstrap")
                # Calls in flight get --grace-ms; Kubernetes must not SIGKILL before that.
                env = container_env(objs, c, {"metadata.name": "p-0", "metadata.namespace": "dfs"})
                grace_ms = int(expand(args["--grace-ms"], env))
                self.assertLess(grace_ms / 1000 + 5, tmpl["spec"]["terminationGracePeriodSeconds"], name)
                self.assertIn("requests", c["resources"])
                self.assertIn("limits", c["resources"])
                # The governing Service selects exactly these pods and targets their named ports.
                svc = services[ss["spec"]["serviceName"]]
                self.assertTrue(set(svc["spec"]["selector"].items()) <= set(labels.items()))
                for sp in svc["spec"]["ports"]:
                    self.assertEqual(ports[sp["targetPort"]], sp["port"], (name, sp))
                # Mounts: each names a volume or a claim template; what the daemon writes is on one.
                vols = {v["name"] for v in tmpl["spec"].get("volumes") or []}
                claims = {t["metadata"]["name"] for t in ss["spec"]["volumeClaimTemplates"]}
                mounts = {}
                for cc in containers(ss):
                    for m in cc.get("volumeMounts") or []:
                        self.assertIn(m["name"], vols | claims, (name, cc["name"], m))
                        if cc is c:
                            mounts[m["mountPath"]] = m
                for flag in ("--db", "--data"):
                    if flag in args:
                        at = [p for p in mounts if args[flag].startswith(p.rstrip("/") + "/")]
                        self.assertTrue(at, "%s %s is not on a volume" % (name, flag))
                        self.assertFalse(mounts[at[0]].get("readOnly"), (name, flag))
                        self.assertIn(mounts[at[0]]["name"], claims, "%s %s must be on the PVC" % (name, flag))
                if "--zone-file" in args:
                    self.assertTrue(any(args["--zone-file"].startswith(p + "/") for p in mounts))
            # The gateway: its Service exposes the REST API and the S3 API on the ports it serves.
            gw = named(objs, "Deployment", "dfs-gateway")
            (gc,) = gw["spec"]["template"]["spec"]["containers"]
            gports = {p["name"]: p["containerPort"] for p in gc["ports"]}
            gargs = dict(a.split("=", 1) for a in gc["args"])
            self.assertEqual(gports["http"], int(gargs["--listen"].rsplit(":", 1)[1]))
            self.assertEqual(gports["s3"], int(gargs["--s3-listen"].rsplit(":", 1)[1]))
            # It holds the gateway's token only, which the metadata service registers.
            vol = next(v for v in gw["spec"]["template"]["spec"]["volumes"] if v["name"] == "tokens")
            self.assertEqual(vol["secret"]["items"], [{"key": "gateway", "path": "gateway"}])
            self.assertEqual(gargs["--token-file"], "/etc/dfs/tokens/gateway")
            gsvc = services["dfs-gateway"]
            self.assertEqual({p["name"]: gports[p["targetPort"]] for p in gsvc["spec"]["ports"]},
                             {"http": 8080, "s3": 9000})
            # S3 secrets derive from the master key the metadata service keeps beside its catalog.
            ms = named(objs, "StatefulSet", "dfs-metadata")
            margs = dict(a.split("=", 1) for a in ms["spec"]["template"]["spec"]["containers"][0]["args"])
            self.assertEqual(os.path.dirname(margs["--s3-key-file"]), os.path.dirname(margs["--db"]))
            # Storage: a headless Service gives every pod the name it advertises.
            st = named(objs, "StatefulSet", "dfs-storage")
            hs = services[st["spec"]["serviceName"]]
            self.assertEqual(hs["spec"]["clusterIP"], "None")
            args = dict(a.split("=", 1) for a in st["spec"]["template"]["spec"]["containers"][0]["args"])
            self.assertEqual(args["--advertise"], "$(POD_NAME).%s.$(POD_NAMESPACE).svc:%s" % (
                hs["metadata"]["name"], args["--listen"].rsplit(":", 1)[1]))
            self.assertEqual(args["--listen"], "[::]:7100")
            meta_svc = services["dfs-metadata-peers"]
            port = next(p["port"] for p in meta_svc["spec"]["ports"] if p["name"] == "grpc")
            self.assertEqual(args["--metadata"], ",".join(
                "dfs-metadata-%d.dfs-metadata-peers.$(POD_NAMESPACE).svc:%d" % (i, port) for i in range(3)))
            aff = st["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
            self.assertTrue(aff, "storage pods must avoid sharing a machine")
            # The zone: the init container writes the file the storage container reads.
            init = st["spec"]["template"]["spec"]["initContainers"][0]
            self.assertIn(args["--zone-file"], init["command"])
            self.assertEqual(init["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName")
            sa = named(objs, "ServiceAccount", st["spec"]["template"]["spec"]["serviceAccountName"])
            crb = named(objs, "ClusterRoleBinding", "dfs-storage-node-reader")
            self.assertIn({"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "dfs"},
                          crb["subjects"])
            role = named(objs, "ClusterRole", crb["roleRef"]["name"])
            self.assertEqual(role["rules"], [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}])
            # Budget and policies select the dfs pods and open only their ports.
            pdb = named(objs, "PodDisruptionBudget", "dfs-storage")
            self.assertEqual(pdb["spec"]["selector"]["matchLabels"], st["spec"]["selector"]["matchLabels"])
            for np in by_kind(objs, "NetworkPolicy"):
                target = named(objs, "StatefulSet", np["metadata"]["name"])
                tl = target["spec"]["template"]["metadata"]["labels"]
                self.assertTrue(set(np["spec"]["podSelector"]["matchLabels"].items()) <= set(tl.items()))
                cports = {p["containerPort"] for p in target["spec"]["template"]["spec"]["containers"][0]["ports"]}
                for rule in np["spec"]["ingress"]:
                    self.assertTrue(rule["from"], "a rule open to everyone")
                    for p in rule["ports"]:
                        self.assertIn(p["port"], cports)

    def test_daemons_run_with_the_manifests_arguments(self):
        objs = rendered("overlays/small")
        root = self.tmp("pod")
        procs = []
        # The Secrets the pods mount: TLS from tools/devca (as cert-manager would lay it out) and
        # the two tokens.
        tls, tokens = root + "/etc/dfs/tls", root + "/etc/dfs/tokens"
        ca_dir = self.tmp("ca")
        subprocess.run([os.path.join(ROOT, "tools", "devca"), ca_dir, "dfs-metadata.dfs.svc", "*.dfs-storage.dfs.svc"],
                       check=True, capture_output=True)
        os.makedirs(tls)
        os.makedirs(tokens)
        for src, dst in (("server.pem", "tls.crt"), ("server.key", "tls.key"), ("ca.pem", "ca.crt")):
            shutil.copy(os.path.join(ca_dir, src), os.path.join(tls, dst))
        import secrets
        for name in ("admin", "bootstrap", "gateway"):
            with open(os.open(os.path.join(tokens, name), os.O_WRONLY | os.O_CREAT, 0o440), "w") as f:
                f.write("dfs1.%s.%s\n" % (secrets.token_hex(8), secrets.token_hex(32)))
        with open(os.path.join(tokens, "admin")) as f:
            admin_token = f.read().strip()
        ca = os.path.join(tls, "ca.crt")

        def cleanup():
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self.addCleanup(cleanup)

        def move(arg, ports):
            """A manifest argument made runnable here: paths under root, listen ports free ones."""
            name, _, value = arg.partition("=")
            if name in ("--listen", "--metrics-listen"):
                port = free_port()
                ports[name] = port
                return "%s=127.0.0.1:%d" % (name, port)
            if value.startswith("/"):
                return "%s=%s%s" % (name, root, value)
            return arg

        def launch(ss_name, extra_env, fix=None):
            ss = named(objs, "StatefulSet", ss_name)
            c = ss["spec"]["template"]["spec"]["containers"][0]
            env = container_env(objs, c, extra_env)
            ports = {}
            args = [move(expand(a, env), ports) for a in c["args"]]
            if fix:
                args = [fix(a, ports) for a in args]
            for m in c["volumeMounts"]:
                os.makedirs(root + m["mountPath"], exist_ok=True)
            ready = os.path.join(root, ss_name + ".ready")
            if c["command"][-1:] == ["/etc/dfs/scripts/metadata.sh"]:
                # What the wrapper does for pod dfs-metadata-0 (its own test: metadata_script_...).
                cmd = [self.bins["dfs-metadata"], "--replica-id", "1"] + args + ["--ready-file", ready]
            else:
                cmd = [self.bins[c["command"][0]]] + args + ["--ready-file", ready]
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(ready + ".log", "ab"),
                                 stderr=subprocess.STDOUT)
            procs.append(p)
            return p, ready, ports, c

        raft_port = free_port()

        def one_replica(a, ports):
            # The three pods' names do not resolve here: this replica alone, on loopback, with the
            # manifest's flags (a one-member --peers, its Raft listener on a free port).
            if a.startswith("--peers="):
                return "--peers=1=127.0.0.1:%d=127.0.0.1:%d" % (raft_port, ports["--listen"])
            if a.startswith("--raft-listen="):
                return "--raft-listen=127.0.0.1:%d" % raft_port
            return a
        meta, meta_ready, meta_ports, meta_c = launch("dfs-metadata", {"metadata.name": "dfs-metadata-0",
                                                                       "metadata.namespace": "dfs"},
                                                      fix=one_replica)
        meta_addr = wait_file(meta_ready, meta)
        self.assertEqual(meta_addr, "127.0.0.1:%d" % meta_ports["--listen"])
        # The zone file the init container would write.
        os.makedirs(root + "/var/run/dfs", exist_ok=True)
        with open(root + "/var/run/dfs/zone", "w") as f:
            f.write("zone-a\n")
        node, node_ready, node_ports, node_c = launch(
            "dfs-storage", {"metadata.name": "dfs-storage-0", "metadata.namespace": "dfs"},
            fix=lambda a, ports: "--metadata=" + meta_addr if a.startswith("--metadata=") else a)
        advertised = wait_file(node_ready, node)
        self.assertEqual(advertised, "dfs-storage-0.dfs-storage.dfs.svc:7100")
        node_addr = "127.0.0.1:%d" % node_ports["--listen"]
        # The probes: HTTP on the metrics port, each path answers SERVING (what gRPC health says
        # over TLS for the same service name).
        for addr, ports, c in ((meta_addr, meta_ports, meta_c), (node_addr, node_ports, node_c)):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = c[probe]["httpGet"]
                self.assertEqual(get["port"], "metrics")
                status, _, body = grpcinspect_scrape("127.0.0.1:%d" % ports["--metrics-listen"], get["path"])
                self.assertEqual((status, body), (200, "SERVING\n"), (addr, probe))
                service = get["path"].split("service=", 1)[1]
                self.assertEqual(grpcinspect.health_check(addr, service, tls_ca=ca), "SERVING", (addr, probe))
            # Plaintext to a TLS port gets nowhere.
            import grpc
            with self.assertRaises(grpc.RpcError):
                grpcinspect.health_check(addr, "liveness", timeout=2)
        # The node registered with the advertised name and the zone from the file.
        pool = grpcinspect.Reflection(meta_addr, tls_ca=ca).pool_for("dfs.v1.Metadata")
        resp = grpcinspect.call_unary(meta_addr, pool, "dfs.v1.Metadata.ListNodes",
                                      grpcinspect.message_class(pool, "dfs.v1.ListNodesRequest")(),
                                      token=admin_token, tls_ca=ca)
        self.assertEqual([(n.address, n.zone) for n in resp.nodes], [(advertised, "zone-a")])
        for ports in (meta_ports, node_ports):
            _, _, body = grpcinspect_scrape("127.0.0.1:%d" % ports["--metrics-listen"])
            grpcinspect.parse_prometheus(body)
        self.assertTrue(os.path.exists(root + "/var/lib/dfs/catalog.db"))
        self.assertTrue(os.path.exists(root + "/var/lib/dfs/data/node.id"))
        # The node enrolled with the Secret's enrollment token and keeps a token of its own on
        # its volume, readable by it alone; the catalog knows it as that node's.
        self.assertEqual(os.stat(root + "/var/lib/dfs/data/node.token").st_mode & 0o777, 0o600)
        resp = grpcinspect.call_unary(meta_addr, pool, "dfs.v1.Metadata.ListTokens",
                                      grpcinspect.message_class(pool, "dfs.v1.ListTokensRequest")(),
                                      token=admin_token, tls_ca=ca)
        with open(root + "/var/lib/dfs/data/node.id") as f:
            node_id = f.read().strip()
        self.assertEqual([t.node_id for t in resp.tokens if t.node_id], [node_id])
        for p in (node, meta):
            p.terminate()
            self.assertEqual(p.wait(30), 0)

    def test_zone_script_against_a_stand_in_api(self):
        objs = rendered("overlays/small")
        script = named(objs, "ConfigMap", next(o["metadata"]["name"] for o in by_kind(objs, "ConfigMap")
                                               if o["metadata"]["name"].startswith("dfs-scripts-")))["data"]["zone.sh"]
        d = self.tmp("zone")
        sa = os.path.join(d, "sa")
        os.makedirs(os.path.join(d, "bin"))
        os.makedirs(sa)
        for n, v in (("token", "t0k3n"), ("ca.crt", "CA")):
            with open(os.path.join(sa, n), "w") as f:
                f.write(v)
        # A stand-in curl: checks the request it is given, prints a node object like the API's.
        curl = os.path.join(d, "bin", "curl")
        node = {"kind": "Node", "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1",
                                                                      "topology.kubernetes.io/zone": "eu-west-1b"},
                                             "managedFields": [{"fieldsV1": {"f:metadata": {"f:labels": {
                                                 "f:topology.kubernetes.io/zone": {}}}}}]}}
        with open(curl, "w") as f:
            f.write("#!/bin/sh\n"
                    'case "$*" in *"Authorization: Bearer t0k3n"*"https://10.0.0.1:443/api/v1/nodes/n1"*) ;;'
                    ' *) echo "bad request: $*" >&2; exit 22;; esac\n'
                    "cat <<'JSON'\n%s\nJSON\n" % json.dumps(node))
        os.chmod(curl, os.stat(curl).st_mode | stat.S_IEXEC)
        text = script.replace("/var/run/secrets/kubernetes.io/serviceaccount", sa)
        with open(os.path.join(d, "zone.sh"), "w") as f:
            f.write(text)
        env = {"PATH": os.path.join(d, "bin") + ":/usr/bin:/bin", "NODE_NAME": "n1",
               "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        out = os.path.join(d, "zone")
        p = subprocess.run(["/bin/sh", os.path.join(d, "zone.sh"), out], env=env, capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(open(out).read(), "eu-west-1b\n")
        # No label: an empty zone. An API failure: the init container fails (and is retried).
        del node["metadata"]["labels"]["topology.kubernetes.io/zone"]
        with open(curl, "w") as f:
            f.write("#!/bin/sh\ncat <<'JSON'\n%s\nJSON\n" % json.dumps(node))
        p = subprocess.run(["/bin/sh", os.path.join(d, "zone.sh"), out], env=env, capture_output=True, text=True)
        self.assertEqual((p.returncode, open(out).read()), (0, "\n"))
        with open(curl, "w") as f:
            f.write("#!/bin/sh\necho 'curl: (22) The requested URL returned error: 403' >&2\nexit 22\n")
        p = subprocess.run(["/bin/sh", os.path.join(d, "zone.sh"), out], env=env, capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)

    def test_metadata_script_names_the_replica_by_ordinal(self):
        objs = rendered("overlays/small")
        script = named(objs, "ConfigMap", next(o["metadata"]["name"] for o in by_kind(objs, "ConfigMap")
                                               if o["metadata"]["name"].startswith("dfs-scripts-")))["data"]["metadata.sh"]
        d = self.tmp("metadata-sh")
        os.makedirs(os.path.join(d, "bin"))
        # A stand-in dfs-metadata that prints the arguments it was given.
        fake = os.path.join(d, "bin", "dfs-metadata")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\nprintf "%s\\n" "$@"\n')
        os.chmod(fake, 0o755)
        with open(os.path.join(d, "metadata.sh"), "w") as f:
            f.write(script)

        def run(hostname):
            env = {"PATH": os.path.join(d, "bin") + ":/usr/bin:/bin", "HOSTNAME": hostname}
            return subprocess.run(["/bin/sh", os.path.join(d, "metadata.sh"), "--listen=[::]:7000"], env=env,
                                  capture_output=True, text=True)
        p = run("dfs-metadata-2")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(), ["--replica-id", "3", "--listen=[::]:7000"])
        self.assertEqual(run("dfs-metadata-0").stdout.split()[:2], ["--replica-id", "1"])
        p = run("metadata")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("does not end in a StatefulSet ordinal", p.stderr)
        # Every replica's --peers names the three pods' stable names, ids 1..3.
        ss = named(objs, "StatefulSet", "dfs-metadata")
        (c,) = ss["spec"]["template"]["spec"]["containers"]
        args = dict(a.split("=", 1) for a in c["args"])
        peers = [p.split("=") for p in args["--peers"].split(",")]
        self.assertEqual([int(p[0]) for p in peers], [1, 2, 3])
        self.assertEqual(ss["spec"]["replicas"], 3)
        for i, (_, raft, grpc) in enumerate(peers):
            self.assertTrue(raft.startswith("dfs-metadata-%d.dfs-metadata-peers." % i), raft)
            self.assertTrue(grpc.endswith(":7000") and raft.endswith(":7001"), (raft, grpc))

    def test_client_job_runs_against_a_cluster(self):
        c = self.start_cluster(nodes=3)
        job = named(rendered("jobs"), "Job", "dfs-client")
        (ctr,) = job["spec"]["template"]["spec"]["containers"]
        self.assertEqual(ctr["command"], ["/bin/sh", "-ec"])
        self.assertIn("/tmp", [m["mountPath"] for m in ctr["volumeMounts"]])
        self.assertEqual(job["spec"]["template"]["metadata"]["labels"]["dfs.io/client"], "true")
        env = container_env([], ctr, {"metadata.namespace": "dfs"})
        self.assertEqual(env["DFS_METADATA"], ",".join(
            "dfs-metadata-%d.dfs-metadata-peers.dfs.svc:7000" % i for i in range(3)))
        # Every dfs command it runs is one the CLI has.
        script = ctr["args"][0]
        for line in script.splitlines():
            words = shlex.split(line)
            if words and words[0] == "dfs":
                self.assertIn("  %s " % words[1], subprocess.run([self.bins["dfs"], "--help"], capture_output=True,
                                                                 text=True).stdout)
        # Run it: the real commands, /tmp moved to a temp folder, dfs on PATH, this cluster's address.
        d = self.tmp("job")
        os.makedirs(os.path.join(d, "bin"))
        os.symlink(self.bins["dfs"], os.path.join(d, "bin", "dfs"))
        self.assertEqual(env["DFS_TLS_CA"], "/etc/dfs/tls/ca.crt")
        self.assertEqual(env["DFS_TOKEN_FILE"], "/etc/dfs/tokens/admin")
        run_env = dict(os.environ, PATH=os.path.join(d, "bin") + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
                       DFS_METADATA=c.address, DFS_TOKEN_FILE=c.admin_token_file)
        run_env.pop("DFS_TLS_CA", None)  # this local cluster is plaintext on loopback
        p = subprocess.run(["/bin/sh", "-ec", script.replace("/tmp/", d + "/")], env=run_env, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout[-2000:] + p.stderr[-2000:])
        self.assertIn("dfs-client: put, get and compare of 64 MiB ok", p.stdout)

    def test_benchmark_job_and_image_layout(self):
        job = named(rendered("jobs"), "Job", "dfs-bench-throughput")
        (ctr,) = job["spec"]["template"]["spec"]["containers"]
        bench = os.path.join(ROOT, "benchmarks", "throughput")
        out = subprocess.run([sys.executable, bench, "--help"], capture_output=True, text=True, timeout=60).stdout
        known = set(re.findall(r"(--[a-z][a-z0-9-]*)", out))
        for a in ctr["args"]:
            self.assertIn(flag_name(a), known, a)
        mounts = [m["mountPath"] for m in ctr["volumeMounts"]]
        for a in ctr["args"]:
            v = a.split("=", 1)[1]
            if v.startswith("/work"):
                self.assertIn("/work", mounts)
        # Stage the image's build context as k8s/build-image does and check every COPY source exists,
        # and that the Job's paths are where the image puts things.
        bindir = self.tmp("bin")
        for name, rel in (("dfs-metadata", "services/metadata"), ("dfs-storage", "services/storage"), ("dfs", "cli")):
            os.makedirs(os.path.join(bindir, rel), exist_ok=True)
            shutil.copy(self.bins[name], os.path.join(bindir, rel, name))
        os.makedirs(os.path.join(bindir, "benchmarks"))
        tcp = os.path.join(ROOT, "benchmarks", "tcp_ceiling")
        shutil.copy(tcp, os.path.join(bindir, "benchmarks", "tcp_ceiling"))
        ctx = self.tmp("ctx")
        p = subprocess.run([os.path.join(ROOT, "k8s", "build-image"), "--stage-only", ctx, "--bin", bindir],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        cf = open(os.path.join(ctx, "Containerfile")).read()
        logical = cf.replace("\\\n", " ")
        for line in logical.splitlines():
            if line.startswith("COPY "):
                for src in line.split()[1:-1]:
                    self.assertTrue(os.path.exists(os.path.join(ctx, src)), src)
        self.assertTrue(os.path.exists(os.path.join(ctx, "stage" + ctr["command"][0])))
        bin_arg = next(a for a in ctr["args"] if a.startswith("--bin=")).split("=", 1)[1]
        for rel in ("services/dfs-metadata", "services/dfs-storage", "cli/dfs", "benchmarks/tcp_ceiling"):
            self.assertTrue(os.path.exists(os.path.join(ctx, "stage" + bin_arg, rel)), rel)
        self.assertTrue(os.path.exists(os.path.join(ctx, "stage/opt/dfs/tools/dfscluster.py")))
        # The image: Debian 12 slim, a non-root user, the names the manifests use.
        self.assertRegex(cf, r"(?m)^FROM \S*debian:bookworm-slim AS base$")
        self.assertRegex(cf, r"(?m)^FROM base AS runtime$")
        self.assertRegex(cf, r"(?m)^FROM base AS bench$")
        users = re.findall(r"(?m)^USER (\S+)", cf)
        self.assertTrue(users and all(u.split(":")[0] not in ("0", "root") for u in users), users)
        self.assertTrue(cf.strip().splitlines()[-1].startswith("CMD"), "runtime must be the last (default) stage")

    def test_image_packages_cover_the_linked_libraries(self):
        if os.environ.get("DFS_SANITIZED"):
            self.skipTest("sanitizer builds link the sanitizer runtimes, which the image does not ship")
        cf = open(os.path.join(ROOT, "k8s", "Containerfile")).read().replace("\\\n", " ")
        m = re.search(r"FROM \S+ AS base\s+RUN apt-get update\s+&& apt-get install -y --no-install-recommends "
                      r"([^&]+)&&", cf)
        self.assertIsNotNone(m, "the base stage's apt-get install line")
        listed = set(m.group(1).split())
        in_slim = {"libc6", "libgcc-s1", "zlib1g"}
        if not shutil.which("dpkg"):
            self.skipTest("dpkg not available")
        needed = set()
        for name in ("dfs-metadata", "dfs-storage", "dfs"):
            out = subprocess.run(["readelf", "-d", self.bins[name]], capture_output=True, text=True).stdout
            needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        for lib in sorted(needed):
            m = re.search(r"^\s*%s \(libc6,x86-64[^)]*\) => (\S+)" % re.escape(lib), cache, re.M)
            self.assertIsNotNone(m, lib)
            path = m.group(1)
            cands = {path, os.path.realpath(path)}
            cands |= {p.replace("/usr/lib/", "/lib/", 1) for p in list(cands) if p.startswith("/usr/lib/")}
            cands |= {p.replace("/lib/", "/usr/lib/", 1) for p in list(cands) if p.startswith("/lib/")}
            pkg = None
            for cpath in cands:
                r = subprocess.run(["dpkg", "-S", cpath], capture_output=True, text=True)
                if r.returncode == 0:
                    pkg = r.stdout.split(":")[0]
                    break
            self.assertIsNotNone(pkg, "no package owns %s" % lib)
            self.assertTrue(pkg in listed or pkg in in_slim, "%s (%s) is not installed by the Containerfile" % (
                pkg, lib))


def grpcinspect_scrape(address, path="/metrics"):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://%s%s" % (address, path), timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


if __name__ == "__main__":
    harness.main()
