"""Inspection end to end, against real dfs-metadata and dfs-storage processes: server reflection (v1 and
v1alpha) and health spoken by an independent client (Debian's python3-grpcio, messages encoded by hand,
descriptors parsed by Google's protobuf runtime: tests/grpcinspect.py), the Prometheus endpoint
scraped with urllib during a put and a get, readiness that follows the real state of a daemon, and the
graceful stop seen through a health Watch."""

import grpcinspect  # noqa: I100  (first: may re-run this file under Debian's python3)

import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request

import grpc

import harness

NOT_FOUND = 5
UNIMPLEMENTED = 12

# Methods every dfs.v1.Metadata has (the proto may have more).
METADATA_METHODS = ["RegisterNode", "Heartbeat", "CreateFile", "ReplaceTarget", "CommitFile", "AbortFile",
                    "GetFile", "ListFiles", "DeleteFile", "Stat", "ListNodes"]
STANDARD = ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"]


class InspectCluster(harness.Cluster):
    """A test cluster whose daemons also serve metrics, each on a free port of its own."""

    def __init__(self, nodes=3, metadata_flags=(), **kw):
        super().__init__(nodes=nodes, metadata_flags=["--metrics-listen", "127.0.0.1:0"] + list(metadata_flags), **kw)

    def _storage_cmd(self, i, metadata_addr, zones, extra=()):
        return super()._storage_cmd(i, metadata_addr, zones, extra) + ["--metrics-listen", "127.0.0.1:0"]

    def grpc_address(self, name):
        return next(r["address"] for r in self.status() if r["name"] == name)

    def metrics_address(self, name):
        """From the daemon's latest start line (`serving ... metrics=ADDR` / `listening ... metrics=ADDR`)."""
        rec = next(r for r in self.status() if r["name"] == name)
        with open(rec["log"], encoding="utf-8", errors="replace") as f:
            found = re.findall(r'msg="(?:serving|listening)".* metrics=(\S+)', f.read())
        assert found and found[-1] != "off", "no metrics address in %s" % rec["log"]
        return found[-1]


def start(tc, nodes=3, **kw):
    c = InspectCluster(nodes=nodes, **kw)
    tc.addCleanup(tc._finish_cluster, c)
    c.start()
    tc.cluster = c
    return c


