"""Tests of the experiment harness (benchmarks/experiment) at a reduced scale, with real clusters.

One run of `experiment store`, `loss`, `simulate`, `plot` and `report` (the steps of `all`, with
smaller knobs than --quick so the suite stays short), then checks of what it wrote: the JSON is valid
and complete, the numbers are sane (fractions in [0, 1], no loss with fewer failed nodes than
replicas, every read-back result equal to what the stored layout and the killed nodes predict, the
closed forms recomputed here), the figures are PNG files the report links to, and bad usage gives a
one-line error. No timing is asserted: times are only checked to be positive and ordered.

Binaries come from the test's runfiles (the same folder layout as bazel-bin: services/metadata/,
services/storage/, cli/, benchmarks/), passed with --bin.
"""

import json
import math
import os
import subprocess
import sys

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
POLICIES = ("random", "min_copy", "buddy", "least_used")
STORE_NODES, SIZE, REPEAT = 3, 100000, 2
LOSS_N, FAILURES, SEEDS, FILES = 12, (2, 4, 6), 2, 12


def runfiles_root():
    """The folder holding services/, cli/, benchmarks/ and tools/ (runfiles, else the checkout)."""
    for base in harness._runfiles_dirs():
        if os.path.isfile(os.path.join(base, "benchmarks", "experiment")):
            return base
    return os.path.dirname(HERE)


ROOT = runfiles_root()
EXPERIMENT = os.path.join(ROOT, "benchmarks", "experiment")


def bin_dir():
    if os.environ.get("DFS_BIN_DIR"):
        return os.environ["DFS_BIN_DIR"]
    if harness._runfiles_dirs():
        return ROOT
    return os.path.join(ROOT, "bazel-bin")


