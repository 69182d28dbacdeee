"""benchmarks/metadata at a tiny scale: it runs end to end and prints well-formed figures (never a
time: this is a smoke test of the benchmark program, not a benchmark)."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

BASE = os.path.join(os.environ.get("TEST_SRCDIR", ""), os.environ.get("TEST_WORKSPACE", "dfs"))


class MetadataBenchSmoke(unittest.TestCase):
    def test_tiny_run_prints_every_figure(self):
        tmp = tempfile.mkdtemp(prefix="mb-", dir=os.environ.get("TEST_TMPDIR"))
        out = os.path.join(tmp, "figures.json")
        p = subprocess.run([sys.executable, os.path.join(BASE, "benchmarks", "metadata"), "--bin", BASE,
                            "--dir", os.path.join(tmp, "work"), "--clients", "4", "--seconds", "1",
                            "--kills", "1", "--ceiling-seconds", "1", "--commands", "200", "--json", out],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for line in ("ceilings: SQLite direct", "1 replica :", "3 replicas:", "% of 1 replica's rate",
                     "failover over 1 kills: median"):
            self.assertIn(line, p.stdout)
        with open(out) as f:
            res = json.load(f)
        for n in (1, 3):
            r = res["replicas_%d" % n]
            self.assertGreater(r["pairs"], 0)
            self.assertEqual(r["failures"], 0, r["first_error"])
            self.assertGreater(r["pairs_per_s"], 0)
        for k in ("sqlite_t1", "raft1_full_t64", "raft1_batch_on", "raft3_batch_on", "fdatasync"):
            self.assertGreater(res["ceilings"].get(k, 0), 0, k)
        self.assertEqual(len(res["failover_s"]), 1)
        self.assertGreater(res["failover"]["p99_ms"], 0)


if __name__ == "__main__":
    unittest.main()