def scrape(address, path="/metrics"):
    """(status, content type, body) of GET http://address/path."""
    try:
        with urllib.request.urlopen("http://%s%s" % (address, path), timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def metrics(address):
    status, ctype, body = scrape(address)
    assert status == 200, status
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    samples, families = grpcinspect.parse_prometheus(body)
    return samples, families


def handled(samples, service, method, code="OK"):
    return grpcinspect.metric_sum(samples, "grpc_server_handled_total", grpc_service=service, grpc_method=method,
                                  grpc_code=code)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Reflection(harness.TestCase):
    def setUp(self):
        self.c = start(self, nodes=2)
        self.meta = self.c.address
        self.node = self.c.grpc_address("node-0")

    def test_list_services_on_metadata_and_storage(self):
        for version in ("v1", "v1alpha"):
            self.assertEqual(grpcinspect.Reflection(self.meta, version).list_services(),
                             ["dfs.v1.Metadata"] + STANDARD)
            self.assertEqual(grpcinspect.Reflection(self.node, version).list_services(),
                             ["dfs.v1.Storage"] + STANDARD)

    def test_ls_long_every_listed_service_resolves_with_its_methods(self):
        # What `grpc_cli ls HOST:PORT SERVICE -l` does: the file of each service, then its methods.
        for target in (self.meta, self.node):
            r = grpcinspect.Reflection(target)
            for service in r.list_services():
                files = r.file_containing_symbol(service)
                pkg, name = service.rsplit(".", 1)
                self.assertEqual(files[0].package, pkg)
                svc = next(s for s in files[0].service if s.name == name)
                self.assertTrue(svc.method, service)
                pool = grpcinspect.build_pool(files)  # every import came along
                self.assertEqual(pool.FindServiceByName(service).full_name, service)
        files = grpcinspect.Reflection(self.meta).file_containing_symbol("dfs.v1.Metadata")
        svc = next(s for s in files[0].service if s.name == "Metadata")
        names = [m.name for m in svc.method]
        self.assertEqual([n for n in names if n in METADATA_METHODS], METADATA_METHODS)  # in proto order
        ls = next(m for m in svc.method if m.name == "ListNodes")
        self.assertEqual((ls.input_type, ls.output_type), (".dfs.v1.ListNodesRequest", ".dfs.v1.ListNodesResponse"))

    def test_file_containing_symbol_kinds(self):
        for target in (self.meta, self.node):
            r = grpcinspect.Reflection(target)
            cases = {
                "dfs.v1.Metadata": "dfs/v1/metadata.proto",
                "dfs.v1.Storage": "dfs/v1/storage.proto",            # described on both servers
                "dfs.v1.Metadata.ListNodes": "dfs/v1/metadata.proto",  # a method
                "dfs.v1.CreateFileRequest": "dfs/v1/metadata.proto",   # a message
                "dfs.v1.Redundancy.Scheme": "dfs/v1/types.proto",      # a nested enum
                "dfs.v1.NodeState": "dfs/v1/types.proto",              # a top-level enum
                "grpc.health.v1.HealthCheckResponse.ServingStatus": "grpc/health/v1/health.proto",
                "grpc.reflection.v1alpha.ServerReflectionRequest": "grpc/reflection/v1alpha/reflection.proto",
            }
            for symbol, filename in cases.items():
                files = r.file_containing_symbol(symbol)
                self.assertEqual(files[0].name, filename, symbol)
                names = [f.name for f in files]
                self.assertEqual(len(names), len(set(names)), "a file sent twice for %s" % symbol)
                # Transitive imports: everything the first file imports is in the answer.
                self.assertTrue(set(files[0].dependency) <= set(names), symbol)
                grpcinspect.build_pool(files)
            # The nested enum really is nested, with its values.
            (types,) = [f for f in r.file_containing_symbol("dfs.v1.Redundancy.Scheme") if f.name == "dfs/v1/types.proto"]
            red = next(m for m in types.message_type if m.name == "Redundancy")
            self.assertEqual([e.name for e in red.enum_type], ["Scheme"])
            self.assertGreaterEqual(len(red.enum_type[0].value), 2)

    def test_file_by_filename_brings_dependencies(self):
        r = grpcinspect.Reflection(self.node)
        files = r.file_by_filename("dfs/v1/metadata.proto")
        self.assertEqual(files[0].name, "dfs/v1/metadata.proto")
        self.assertIn("dfs/v1/types.proto", files[0].dependency)
        self.assertIn("dfs/v1/types.proto", [f.name for f in files])
        for name in ("grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto",
                     "grpc/reflection/v1alpha/reflection.proto", "dfs/v1/storage.proto"):
            self.assertEqual(r.file_by_filename(name)[0].name, name)

    def test_errors_are_error_responses_and_the_stream_goes_on(self):
        for version in ("v1", "v1alpha"):
            r = grpcinspect.Reflection(self.meta, version)
            answers = r.ask(
                grpcinspect.request("file_containing_symbol", "dfs.v1.NoSuchThing"),
                grpcinspect.request("file_by_filename", "nope.proto"),
                grpcinspect.request("file_containing_extension", ("dfs.v1.FileInfo", 100)),
                grpcinspect.request("file_containing_extension", ("no.Such", 1)),
                grpcinspect.request("all_extension_numbers_of_type", "dfs.v1.FileInfo"),
                grpcinspect.request("all_extension_numbers_of_type", "no.Such"),
                grpcinspect.request("empty"),
                grpcinspect.request("list_services"),
            )
            self.assertEqual(len(answers), 8)
            self.assertEqual(answers[0].error[0], NOT_FOUND)
            self.assertIn("dfs.v1.NoSuchThing", answers[0].error[1])
            self.assertEqual(answers[1].error[0], NOT_FOUND)
            self.assertEqual(answers[2].error[0], NOT_FOUND)  # dfs declares no extensions
            self.assertEqual(answers[3].error[0], NOT_FOUND)
            # A known type with no extensions: its (empty) list, as the C++ and Go servers answer.
            self.assertIsNone(answers[4].error)
            self.assertEqual((answers[4].base_type, answers[4].extension_numbers), ("dfs.v1.FileInfo", []))
            self.assertEqual(answers[5].error[0], NOT_FOUND)
            self.assertEqual(answers[6].error[0], UNIMPLEMENTED)
            self.assertEqual(answers[7].services[0], "dfs.v1.Metadata")
            self.assertIsNotNone(answers[7].original_request)
        with self.assertRaises(grpcinspect.ReflectionError) as e:
            grpcinspect.Reflection(self.node).file_containing_symbol("dfs.v1.Metadata.NoSuchMethod")
        self.assertEqual(e.exception.code, NOT_FOUND)

    def test_call_list_nodes_with_reflected_descriptors(self):
        # `grpc_cli call HOST:PORT dfs.v1.Metadata.ListNodes ""`: types from reflection, empty request.
        pool = grpcinspect.Reflection(self.meta).pool_for("dfs.v1.Metadata")
        req_cls = grpcinspect.message_class(pool, "dfs.v1.ListNodesRequest")
        with open(self.c.admin_token_file) as f:
            token = f.read().strip()
        # Without the token the service refuses; with it (grpc_cli --metadata authorization:...) it answers.
        import grpc
        with self.assertRaises(grpc.RpcError) as e:
            grpcinspect.call_unary(self.meta, pool, "dfs.v1.Metadata.ListNodes", req_cls())
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        resp = grpcinspect.call_unary(self.meta, pool, "dfs.v1.Metadata.ListNodes", req_cls(), token=token)
        self.assertEqual(resp.DESCRIPTOR.full_name, "dfs.v1.ListNodesResponse")
        addresses = sorted(n.address for n in resp.nodes)
        self.assertEqual(addresses, sorted(self.c.grpc_address("node-%d" % i) for i in range(2)))
        # `grpc_cli type HOST:PORT dfs.v1.CreateFileRequest`: the message's fields.
        fields = [f.name for f in pool.FindMessageTypeByName("dfs.v1.CreateFileRequest").fields]
        self.assertIn("path", fields)


class Health(harness.TestCase):
    def test_check_per_service(self):
        c = start(self, nodes=1)
        meta, node = c.address, c.grpc_address("node-0")
        for target, service in ((meta, ""), (meta, "dfs.v1.Metadata"), (meta, "liveness"),
                                (node, ""), (node, "dfs.v1.Storage"), (node, "liveness")):
            self.assertEqual(grpcinspect.health_check(target, service), "SERVING", (target, service))
        for target, service in ((meta, "dfs.v1.Storage"), (node, "dfs.v1.Metadata"), (node, "nope")):
            with self.assertRaises(grpc.RpcError) as e:
                grpcinspect.health_check(target, service)
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        w = grpcinspect.HealthWatch(node, "nope")
        try:
            self.assertTrue(w.wait_for(lambda w: w.statuses))
            self.assertEqual(w.statuses[0], "SERVICE_UNKNOWN")
        finally:
            w.close()
        for name in ("metadata", "node-0"):
            status, _, body = scrape(c.metrics_address(name), "/healthz")
            self.assertEqual((status, body), (200, "SERVING\n"))

    def test_sigterm_watchers_see_not_serving_then_a_clean_restart(self):
        # A grace far longer than the check below: a stop that waited for the open watches would
        # take the whole grace (and be killed by stop_node after STOP_TIMEOUT_S), while one that
        # ends them at once has seconds to spare on a loaded machine.
        c = start(self, nodes=2, storage_flags=["--grace-ms", "20000"])
        node = c.grpc_address("node-0")
        watches = [grpcinspect.HealthWatch(node, s) for s in ("", "dfs.v1.Storage", "liveness")]
        try:
            for w in watches:
                self.assertTrue(w.wait_for(lambda w: w.statuses == ["SERVING"]), w.statuses)
            t0 = time.monotonic()
            result = c.stop_node(0)
            took = time.monotonic() - t0
            self.assertEqual((result["how"], result["exit_code"]), ("sigterm", 0))
            # The watchers were not what the stop waited for (grace is 20 s).
            self.assertLess(took, 8.0)
            for w in watches:
                self.assertTrue(w.wait_for(lambda w: w.code is not None))
                self.assertEqual(w.statuses, ["SERVING", "NOT_SERVING"])
                self.assertEqual(w.code, grpc.StatusCode.UNAVAILABLE)
        finally:
            for w in watches:
                w.close()
        c.start_node(0)
        node = c.grpc_address("node-0")
        self.assertEqual(grpcinspect.health_check(node, "dfs.v1.Storage"), "SERVING")

        w = grpcinspect.HealthWatch(c.address, "dfs.v1.Metadata")
        try:
            self.assertTrue(w.wait_for(lambda w: w.statuses == ["SERVING"]))
            c.restart_metadata()
            self.assertTrue(w.wait_for(lambda w: w.code is not None))
            self.assertEqual(w.statuses, ["SERVING", "NOT_SERVING"])
        finally:
            w.close()
        self.assertEqual(grpcinspect.health_check(c.address, ""), "SERVING")
        harness.wait_until(lambda: grpcinspect.health_check(c.grpc_address("node-1"), "") == "SERVING", 10,
                           "node-1 not serving after the metadata restart")

    def test_storage_not_ready_until_registered(self):
        # A node whose metadata service is not there yet: alive (liveness) but not ready.
        bins = harness.find_binaries()
        d = self.tmp("lonely")
        os.makedirs(d)
        meta_port, node_port = free_port(), free_port()
        meta_addr = "127.0.0.1:%d" % meta_port
        node_addr = "127.0.0.1:%d" % node_port
        procs = []

        def spawn(cmd, log):
            p = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append(p)
            return p

        def cleanup():
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self.addCleanup(cleanup)
        # The node's token exists before either process starts, as a Kubernetes Secret would.
        token_file = os.path.join(d, "node.token")
        import secrets
        with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("dfs1.%s.%s\n" % (secrets.token_hex(8), secrets.token_hex(32)))
        node = spawn([bins["dfs-storage"], "--listen", node_addr, "--data", os.path.join(d, "data"),
                      "--metadata", meta_addr, "--ready-file", os.path.join(d, "node.ready"),
                      "--token-file", token_file,
                      "--metrics-listen", "127.0.0.1:0"], os.path.join(d, "node.log"))
        harness.wait_until(lambda: _answers(node_addr), 10, "the node's gRPC port never answered")
        self.assertEqual(grpcinspect.health_check(node_addr, ""), "NOT_SERVING")
        self.assertEqual(grpcinspect.health_check(node_addr, "dfs.v1.Storage"), "NOT_SERVING")
        self.assertEqual(grpcinspect.health_check(node_addr, "liveness"), "SERVING")
        with open(os.path.join(d, "node.log")) as f:
            maddr = re.search(r"metrics=(\S+)", f.read()).group(1)
        status, _, body = scrape(maddr, "/healthz")
        self.assertEqual((status, body), (503, "NOT_SERVING\n"))
        samples, _ = metrics(maddr)
        self.assertEqual(grpcinspect.metric(samples, "dfs_ready"), 0)
        self.assertEqual(grpcinspect.metric(samples, "dfs_storage_registered"), 0)
        w = grpcinspect.HealthWatch(node_addr, "")
        try:
            self.assertTrue(w.wait_for(lambda w: w.statuses == ["NOT_SERVING"]))
            meta = spawn([bins["dfs-metadata"], "--listen", meta_addr, "--db", os.path.join(d, "catalog.db"),
                          "--node-token-file", token_file,
                          "--ready-file", os.path.join(d, "meta.ready")], os.path.join(d, "meta.log"))
            self.assertTrue(w.wait_for(lambda w: "SERVING" in w.statuses, 15), w.statuses)
            self.assertEqual(w.statuses, ["NOT_SERVING", "SERVING"])
        finally:
            w.close()
        # The node turns SERVING first and then writes its ready file (storage_main): wait for it.
        harness.wait_until(lambda: os.path.exists(os.path.join(d, "node.ready")), 15,
                           "no ready file after SERVING")
        self.assertEqual(scrape(maddr, "/healthz")[:3:2], (200, "SERVING\n"))
        for p in (node, meta):
            p.terminate()
            self.assertEqual(p.wait(15), 0)

    def test_metadata_not_ready_while_its_catalog_cannot_be_written(self):
        # No storage node: their heartbeats would queue on the locked catalog and take every worker
        # thread, health calls included (which a probe then sees as a timeout: not ready either).
        c = start(self, nodes=0)
        w = grpcinspect.HealthWatch(c.address, "dfs.v1.Metadata")
        db = sqlite3.connect(c.path("metadata", "catalog.db"), timeout=0, isolation_level=None)
        try:
            self.assertTrue(w.wait_for(lambda w: w.statuses == ["SERVING"]))
            # Another process holds the write lock: reads work, writes wait out the busy timeout.
            db.execute("BEGIN EXCLUSIVE")
            self.assertTrue(w.wait_for(lambda w: "NOT_SERVING" in w.statuses, 20), w.statuses)
            db.execute("ROLLBACK")
            self.assertTrue(w.wait_for(lambda w: w.statuses[-1] == "SERVING", 20), w.statuses)
            self.assertEqual(w.statuses, ["SERVING", "NOT_SERVING", "SERVING"])
        finally:
            db.close()
            w.close()
        # Either the check's own write failed after the busy timeout, or it queued behind the
        # background thread's writes for longer than the stall limit: both say why.
        with open(c.path("metadata", "log")) as f:
            self.assertRegex(f.read(), r'msg="not ready" reason="(catalog is not writable|the readiness check has '
                                       r'not finished)')


def _answers(target):
    try:
        grpcinspect.health_check(target, "liveness", timeout=1)
        return True
    except grpc.RpcError:
        return False


class Metrics(harness.TestCase):
    def test_counters_move_during_put_and_get(self):
        c = start(self, nodes=3)
        names = ["metadata", "node-0", "node-1", "node-2"]
        addrs = {n: c.metrics_address(n) for n in names}
        before = {n: metrics(a)[0] for n, a in addrs.items()}
        size = 24 << 20
        src = harness.random_file(self.tmp("src"), size, seed=7)

        # Scrape over and over while the put runs: every scrape parses.
        done = threading.Event()
        scrapes = []

        def scraper():
            while not done.is_set():
                for a in addrs.values():
                    scrapes.append(metrics(a))
                time.sleep(0.01)
        t = threading.Thread(target=scraper, daemon=True)
        t.start()
        try:
            self.dfs("put", src, "/m/a", "--replicas", "3", "--fragments", "4")
            self.dfs("get", "/m/a", self.tmp("back"))
        finally:
            done.set()
            t.join(30)
        self.assertGreater(len(scrapes), 4)
        self.assertEqual(harness.sha256(src), harness.sha256(self.tmp("back")))

        after = {n: metrics(a)[0] for n, a in addrs.items()}
        m0, m1 = before["metadata"], after["metadata"]
        for method in ("CreateFile", "CommitFile", "GetFile"):
            self.assertEqual(handled(m1, "dfs.v1.Metadata", method) - handled(m0, "dfs.v1.Metadata", method), 1,
                             method)
        self.assertGreaterEqual(grpcinspect.metric_sum(m1, "grpc_server_handling_seconds_count",
                                                       grpc_method="CreateFile"), 1)
        self.assertGreater(grpcinspect.metric_sum(m1, "dfs_rpc_received_bytes_total", grpc_method="CommitFile"), 0)
        self.assertEqual(grpcinspect.metric(m1, "dfs_metadata_files"), 1)
        self.assertEqual(grpcinspect.metric(m1, "dfs_metadata_logical_bytes"), size)
        self.assertEqual(grpcinspect.metric(m1, "dfs_metadata_nodes", state="alive"), 3)
        self.assertEqual(grpcinspect.metric(m1, "dfs_metadata_pending_files"), 0)
        self.assertIn(("dfs_metadata_deletion_queue_length", frozenset()), m1)
        self.assertEqual(grpcinspect.metric(m1, "dfs_build_info", program="dfs-metadata", version="0.1.0"), 1)
        self.assertEqual(grpcinspect.metric(m1, "dfs_ready"), 1)
        self.assertGreater(grpcinspect.metric(m1, "dfs_uptime_seconds"), 0)

        nodes = [n for n in names if n != "metadata"]

        def total(name, which, **labels):
            return sum(grpcinspect.metric_sum(which[n], name, **labels) for n in nodes)
        self.assertEqual(total("dfs_storage_fragments", after), 12)
        self.assertEqual(total("grpc_server_handled_total", after, grpc_method="PutFragment", grpc_code="OK") -
                         total("grpc_server_handled_total", before, grpc_method="PutFragment", grpc_code="OK"), 12)
        self.assertEqual(total("dfs_storage_data_received_bytes_total", after) -
                         total("dfs_storage_data_received_bytes_total", before), 3 * size)
        self.assertGreaterEqual(total("dfs_rpc_received_bytes_total", after, grpc_method="PutFragment") -
                                total("dfs_rpc_received_bytes_total", before, grpc_method="PutFragment"), 3 * size)
        self.assertGreaterEqual(total("dfs_storage_data_sent_bytes_total", after), size)
        self.assertGreaterEqual(total("dfs_rpc_sent_bytes_total", after, grpc_method="GetFragment"), size)
        self.assertGreaterEqual(total("grpc_server_handling_seconds_count", after, grpc_method="GetFragment"), 4)
        self.assertEqual(total("dfs_storage_puts_total", after, result="ok"), 12)
        self.assertGreater(total("dfs_storage_used_bytes", after), 3 * size)
        for n in nodes:
            self.assertEqual(grpcinspect.metric(after[n], "dfs_storage_registered"), 1)
            self.assertEqual(grpcinspect.metric(after[n], "dfs_build_info", program="dfs-storage", version="0.1.0"), 1)
            _, fams = metrics(addrs[n])
            self.assertEqual(fams["grpc_server_handling_seconds"], "histogram")
            self.assertEqual(fams["dfs_storage_fragments"], "gauge")
            self.assertEqual(fams["grpc_server_handled_total"], "counter")

    def test_flag_is_documented_and_checked(self):
        bins = harness.find_binaries()
        for name in ("dfs-metadata", "dfs-storage"):
            out = subprocess.run([bins[name], "--help"], capture_output=True, text=True).stdout
            self.assertIn("--metrics-listen ADDR", out)
        d = self.tmp("bad")
        os.makedirs(d)
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        try:
            for value, why in (("nonsense", "HOST:PORT"), ("127.0.0.1:%d" % taken.getsockname()[1], "cannot serve")):
                p = subprocess.run([bins["dfs-metadata"], "--db", os.path.join(d, "c.db"), "--listen", "127.0.0.1:0",
                                    "--metrics-listen", value], capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 1, p.stderr)
                # One plain error line (the rest are structured log lines).
                errors = [ln for ln in p.stderr.splitlines() if ln.startswith("dfs-metadata: ")]
                self.assertEqual(len(errors), 1, p.stderr)
                self.assertIn(why, errors[0])
        finally:
            taken.close()


if __name__ == "__main__":
    harness.main()
