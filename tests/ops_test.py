"""What operators and users hit around the daemons and the CLI: one dfs-metadata per catalog (and one
dfs-storage per data directory), a put that waits out a metadata service that stops answering and
says what it waits for, a put from standard input, a decommission that would lose data, long
paths (their limits, and errors that quote only a short prefix of them), and a catalog backed up
while it serves and restored as a new cluster's."""

import json
import os
import signal
import subprocess
import time

import harness


def run_daemon(binary, args, timeout=60):
    """Run a daemon that is expected to refuse to start; returns (exit status, stdout, stderr)."""
    p = subprocess.run([binary] + args, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


class OneDaemonPerStore(harness.TestCase):
    def test_second_metadata_on_a_catalog_refuses_to_start(self):
        c = self.start_cluster(nodes=1)
        src = harness.random_file(self.tmp("a"), 1000, seed=1)
        self.dfs("put", "--replicas", "1", src, "/a")
        db = c.path("metadata", "catalog.db")
        rc, out, err = run_daemon(c.binaries()["dfs-metadata"],
                                  ["--db", db, "--listen", "127.0.0.1:0", "--log-level", "error"])
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(out, "")
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("catalog %s is in use by another process" % db, err)
        # The first one still serves what it had.
        _, listing, _ = self.dfs("ls")
        self.assertIn("/a", listing)
        self.dfs("get", "/a", self.tmp("b"))
        self.assertEqual(harness.sha256(self.tmp("b")), harness.sha256(src))

    def test_second_storage_on_a_data_dir_refuses_to_start(self):
        c = self.start_cluster(nodes=1)
        data = c.path("node-0", "data")
        rc, out, err = run_daemon(c.binaries()["dfs-storage"],
                                  ["--data", data, "--metadata", c.address, "--listen", "127.0.0.1:0",
                                   "--token-file", c.node_token_file, "--log-level", "error"])
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("data dir %s is in use by another process" % data, err)


def pid_of(cluster, name):
    return next(r["pid"] for r in cluster.status() if r["name"] == name)


def writing_node(cluster):
    """The name of a storage node with a write in progress (a file in its tmp/), or None."""
    for r in cluster.status():
        if r["name"] != "metadata" and r["state"] == "running":
            tmp = cluster.path(r["name"], "data", "tmp")
            if os.path.isdir(tmp) and os.listdir(tmp):
                return r["name"]
    return None


def read_text(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


class PutWaits(harness.TestCase):
    def start_put(self, c, *args):
        """`dfs put ...` in the background, its stderr in a file (not a terminal); returns (proc, path)."""
        err_path = self.tmp("put.err")
        err = open(err_path, "w")
        self.addCleanup(err.close)
        p = subprocess.Popen([c.binaries()["dfs"], "put"] + list(args), stdout=subprocess.PIPE,
                             stderr=err, stdin=subprocess.DEVNULL, env=c.env())
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p, err_path

    def test_commit_waits_out_a_metadata_service_that_stops_answering(self):
        # The transfer is done, then CommitFile finds the service frozen (each try times out after
        # 1.5 s): the put keeps trying, says so, and completes once the service answers again.
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("src"), 6 << 20, seed=3)
        meta = pid_of(c, "metadata")
        p, err_path = self.start_put(c, "--timeout", "1500", "--throttle", "2M", "--replicas", "1", src, "/c")
        harness.wait_until(lambda: writing_node(c) is not None or p.poll() is not None, 30,
                           "the transfer to start")
        self.assertIsNone(p.poll(), read_text(err_path))
        os.kill(meta, signal.SIGSTOP)
        try:
            harness.wait_until(lambda: "committing:" in read_text(err_path) or p.poll() is not None, 60,
                               "a word about the commit")
            self.assertIsNone(p.poll(), "the put ended while the service was away: " + read_text(err_path))
        finally:
            os.kill(meta, signal.SIGCONT)
        self.assertEqual(p.wait(timeout=120), 0, read_text(err_path))
        err = read_text(err_path)
        self.assertRegex(err, r"dfs: put /c: committing: cannot reach the metadata service at \S+ \(.*\); "
                              r"trying again \(for \d+ s more\)")
        self.dfs("get", "/c", self.tmp("back"))
        self.assertEqual(harness.sha256(self.tmp("back")), harness.sha256(src))

    def test_put_says_which_node_it_waits_for(self):
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("src"), 12 << 20, seed=4)
        p, err_path = self.start_put(c, "--throttle", "1M", "--replicas", "1", src, "/w")
        harness.wait_until(lambda: writing_node(c) is not None or p.poll() is not None, 30,
                           "the transfer to start")
        name = writing_node(c)
        self.assertIsNotNone(name, read_text(err_path))
        row = next(r for r in c.status() if r["name"] == name)
        os.kill(row["pid"], signal.SIGSTOP)
        try:
            harness.wait_until(lambda: "waiting for node %s" % row["address"] in read_text(err_path)
                               or p.poll() is not None, 60, "a word about the silent node")
        finally:
            os.kill(row["pid"], signal.SIGCONT)
        self.assertEqual(p.wait(timeout=120), 0, read_text(err_path))
        self.assertRegex(read_text(err_path), r"dfs: put /w: waiting for node %s.*: no progress for \d+ s "
                                              r"\(gives up after 60 s\)" % row["address"])
        self.dfs("get", "/w", self.tmp("back"))
        self.assertEqual(harness.sha256(self.tmp("back")), harness.sha256(src))


