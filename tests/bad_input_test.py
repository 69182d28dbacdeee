"""Bad input gets a clear one-line error and a non-zero exit, and nothing that was stored is lost."""

import os
import subprocess
import time

import harness


class BadInput(harness.TestCase):
    def setUp(self):
        self.start_cluster(nodes=4)
        self.keep = harness.random_file(self.tmp("keep"), 300000, seed=41)
        self.dfs("put", self.keep, "/keep")

    def tearDown(self):
        # Whatever the test did, the file stored before it is intact.
        self.dfs("get", "/keep", self.tmp("keep.out"))
        self.assertEqual(harness.sha256(self.tmp("keep.out")), harness.sha256(self.keep))

    def fails(self, *args, rc=1, expect=None, **kw):
        code, out, err = self.dfs(*args, check=False, **kw)
        self.assertEqual(code, rc, "dfs %s: %s" % (" ".join(args), err))
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, "not a one-line error: %r" % err)
        self.assertTrue(lines[0].startswith("dfs: "), lines[0])
        if expect:
            self.assertIn(expect, err)
        return err

    def test_missing_local_file(self):
        self.fails("put", self.tmp("nope"), "/x", expect="No such file or directory")
        self.fails("put", self.tmp(), "/x", expect="not a regular file")
        _, out, _ = self.dfs("ls")
        self.assertEqual(out.split(), ["/keep"])

    def test_bad_remote_paths(self):
        src = harness.random_file(self.tmp("s"), 10, seed=1)
        for path, why in (("", "empty path"), ("/", "names no file"), ("/a/../b", "'..'"),
                          ("/dir/", "ends with '/'"), ("/a\x01b", "control character"),
                          ("/" + "x" * 300, "longer than")):
            with self.subTest(path=path):
                self.fails("put", src, path, expect=why)
                self.fails("get", path, self.tmp("o"), expect=why)
        _, out, _ = self.dfs("ls")
        self.assertEqual(out.split(), ["/keep"])

    def test_unknown_metadata_address(self):
        t0 = time.monotonic()
        self.fails("ls", metadata="127.0.0.1:1", expect="cannot reach the metadata service at 127.0.0.1:1")
        self.assertLess(time.monotonic() - t0, 10)
        # Plaintext goes to loopback only, unless asked for.
        self.fails("get", "/keep", self.tmp("o"), metadata="no-such-host.invalid:7000", rc=2,
                   expect="refusing to connect to no-such-host.invalid:7000 without TLS")
        self.fails("get", "--insecure", "/keep", self.tmp("o"), metadata="no-such-host.invalid:7000",
                   expect="cannot reach the metadata service")
        self.assertFalse(os.path.exists(self.tmp("o")))
        self.fails("ls", rc=2, env={"DFS_METADATA": None}, metadata="",
                   expect="no metadata service address")

    def test_missing_remote_and_bad_destination(self):
        self.fails("get", "/missing", self.tmp("o"), expect="no file /missing")
        self.fails("stat", "/missing", expect="no file /missing")
        self.fails("get", "/keep", self.tmp("no", "such", "dir", "o"), expect="cannot create")

    def test_not_enough_nodes(self):
        src = harness.random_file(self.tmp("s"), 10, seed=2)
        self.fails("put", "--replicas", "5", src, "/five", expect="need 5 distinct live storage nodes, 4 are")

    def test_usage_errors(self):
        self.fails("frobnicate", rc=2, expect="unknown command")
        self.fails("get", "/keep", rc=2, expect="usage: dfs get REMOTE LOCAL")
        self.fails("get", "/keep", "x", "--replicas", "2", rc=2, expect="get does not take --replicas")
        self.fails("put", "a", "b", "--replicas", "0", rc=2, expect="--replicas must be")
        self.fails("put", "a", "b", "--policy", "fastest", rc=2, expect="fastest")
        self.fails("ls", "--timeout", rc=2, expect="--timeout needs a value")
        self.fails("ls", "--bogus", rc=2, expect="unknown option")
        # Numbers are digits only: sscanf's %u took "-1" (and 4 + 4294967295 wrapped to 3).
        for ec in ("4+-1", "4+4294967295", " 4+2", "4+2x"):
            self.fails("put", "a", "b", "--ec", ec, rc=2, expect="--ec takes K+M")
        for n in (" 3", "+3", "-3", "3 "):
            self.fails("put", "a", "b", "--replicas", n, rc=2, expect="--replicas must be")
        self.fails("put", "a", "b", "--replication", "chain", "--throttle", "10bit", rc=2,
                   expect="needs a --throttle of at least 1K")

    def test_daemon_flags(self):
        bins = self.cluster.binaries()
        for cmd, expect in (([bins["dfs-metadata"]], "--db FILE is required"),
                            ([bins["dfs-metadata"], "--db", "x", "--threads", "0"], "--threads must be"),
                            ([bins["dfs-storage"], "--bogus"], "unknown option"),
                            ([bins["dfs-storage"], "--data", "x", "--metadata", "127.0.0.1:1"],
                             "--token-file is required"),
                            ([bins["dfs-storage"], "--data", "x", "--metadata", "127.0.0.1:1", "--token-file",
                              self.tmp("no-such-token")], "cannot read token file"),
                            ([bins["dfs-metadata"], "--db", "x", "--tls-cert", "c.pem"], "needs its key")):
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(expect, p.stderr)
        # A second node on a data dir in use is refused, and the first keeps running.
        data = self.cluster.path("node-0", "data")
        p = subprocess.run([bins["dfs-storage"], "--data", data, "--metadata", self.cluster.address,
                            "--listen", "127.0.0.1:0", "--token-file", self.cluster.node_token_file],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(data, p.stderr)
        # Plaintext on an address others can reach is refused unless asked for.
        p = subprocess.run([bins["dfs-metadata"], "--db", self.tmp("open.db"), "--listen", "0.0.0.0:0"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("refusing to listen on 0.0.0.0:0 without TLS", p.stderr)
        # A token file others can read is refused.
        loose = self.tmp("loose.token")
        with open(loose, "w") as f:
            f.write("dfs1.%s.%s\n" % ("a" * 16, "b" * 64))
        os.chmod(loose, 0o644)
        p = subprocess.run([bins["dfs-storage"], "--data", self.tmp("d2"), "--metadata", self.cluster.address,
                            "--token-file", loose], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("chmod 600", p.stderr)


if __name__ == "__main__":
    harness.main()
