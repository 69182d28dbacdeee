"""The load generator (benchmarks/load_gen) for a few seconds against a real cluster: correctness
only, never a time. Every get must return the bytes that were put, every ls exactly what the client
holds, and no operation may fail."""

import json
import os
import subprocess

import harness


def load_gen():
    base = os.path.join(os.environ.get("TEST_SRCDIR", ""), os.environ.get("TEST_WORKSPACE", "dfs"))
    for p in (os.path.join(base, "benchmarks", "load_gen"),
              os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bazel-bin", "benchmarks",
                           "load_gen")):
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise AssertionError("benchmarks/load_gen not found: add //benchmarks:load_gen to the test's data")


class LoadSmoke(harness.TestCase):
    def run_gen(self, *args):
        p = subprocess.run([load_gen()] + [str(a) for a in args], capture_output=True, text=True, timeout=120,
                           env=self.cluster.env())
        self.assertTrue(p.stdout.strip(), "no output; stderr: " + p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(p.returncode, 0, "load_gen %s: %s\n%s" % (args[0], json.dumps(out), p.stderr))
        return out

    def test_mixed_load_is_correct(self):
        c = self.start_cluster(nodes=3)
        out = self.run_gen("run", "--metadata", c.address, "--clients", 8, "--seconds", 3, "--max-files", 6,
                           "--sizes", "0,1,1K,65537,300K", "--work-dir", self.tmp(""), "--prefix", "/smoke")
        self.assertEqual(out["errors"], 0, out["messages"])
        self.assertEqual(out["mismatches"], 0, out["messages"])
        for op in ("put", "get", "ls", "rm"):
            self.assertGreater(out["ops"][op]["ok"], 0, "no %s ran" % op)
            self.assertEqual(out["ops"][op]["errors"], 0)
        # What the generator says it left is what the catalog lists.
        _, listed, _ = self.dfs("ls", "/smoke/")
        self.assertEqual(len(listed.split()), out["files_left"])

    def test_small_files_are_correct(self):
        c = self.start_cluster(nodes=3)
        out = self.run_gen("small", "--metadata", c.address, "--clients", 4, "--seconds", 1, "--size", "1K",
                           "--work-dir", self.tmp(""), "--prefix", "/small")
        self.assertEqual(out["errors"], 0, out["messages"])
        self.assertEqual(out["mismatches"], 0, out["messages"])
        self.assertGreater(out["put"]["ops"]["put"]["ok"], 0)
        self.assertGreater(out["get"]["ops"]["get"]["ok"], 0)
        # small mode removes what it stored.
        self.assertEqual(self.dfs("ls", "/small/")[1], "")

    def test_ceilings_run(self):
        c = self.start_cluster(nodes=1)
        for args in (("rpc-ceiling", "--clients", 2, "--seconds", 0.5),
                     ("rpc-ceiling", "--clients", 2, "--seconds", 0.5, "--target", c.address),
                     ("sqlite-ceiling", "--dir", self.tmp(""), "--seconds", 0.5),
                     ("fsync-ceiling", "--dir", self.tmp(""), "--clients", 2, "--seconds", 0.5)):
            out = self.run_gen(*args)
            rate = out.get("calls_per_s", out.get("commits_per_s", out.get("ops_per_s")))
            self.assertGreater(rate, 0, json.dumps(out))
        self.assertEqual(os.listdir(self.tmp("")), [], "a ceiling left files behind")


if __name__ == "__main__":
    harness.main()