class PutFromStandardInput(harness.TestCase):
    def test_pipe_file_and_empty(self):
        c = self.start_cluster(nodes=1)
        tmpdir = self.tmp("spool")
        os.makedirs(tmpdir)
        env = {"TMPDIR": tmpdir}
        src = harness.random_file(self.tmp("src"), (3 << 20) + 17, seed=5)
        with open(src, "rb") as f:
            data = f.read()
        # A pipe: spooled (to nothing anyone can see in TMPDIR), then put.
        self.dfs("put", "--replicas", "1", "-", "/in/pipe", input=data, text=False, env=env)
        # Standard input redirected from a file: read as it is.
        with open(src, "rb") as f:
            p = subprocess.run([c.binaries()["dfs"], "put", "--replicas", "1", "-", "/in/file"], stdin=f,
                               capture_output=True, env=dict(c.env(), **env), timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.dfs("put", "--replicas", "1", "-", "/in/empty", input=b"", text=False, env=env)
        for remote, want in (("/in/pipe", data), ("/in/file", data), ("/in/empty", b"")):
            self.dfs("get", remote, self.tmp("back"))
            with open(self.tmp("back"), "rb") as f:
                self.assertEqual(f.read(), want, remote)
        self.assertEqual(os.listdir(tmpdir), [])
        # Nowhere to spool: one line that says so.
        rc, _, err = self.dfs("put", "--replicas", "1", "-", "/in/x", input=b"abc", text=False,
                              env={"TMPDIR": "/nonexistent"}, check=False)
        self.assertEqual(rc, 1)
        err = err.decode()
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("cannot make a temporary file in /nonexistent for standard input", err)


def nodes(tc):
    return {n["id"]: n for n in json.loads(tc.dfs("nodes", "--json")[1])}


def node_of(tc, remote):
    st = json.loads(tc.dfs("stat", "--json", remote)[1])
    return [r["node_id"] for fr in st["fragments"] for r in fr["replicas"]]


class Decommission(harness.TestCase):
    def test_only_copy_is_drained_not_lost(self):
        c = self.start_cluster(nodes=4, metadata_flags=["--heartbeat-ms", "200", "--suspect-after-ms", "1000",
                                                         "--dead-after-ms", "3000"])
        src = harness.random_file(self.tmp("src"), 100000, seed=6)
        # Copies elsewhere: decommissioning a holder of a 2-copy file is fine.
        self.dfs("put", "--replicas", "2", "--fragments", "1", src, "/two")
        first = node_of(self, "/two")[0]
        self.dfs("node", "decommission", first)
        # The only copy: refused, the node stays in service, the file readable.
        self.dfs("put", "--replicas", "1", "--fragments", "1", src, "/one")
        (holder,) = node_of(self, "/one")
        rc, _, err = self.dfs("node", "decommission", holder[:10], check=False)
        self.assertEqual(rc, 1, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("holds the only readable copies of 1 file (/one)", err)
        self.assertIn("dfs node drain", err)
        self.assertEqual(nodes(self)[holder]["state"], "alive")
        h = json.loads(self.dfs("status", "--json")[1])["health"]
        self.assertEqual(h["lost"], 0)
        # Drained instead: the copy moves, then the node retires; nothing is lost.
        self.dfs("node", "drain", holder)
        harness.wait_until(lambda: nodes(self)[holder]["state"] == "decommissioned", 60, "the drain to finish")
        self.assertNotIn(holder, node_of(self, "/one"))
        self.dfs("get", "/one", self.tmp("back"))
        self.assertEqual(harness.sha256(self.tmp("back")), harness.sha256(src))
        # --force retires a node anyway: what only it held is lost.
        self.dfs("put", "--replicas", "1", "--fragments", "1", src, "/forced")
        (other,) = node_of(self, "/forced")
        self.dfs("node", "decommission", "--force", other)
        h = json.loads(self.dfs("status", "--json", "-l")[1])["health"]
        self.assertIn("/forced", h["lost_paths"])
        rc, _, err = self.dfs("node", "drain", "--force", other, check=False)
        self.assertEqual((rc, err.strip()), (2, "dfs: node drain does not take --force (see dfs --help)"))


class LongPaths(harness.TestCase):
    def test_component_limit_and_short_errors(self):
        self.start_cluster(nodes=1)
        src = harness.random_file(self.tmp("src"), 10, seed=7)
        self.dfs("put", "--replicas", "1", src, "/" + "c" * 255)
        for remote, says in (("/" + "a" * 256 + "/f", "path component longer than 255 bytes"),
                             ("/" + "b" * 10000, "path longer than 1024 bytes"),
                             ("/d/" * 600 + "f", "path longer than 1024 bytes"),
                             ("/x/" + "e" * 200 + "/", "ends with '/'")):
            for args in (["put", "--replicas", "1", src, remote], ["get", remote, self.tmp("out")],
                         ["rm", remote]):
                with self.subTest(cmd=args[0], remote=remote[:20]):
                    rc, out, err = self.dfs(*args, check=False)
                    self.assertEqual(rc, 1, err)
                    self.assertEqual(len(err.splitlines()), 1, err)
                    self.assertIn(says, err)
                    self.assertLess(len(err), 300, err[:400])


class BackupRestore(harness.TestCase):
    def test_backup_while_serving_restores_a_new_cluster(self):
        c = self.start_cluster(nodes=3)
        meta = c.binaries()["dfs-metadata"]
        db = c.path("metadata", "catalog.db")
        before = [harness.random_file(self.tmp("b%d" % i), 200000 + i, seed=10 + i) for i in range(3)]
        for i, src in enumerate(before):
            self.dfs("put", "--replicas", "2", src, "/before/%d" % i)
        backup = self.tmp("backup.db")
        p = subprocess.run([meta, "backup", "--db", db, "--to", backup], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("at applied index", p.stdout)
        late = harness.random_file(self.tmp("late"), 300000, seed=20)
        self.dfs("put", "--replicas", "2", "--fragments", "1", late, "/late")
        _, out, _ = self.dfs("stat", "--json", "/late")
        late_fragment = json.loads(out)["fragments"][0]["fragment_id"]

        # The copy as it is has no Raft log: refused, with the way out in the message.
        rc, out, err = run_daemon(meta, ["--db", backup, "--listen", "127.0.0.1:0", "--log-level", "error"])
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("restore --from", err)

        # The disaster: the metadata service and its catalog are gone; a new one from the backup.
        pid = pid_of(c, "metadata")
        c.expected_exits.add("metadata")
        os.kill(pid, signal.SIGKILL)
        # Reaped by the cluster (its status says so), not just a zombie in /proc: a thread group's
        # leader shows as one while its other threads still exit.
        harness.wait_until(lambda: next(r for r in c.status() if r["name"] == "metadata")["state"] != "running",
                           30, "the metadata service to die")
        for name in os.listdir(c.path("metadata")):
            if name.startswith("catalog.db"):
                path = c.path("metadata", name)
                if os.path.isdir(path):
                    for root, dirs, files in os.walk(path, topdown=False):
                        for f in files:
                            os.unlink(os.path.join(root, f))
                        for d in dirs:
                            os.rmdir(os.path.join(root, d))
                    os.rmdir(path)
                else:
                    os.unlink(path)
        p = subprocess.run([meta, "restore", "--from", backup, "--db", db], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        rc, _, err = run_daemon(meta, ["restore", "--from", backup, "--db", db])
        self.assertEqual(rc, 1, err)
        self.assertIn("exists already", err)
        c.restart_metadata()

        # Everything the backup knew reads back; /late is unknown, its bytes kept as an orphan.
        for i, src in enumerate(before):
            self.dfs("get", "/before/%d" % i, self.tmp("back%d" % i))
            self.assertEqual(harness.sha256(self.tmp("back%d" % i)), harness.sha256(src))
        rc, _, _ = self.dfs("stat", "/late", check=False)
        self.assertNotEqual(rc, 0)

        def orphans():
            p = subprocess.run([meta, "orphans", "--db", db], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            return [line.split()[0] for line in p.stdout.splitlines()]
        # The nodes report their inventories once they registered with the new service.
        harness.wait_until(lambda: orphans().count(late_fragment) == 2, 90,
                           "both copies of /late's fragment to be kept as orphans")
        # Writes go on in the new cluster, and survive its restart.
        self.dfs("put", "--replicas", "2", late, "/after")
        c.restart_metadata()
        self.dfs("get", "/after", self.tmp("after"))
        self.assertEqual(harness.sha256(self.tmp("after")), harness.sha256(late))


if __name__ == "__main__":
    harness.main()