def experiment(*args, timeout=600):
    return subprocess.run([sys.executable, EXPERIMENT] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class Experiments(harness.TestCase):
    out = None
    work = None

    @classmethod
    def setUpClass(cls):
        cls.out = harness.tmpdir("experiment-out-")
        cls.work = harness.tmpdir("experiment-work-")
        common = ["--out", cls.out, "--bin", bin_dir(), "--work-dir", cls.work, "--seed", 3]
        steps = [
            ["store", "--nodes", STORE_NODES, "--file-size", "100KB", "--repeat", REPEAT, "--throttle", "none,20M"],
            ["loss", "--loss-nodes", LOSS_N, "--failures", ",".join(map(str, FAILURES)), "--seeds", SEEDS,
             "--files", FILES],
            ["simulate", "--sim-nodes", 300, "--sim-failed", "0.01,0.05", "--sim-trials", 200, "--sim-per-node", 20,
             "--sim-least-used-units", 400, "--headline-per-node", 10, "--headline-trials", 50],
            ["plot"],
            ["report"],
        ]
        for step in steps:
            p = experiment(*(step + common))
            if p.returncode != 0:
                raise AssertionError("experiment %s exited %d:\n%s" % (step[0], p.returncode, p.stderr[-4000:]))

    def load(self, name):
        with open(os.path.join(self.out, name)) as f:
            return json.load(f)

    def check_summary(self, s):
        self.assertEqual(set(s), {"n", "mean", "median", "p95", "min", "max"})
        self.assertLessEqual(s["min"], s["median"])
        self.assertLessEqual(s["median"], s["max"])
        self.assertLessEqual(s["min"], s["mean"])
        self.assertLessEqual(s["mean"], s["max"])
        self.assertLessEqual(s["p95"], s["max"])

    def check_machine(self, doc):
        for when in ("before", "after"):
            m = doc["machine"][when]
            self.assertGreater(m["disk_mib_per_s"], 0)
            self.assertGreater(m["tcp_mib_per_s"], 0)

    def test_store_json_is_complete(self):
        doc = self.load("store.json")
        self.check_machine(doc)
        samples = doc["samples"]
        self.assertEqual(len(samples), REPEAT * len(POLICIES) * 2)
        for s in samples:
            self.assertEqual((s["nodes"], s["size"]), (STORE_NODES, SIZE))
            self.assertGreater(s["put_seconds"], 0)
            self.assertGreater(s["get_seconds"], 0)
            # N = k = 3: every node holds every fragment, so the busiest put link carries the whole
            # file, and a get reads a third of it from each node.
            self.assertEqual(s["put_busiest_link_bytes"], SIZE)
            self.assertAlmostEqual(s["get_busiest_link_bytes"], SIZE / 3, places=6)
            self.assertEqual(s["distinct_nodes"], 3)
            if s["throttle"]:
                self.assertEqual(s["rate_bytes_per_s"], 20 * 2 ** 20)
                self.assertAlmostEqual(s["put_model_seconds"], SIZE / (20 * 2 ** 20))
            else:
                self.assertIsNone(s["put_model_seconds"])
        self.assertEqual(len(doc["summary"]), len(POLICIES) * 2)
        for x in doc["summary"]:
            self.assertEqual(x["put"]["n"], REPEAT)
            self.check_summary(x["put"])
            self.check_summary(x["get"])

    def test_loss_matches_the_layout_exactly(self):
        doc = self.load("loss.json")
        self.check_machine(doc)
        samples = doc["samples"]
        self.assertEqual(len(samples), len(POLICIES) * SEEDS * len(FAILURES))
        layouts = {(x["nodes"], x["seed"]): {f["path"]: (f["policy"], f["fragments"]) for f in x["files"]}
                   for x in doc["layouts"]}
        self.assertEqual(len(layouts), SEEDS)
        total_lost = 0
        for s in samples:
            self.assertEqual(s["files"], FILES)
            self.assertTrue(0 <= s["lost"] <= s["files"])
            self.assertTrue(0.0 <= s["lost_fraction"] <= 1.0)
            self.assertEqual(len(s["killed_ids"]), s["failed"])
            self.assertEqual(len(set(s["killed_ids"])), s["failed"])
            if s["failed"] < 3:
                self.assertEqual(s["lost"], 0, s)
            # The exact prediction, recomputed here from the recorded layout and killed nodes.
            killed = set(s["killed_ids"])
            mine = {p: frs for p, (pol, frs) in layouts[(s["nodes"], s["seed"])].items() if pol == s["policy"]}
            self.assertEqual(len(mine), FILES)
            for frs in mine.values():
                self.assertEqual(len(frs), 4)
                for fr in frs:
                    self.assertEqual(len(set(fr)), 3)
            predicted = sorted(p for p, frs in mine.items() if any(set(fr) <= killed for fr in frs))
            self.assertEqual(s["lost_paths"], predicted)
            self.assertTrue(s["prediction_matches"])
            self.assertTrue(0.0 <= s["layout_expectation"] <= 1.0)
            if s["health"] is not None:
                # `dfs status --loss` (GetHealth with every copy checked) counts every file in the
                # cluster; the experiment predicted the same files exactly.
                h = s["health"]
                self.assertTrue(0.0 <= h["lost_fraction"] <= 1.0)
                self.assertEqual((h["lost"], h["files"]), (h["predicted_lost"], h["predicted_files"]), h)
            total_lost += s["lost"]
        # With 6 of 12 nodes down some file is lost (each random file: 1-(1-C(6,3)/C(12,3))^4 = 0.33).
        self.assertGreater(total_lost, 0)
        for e in doc["expectations"]:
            self.assertTrue(0.0 <= e["analytic"] <= 1.0)
            if e["failed"] < 3:
                self.assertEqual(e["analytic"], 0.0)
            if e["policy"] == "random":
                p = math.comb(e["failed"], 3) / math.comb(e["nodes"], 3)
                self.assertAlmostEqual(e["analytic"], 1 - (1 - p) ** 4, places=12)
            if e["policy"] in ("min_copy", "buddy"):
                self.assertEqual(e["sets_from"], "catalog")
                # Same expected fraction of fragments as random, fewer files lost.
                p = math.comb(e["failed"], 3) / math.comb(e["nodes"], 3)
                self.assertLessEqual(e["analytic"], 1 - (1 - p) ** 4 + 1e-12)
        for x in doc["summary"]:
            self.check_summary(x["lost_fraction"])
            self.assertTrue(x["predictions_match"])

    def test_simulation_agrees_with_closed_forms(self):
        doc = self.load("simulate.json")
        labels = {r["label"] for r in doc["runs"]}
        self.assertEqual(labels, {"replication 3", "ec 4+2"})
        for r in doc["runs"]:
            for x in r["results"]:
                n, s = r["config"]["nodes"], x["failed"]
                self.assertEqual(s, round(n * x["failed_fraction"]))
                if r["label"] == "replication 3":
                    self.assertAlmostEqual(x["unit_loss"]["closed_form"],
                                           math.comb(s, 3) / math.comb(n, 3), delta=1e-9 + 1e-6 *
                                           x["unit_loss"]["closed_form"])
                al = x["any_loss"]
                self.assertTrue(0.0 <= al["simulated"] <= 1.0)
                # (printed with 6 significant digits)
                self.assertTrue(al["ci95"][0] - 1e-6 <= al["simulated"] <= al["ci95"][1] + 1e-6, al)
                self.assertTrue(0.0 <= al["closed_form"] <= 1.0)
                self.assertTrue(0.0 <= x["file_loss"]["simulated"] <= 1.0)
        self.assertEqual([h["policy"] for h in doc["headline"]], ["random", "min_copy", "buddy"])
        for h in doc["headline"]:
            self.assertEqual((h["nodes"], h["failed"]), (5000, 50))

    def test_figures_and_report(self):
        figs = self.load(os.path.join("plots", "figures.json"))["figures"]
        kinds = {f["kind"] for f in figs}
        self.assertEqual(kinds, {"histogram", "vs_nodes", "loss", "simulate"})
        with open(os.path.join(self.out, "report.md")) as f:
            report = f.read()
        for f in figs:
            path = os.path.join(self.out, "plots", f["file"])
            with open(path, "rb") as png:
                head = png.read(8)
            self.assertEqual(head, b"\x89PNG\r\n\x1a\n", path)
            self.assertGreater(os.path.getsize(path), 2000)
            self.assertIn("](plots/%s)" % f["file"], report)
        for section in ("## Task 1", "## Task 2", "## Simulation at scale"):
            self.assertIn(section, report)
        self.assertNotIn("**NO**", report)

    def test_bad_usage_is_one_line(self):
        p = experiment("loss", "--metadata", "127.0.0.1:1", "--out", self.tmp("x"), "--bin", bin_dir())
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("experiment:", p.stderr)
        p = experiment("store", "--policy", "nearest", "--out", self.tmp("y"))
        self.assertEqual(p.returncode, 2)
        p = experiment("simulate", "--bin", self.tmp("nothing"), "--out", self.tmp("z"))
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)

    def test_kubernetes_job_runs_this_program(self):
        sys.path.insert(0, os.path.join(ROOT, "k8s"))
        try:
            import render  # noqa: E402 (k8s/render.py, with PyYAML)
        except ImportError as e:
            self.skipTest("k8s/render.py needs PyYAML: %s" % e)
        objs = render.render(os.path.join(ROOT, "k8s", "jobs"))
        (job,) = [o for o in objs if o["kind"] == "Job" and o["metadata"]["name"] == "dfs-bench-experiment"]
        (ctr,) = job["spec"]["template"]["spec"]["containers"]
        self.assertEqual(ctr["command"], ["/opt/dfs/benchmarks/experiment"])
        help_text = experiment("all", "--help").stdout
        self.assertIn(ctr["args"][0], ("all", "store", "loss", "simulate"))
        for arg in ctr["args"][1:]:
            self.assertTrue(arg.startswith("--"), arg)
            self.assertIn(arg.split("=", 1)[0], help_text)
        # The flags parse: a dry parse of the Job's command line with --help appended.
        p = experiment(*(ctr["args"] + ["--help"]))
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    harness.main()
