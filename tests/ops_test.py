"""What operators and users hit around the daemons and the CLI: one dfs-metadata per catalog (and one
dfs-storage per data directory), a put that waits out a metadata service that stops answering, says
what it waits for, reads standard input, a decommission that would lose data, and long paths."""

import os
import subprocess

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


if __name__ == "__main__":
    harness.main()
