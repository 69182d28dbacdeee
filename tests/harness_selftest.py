"""Self-test of the end-to-end harness, tools/dfscluster.py, tools/cluster and tools/testcount.py.

Needs no real daemons: stand-in dfs-metadata, dfs-storage and dfs scripts (Python, written to a temp
folder) follow the same command-line contract, so the launcher's process handling is tested for real.
A deliberately failing test module runs in a subprocess, so this test passes while checking how
failures are printed and counted; its output is only ever shown indented ("    | "), so tools/test
never counts the sample's cases as this test's.
"""

import json
import os
import signal
import subprocess
import sys
import time
import unittest

import harness  # first: outside Bazel it puts tools/ on sys.path

import dfscluster  # noqa: E402
import testcount  # noqa: E402

FAKE_DAEMON = r'''#!{python}
# Stand-in for dfs-metadata / dfs-storage: the flags of the contract, a ready file, exit 0 on SIGTERM.
# FAKE_MODE (comma-separated) makes it misbehave: die-NAME, never-ready-NAME, slow-ready-NAME,
# ignore-term-NAME, bad-exit-NAME, asan-NAME, badlog-NAME (NAME is dfs-metadata or dfs-storage).
# Its log lines are logfmt, as the real daemons' are (badlog-NAME adds one that is not).
import os, signal, socket, sys, time
name = os.path.basename(sys.argv[0])
def log(level, msg, extra=""):
    print('ts=2026-01-01T00:00:00.000Z level=%s prog=%s msg="%s"%s' % (level, name, msg, extra), flush=True)
modes = set(os.environ.get("FAKE_MODE", "").split(","))
args = sys.argv[1:]
opts = dict(zip(args[0::2], args[1::2]))
need = ["--listen", "--ready-file"] + (["--db"] if name == "dfs-metadata" else ["--data", "--metadata"])
for flag in need:
    if flag not in opts:
        sys.exit("%s: missing %s" % (name, flag))
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
addr = "127.0.0.1:%d" % sock.getsockname()[1]
log("info", "%s serving on %s" % (name, addr), " zone=%s" % opts.get("--zone"))
if "badlog-" + name in modes:
    print('ts=2026-01-01T00:00:00.000Z level=warn prog=%s msg="refused" code=permission denied' % name, flush=True)
if "--data" in opts:
    os.makedirs(opts["--data"], exist_ok=True)
if "die-" + name in modes:
    log("error", "fatal: deliberate startup failure")
    sys.exit(3)
def term(*_):
    log("info", "%s: SIGTERM" % name)
    if "asan-" + name in modes:
        print("==42==ERROR: AddressSanitizer: heap-use-after-free on address 0x1", flush=True)
    sys.exit(5 if "bad-exit-" + name in modes else 0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if "ignore-term-" + name in modes else term)
if "slow-ready-" + name in modes:
    time.sleep(0.3)
if "never-ready-" + name not in modes:
    tmp = opts["--ready-file"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(addr + "\n")
    os.replace(tmp, opts["--ready-file"])
while True:
    time.sleep(3600)
'''

FAKE_DFS = r'''#!{python}
# Stand-in for the dfs CLI: echoes its arguments and DFS_METADATA; `fail` exits 2, `sleep` hangs, `cat` echoes stdin.
import os, sys, time
args = sys.argv[1:]
if args[:1] == ["fail"]:
    sys.stderr.write("dfs: deliberate failure\n")
    sys.exit(2)
if args[:1] == ["sleep"]:
    time.sleep(30)
if args[:1] == ["cat"]:
    sys.stdout.write(sys.stdin.read())
    sys.exit(0)
print("args=%s metadata=%s" % (" ".join(args), os.environ.get("DFS_METADATA", "")))
'''

SAMPLE = r'''
import os, sys, unittest
import harness

class Sample(harness.TestCase):
    def test_pass(self):
        pass

    def test_fail(self):
        self.assertEqual(1, 2, "deliberate failure")

    def test_error(self):
        raise RuntimeError("deliberate error")

    @unittest.skip("deliberately skipped")
    def test_skip(self):
        pass

    def test_subtest(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 1)

    def test_cleanup_fails(self):
        self.addCleanup(lambda: self.fail("deliberate cleanup failure"))


class BrokenFixture(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        raise RuntimeError("deliberate setUpClass error")

    def test_never_runs(self):
        pass


class ClusterChecks(harness.TestCase):
    def test_clean_cluster(self):
        c = self.start_cluster(nodes=2)
        rc, out, _ = self.dfs("ls", "/")
        self.assertIn("metadata=" + c.metadata_address, out)

    def test_bad_exit_fails_the_case(self):
        os.environ["FAKE_MODE"] = "bad-exit-dfs-storage"
        self.addCleanup(os.environ.pop, "FAKE_MODE")
        self.start_cluster(nodes=1)

    def test_body_failure_still_stops_cluster(self):
        c = self.start_cluster(nodes=1)
        with open(os.environ["PIDS_FILE"], "w") as f:
            f.write(" ".join(str(r["pid"]) for r in c.status()))
        self.fail("deliberate failure with a cluster running")


if __name__ == "__main__":
    harness.main()
'''

HANG = r'''
import os, time
import harness

class Hang(harness.TestCase):
    def test_hang(self):
        c = self.start_cluster(nodes=2)
        with open(os.environ["PIDS_FILE"] + ".tmp", "w") as f:
            f.write(" ".join(str(r["pid"]) for r in c.status()))
        os.rename(os.environ["PIDS_FILE"] + ".tmp", os.environ["PIDS_FILE"])
        time.sleep(60)

if __name__ == "__main__":
    harness.main()
'''

# Variables Bazel sets for this test that must not leak into the sample runs.
_SCRUB = ("TESTBRIDGE_TEST_ONLY", "TEST_TOTAL_SHARDS", "TEST_SHARD_INDEX", "TEST_SHARD_STATUS_FILE",
          "XML_OUTPUT_FILE", "TEST_UNDECLARED_OUTPUTS_DIR", "FAKE_MODE")


def indented(text):
    return "\n".join("    | " + line for line in text.splitlines())


def alive(pid):
    return dfscluster._proc_starttime(pid) is not None


def wait_gone(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.02)
    return False


class Fakes:
    """Writes the stand-in binaries once per process."""

    dir = None

    @classmethod
    def bin_dir(cls):
        if cls.dir is None:
            d = harness.tmpdir("fakebin-")
            for name, text in (("dfs-metadata", FAKE_DAEMON), ("dfs-storage", FAKE_DAEMON), ("dfs", FAKE_DFS)):
                p = os.path.join(d, name)
                with open(p, "w") as f:
                    f.write(text.replace("{python}", sys.executable))
                os.chmod(p, 0o755)
            cls.dir = d
        return cls.dir

    @classmethod
    def binaries(cls):
        d = cls.bin_dir()
        return {n: os.path.join(d, n) for n in ("dfs-metadata", "dfs-storage", "dfs")}


class FakeModeMixin:
    def fake_mode(self, mode):
        old = os.environ.get("FAKE_MODE")
        os.environ["FAKE_MODE"] = mode

        def restore():
            if old is None:
                os.environ.pop("FAKE_MODE", None)
            else:
                os.environ["FAKE_MODE"] = old

        self.addCleanup(restore)

    def cluster(self, nodes=3, **kw):
        c = harness.Cluster(nodes=nodes, binaries=Fakes.binaries(), **kw)
        self.addCleanup(c.stop)
        return c


def run_module(source, env=None, timeout=60, wait=True):
    d = harness.tmpdir("sample-")
    path = os.path.join(d, "sample.py")
    with open(path, "w") as f:
        f.write(source)
    e = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    e["PYTHONPATH"] = os.pathsep.join([os.path.dirname(harness.__file__), os.path.dirname(dfscluster.__file__)])
    e["DFS_BIN_DIR"] = Fakes.bin_dir()
    e.setdefault("TEST_TMPDIR", harness.tmpdir("child-"))  # outside Bazel: inside this run's temp folder
    e.update(env or {})
    p = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=e, stdin=subprocess.DEVNULL)
    if not wait:
        return p
    out, _ = p.communicate(timeout=timeout)
    return p.returncode, out


class Runner(unittest.TestCase):
    """The cmocka-style output of harness.main() and how tools/testcount.py counts it."""

    @classmethod
    def setUpClass(cls):
        cls.pids_file = os.path.join(harness.tmpdir("pids-"), "pids")
        cls.rc, cls.out = run_module(SAMPLE, env={"PIDS_FILE": cls.pids_file})

    def check(self, cond, msg):
        if not cond:
            self.fail("%s\nsample output:\n%s" % (msg, indented(self.out)))

    def test_exit_status_is_nonzero(self):
        self.check(self.rc == 1, "exit status %r, want 1" % self.rc)

    def test_case_lines(self):
        lines = self.out.splitlines()
        for line in ("[ RUN      ] Sample.test_pass", "[       OK ] Sample.test_pass",
                     "[ RUN      ] Sample.test_fail", "[  FAILED  ] Sample.test_fail",
                     "[  FAILED  ] Sample.test_error", "[  FAILED  ] Sample.test_subtest",
                     "[  FAILED  ] Sample.test_cleanup_fails", "[  SKIPPED ] Sample.test_skip",
                     "[ RUN      ] BrokenFixture.setUpClass", "[  FAILED  ] BrokenFixture.setUpClass",
                     "[       OK ] ClusterChecks.test_clean_cluster",
                     "[  FAILED  ] ClusterChecks.test_bad_exit_fails_the_case",
                     "[  FAILED  ] ClusterChecks.test_body_failure_still_stops_cluster",
                     "[==========] Running 10 test(s).", "[  PASSED  ] 2 test(s).",
                     "[  FAILED  ] 7 test(s), listed below:"):
            self.check(line in lines, "missing line %r" % line)
        self.check("[ RUN      ] BrokenFixture.test_never_runs" not in lines, "a case ran after setUpClass failed")

    def test_tracebacks_are_shown(self):
        for text in ("AssertionError: 1 != 2 : deliberate failure", "RuntimeError: deliberate error",
                     "deliberate cleanup failure", "subtest (i=1)", "RuntimeError: deliberate setUpClass error",
                     "exited with status 5 after SIGTERM, not 0"):
            self.check(text in self.out, "missing %r" % text)

    def test_failure_shows_daemon_logs(self):
        self.check("--- last lines of" in self.out and "dfs-storage: SIGTERM" in self.out,
                   "no daemon log tail after the failed cluster case")

    def test_cluster_stopped_after_failure(self):
        with open(self.pids_file) as f:
            pids = [int(p) for p in f.read().split()]
        self.assertEqual(len(pids), 2)
        self.assertTrue(wait_gone(pids, 1), "daemons left running: %s" % pids)

    def test_testcount_counts_cases(self):
        cases = testcount.parse_log(self.out)
        passed = sorted(n for n, s in cases.items() if s == "passed")
        failed = sorted(n for n, s in cases.items() if s == "failed")
        self.check(passed == ["ClusterChecks.test_clean_cluster", "Sample.test_pass"], "passed: %s" % passed)
        self.check(failed == ["BrokenFixture.setUpClass", "ClusterChecks.test_bad_exit_fails_the_case",
                              "ClusterChecks.test_body_failure_still_stops_cluster", "Sample.test_cleanup_fails",
                              "Sample.test_error", "Sample.test_fail", "Sample.test_subtest"],
                   "failed: %s" % failed)
        self.assertEqual(cases.get("Sample.test_skip"), "skipped")

    def test_all_passing_exits_zero(self):
        src = "import harness\nclass A(harness.TestCase):\n    def test_a(self): pass\n" \
              "    def test_b(self): pass\nharness.main()\n"
        rc, out = run_module(src)
        self.assertEqual(rc, 0, indented(out))
        self.assertIn("[  PASSED  ] 2 test(s).", out.splitlines())
        self.assertNotIn("FAILED", out)

    def test_filter_and_shards(self):
        src = "import harness\nclass A(harness.TestCase):\n" + "".join(
            "    def test_%d(self): pass\n" % i for i in range(5)) + "harness.main()\n"
        rc, out = run_module(src, env={"TESTBRIDGE_TEST_ONLY": "A.test_3"})
        self.assertEqual((rc, testcount.parse_log(out)), (0, {"A.test_3": "passed"}), indented(out))
        status = os.path.join(harness.tmpdir("shard-"), "status")
        seen = []
        for i in range(2):
            rc, out = run_module(src, env={"TEST_TOTAL_SHARDS": "2", "TEST_SHARD_INDEX": str(i),
                                           "TEST_SHARD_STATUS_FILE": status})
            self.assertEqual(rc, 0, indented(out))
            seen += list(testcount.parse_log(out))
        self.assertEqual(sorted(seen), ["A.test_%d" % i for i in range(5)])
        self.assertTrue(os.path.exists(status))

    def test_no_cases_fails(self):
        rc, out = run_module("import harness\nharness.main()\n")
        self.assertEqual(rc, 1, indented(out))


class Signals(unittest.TestCase):
    """A runner killed mid-test (Bazel's timeout) leaves no daemon behind."""

    def start_hang(self):
        pids_file = os.path.join(harness.tmpdir("hang-"), "pids")
        p = run_module(HANG, env={"PIDS_FILE": pids_file}, wait=False)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        deadline = time.monotonic() + 20
        while not os.path.exists(pids_file):
            if p.poll() is not None or time.monotonic() > deadline:
                self.fail("the hanging sample did not start its cluster:\n" + indented(p.communicate()[0]))
            time.sleep(0.02)
        with open(pids_file) as f:
            pids = [int(x) for x in f.read().split()]
        self.assertEqual(len(pids), 3)
        return p, pids

    def test_sigterm_stops_cluster_and_fails(self):
        p, pids = self.start_hang()
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 1, indented(out))
        lines = out.splitlines()
        self.assertIn("[  FAILED  ] Hang.test_hang", lines, indented(out))
        self.assertNotIn("[       OK ] Hang.test_hang", lines, indented(out))
        self.assertEqual(testcount.parse_log(out), {"Hang.test_hang": "failed"}, indented(out))
        self.assertTrue(wait_gone(pids, 1), "daemons left after SIGTERM: %s" % pids)

    def test_sigkill_of_runner_kills_daemons(self):
        p, pids = self.start_hang()
        p.kill()
        p.communicate(timeout=20)
        self.assertTrue(wait_gone(pids, 5), "daemons outlived a SIGKILLed runner: %s" % pids)


class Launcher(FakeModeMixin, unittest.TestCase):
    """tools/dfscluster.py through harness.Cluster, with the stand-in daemons."""

    def test_up_status_kill_restart_down(self):
        c = self.cluster(nodes=3, zones=2).start()
        rows = c.status()
        self.assertEqual([r["name"] for r in rows], ["metadata", "node-0", "node-1", "node-2"])
        self.assertTrue(all(r["state"] == "running" and r["address"].startswith("127.0.0.1:") for r in rows))
        self.assertEqual([r["zone"] for r in rows], [None, "z0", "z1", "z0"])
        self.assertEqual(c.address, rows[0]["address"])
        with open(c.path("node-1", "log")) as f:
            log = f.read()
        self.assertIn("--metadata %s" % c.address, log)
        self.assertIn("zone=z1", log)
        state = c.load_state()
        self.assertEqual(state["processes"]["node-2"]["cmd"][0], Fakes.binaries()["dfs-storage"])

        (victim,) = c.kill_nodes(1, seed=3)
        vrec = [r for r in c.status() if r["name"] == victim][0]
        self.assertEqual(vrec["state"], "killed")
        self.assertFalse(alive(vrec["pid"]))

        vi = int(victim.split("-")[1])
        other = next(i for i in range(3) if i != vi)
        old = [r for r in c.status() if r["name"] == "node-%d" % other][0]
        res = c.stop_node(other)
        self.assertEqual((res["how"], res["exit_code"]), ("sigterm", 0))
        with self.assertRaisesRegex(dfscluster.ClusterError, "not running"):
            c.stop_node(other)
        c.start_node(other)
        c.start_node(vi)
        c.start_node(3)  # a new index adds a node
        with self.assertRaisesRegex(dfscluster.ClusterError, "already running"):
            c.start_node(3)
        rows = {r["name"]: r for r in c.status()}
        self.assertNotEqual(rows["node-%d" % other]["pid"], old["pid"])
        self.assertEqual(sorted(c.running()), ["metadata", "node-0", "node-1", "node-2", "node-3"])
        self.assertEqual(rows["node-3"]["zone"], "z1")

        pids = [r["pid"] for r in c.status() if r["state"] == "running"]
        self.assertEqual(c.stop(), [])
        self.assertTrue(wait_gone(pids, 0.5))
        self.assertEqual({r["state"] for r in c.status()}, {"stopped"})

    def test_second_up_fails_while_running(self):
        c = self.cluster(nodes=1).start()
        other = harness.Cluster(nodes=1, dir=c.dir, binaries=Fakes.binaries())
        with self.assertRaisesRegex(dfscluster.ClusterError, "already running"):
            other.up(1)
        self.assertEqual(len(c.running()), 2)

    def test_up_after_down_reuses_dir(self):
        c = self.cluster(nodes=2).start()
        marker = c.path("node-1", "data", "node.id")
        with open(marker, "w") as f:
            f.write("kept\n")
        self.assertEqual(c.stop(), [])
        c.start()
        with open(marker) as f:
            self.assertEqual(f.read(), "kept\n")
        self.assertEqual(len(c.running()), 3)
        self.assertEqual(c.stop(), [])

    def test_stale_ready_file_is_not_trusted(self):
        c = self.cluster(nodes=0)
        os.makedirs(c.path("metadata"))
        with open(c.path("metadata", "ready"), "w") as f:
            f.write("127.0.0.1:1\n")
        self.fake_mode("slow-ready-dfs-metadata")
        c.start()
        self.assertNotEqual(c.address, "127.0.0.1:1")

    def test_death_before_ready_shows_log_and_cleans_up(self):
        self.fake_mode("die-dfs-storage")
        c = self.cluster(nodes=3)
        with self.assertRaises(dfscluster.ClusterError) as cm:
            c.start()
        msg = str(cm.exception)
        self.assertRegex(msg, r"node-\d exited with status 3 before it was ready")
        self.assertIn("fatal: deliberate startup failure", msg)
        self.assertEqual(c.running(), [])

    def test_ready_timeout(self):
        self.fake_mode("never-ready-dfs-metadata")
        c = self.cluster(nodes=1, ready_timeout=0.3)
        t0 = time.monotonic()
        with self.assertRaisesRegex(dfscluster.ClusterError, "metadata not ready after"):
            c.start()
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(c.running(), [])

    def test_problems_reported(self):
        for mode, want in (("bad-exit-dfs-storage", "exited with status 5 after SIGTERM"),
                           ("asan-dfs-metadata", "ERROR: AddressSanitizer"),
                           ("badlog-dfs-storage", "not strict logfmt"),
                           ("ignore-term-dfs-storage", "did not exit within")):
            with self.subTest(mode=mode):
                self.fake_mode(mode)
                c = self.cluster(nodes=1, stop_timeout=0.3).start()
                pids = [r["pid"] for r in c.status()]
                problems = c.stop()
                self.assertTrue(any(want in p for p in problems), problems)
                self.assertTrue(wait_gone(pids, 1))

    def test_unexpected_death_reported(self):
        c = self.cluster(nodes=1).start()
        node = [r for r in c.status() if r["name"] == "node-0"][0]
        os.kill(node["pid"], signal.SIGKILL)
        wait_gone([node["pid"]])
        problems = c.stop()
        self.assertTrue(any("node-0" in p and "died on its own" in p for p in problems), problems)

    def test_down_spares_a_reused_pid(self):
        c = self.cluster(nodes=1).start()
        self.assertEqual(c.stop(), [])
        stranger = subprocess.Popen(["sleep", "30"])
        self.addCleanup(stranger.wait)
        self.addCleanup(stranger.kill)
        state = c.load_state()
        rec = state["processes"]["node-0"]
        rec.update(state="running", pid=stranger.pid, starttime=dfscluster._proc_starttime(stranger.pid))
        c._save_state(state)
        self.assertEqual(c.running(), [])
        c.stopped = False
        c.stop()
        self.assertIsNone(stranger.poll(), "down signalled a process it did not start")

    def test_dfs_helper(self):
        c = self.cluster(nodes=1).start()
        rc, out, err = c.dfs("ls", "-l", "/x")
        self.assertEqual((rc, out.strip()), (0, "args=ls -l /x metadata=%s" % c.address))
        rc, out, err = c.dfs("fail", check=False)
        self.assertEqual((rc, err.strip()), (2, "dfs: deliberate failure"))
        with self.assertRaisesRegex(AssertionError, "exited with status 2"):
            c.dfs("fail")
        self.assertEqual(c.dfs("cat", input="hello")[1], "hello")
        self.assertEqual(c.dfs("cat", input=b"\x00\xff")[1], b"\x00\xff")
        _, out, _ = c.dfs("x", env={"DFS_METADATA": None}, metadata="")
        self.assertIn("metadata=\n", out + "\n")
        with self.assertRaisesRegex(AssertionError, "timed out"):
            c.dfs("sleep", timeout=0.3)

    def test_files(self):
        d = harness.tmpdir()
        a = harness.random_file(os.path.join(d, "a"), 3 << 20 | 5, seed=7)
        b = harness.random_file(os.path.join(d, "b"), 3 << 20 | 5, seed=7)
        z = harness.random_file(os.path.join(d, "z"), 0, seed=7)
        self.assertEqual(os.path.getsize(a), 3 << 20 | 5)
        self.assertEqual(harness.sha256(a), harness.sha256(b))
        self.assertNotEqual(harness.sha256(a), harness.sha256(harness.random_file(os.path.join(d, "c"), 100, 8)))
        self.assertEqual(harness.sha256(z), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


class ClusterCommand(unittest.TestCase):
    """tools/cluster, the command line over dfscluster."""

    def tool(self):
        for base in harness._runfiles_dirs() + [dfscluster.REPO_ROOT]:
            p = os.path.join(base, "tools", "cluster")
            if os.path.isfile(p):
                return p
        self.fail("tools/cluster not found")

    def run_tool(self, *args, want=0):
        e = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        p = subprocess.run([sys.executable, self.tool()] + list(args), capture_output=True, text=True, env=e,
                           timeout=60)
        self.assertEqual(p.returncode, want, "tools/cluster %s:\n%s" % (" ".join(args), indented(p.stdout + p.stderr)))
        return p.stdout, p.stderr

    def test_up_status_kill_down(self):
        d = os.path.join(harness.tmpdir("cli-"), "c")
        common = ["--dir", d]
        self.addCleanup(lambda: subprocess.run([sys.executable, self.tool(), "down"] + common, capture_output=True))
        out, _ = self.run_tool("up", "--nodes", "3", "--bin", Fakes.bin_dir(), *common)
        self.assertRegex(out, r"^export DFS_METADATA=127\.0\.0\.1:\d+ DFS_TOKEN_FILE=\S+/metadata/admin\.token\n$")
        self.run_tool("up", "--nodes", "3", "--bin", Fakes.bin_dir(), *common, want=1)
        out, _ = self.run_tool("status", *common)
        self.assertEqual(out.count(" running "), 4, out)
        out, _ = self.run_tool("kill", "--nodes", "2", "--seed", "1", *common)
        self.assertRegex(out, r"^killed: node-\d node-\d\n$")
        out, _ = self.run_tool("status", "--json", *common)
        states = sorted(r["state"] for r in json.loads(out)["processes"])
        self.assertEqual(states, ["killed", "killed", "running", "running"])
        pids = [r["pid"] for r in json.loads(out)["processes"]]
        self.run_tool("down", *common)
        self.assertTrue(wait_gone(pids, 0.5))
        out, _ = self.run_tool("up", "--nodes", "3", "--bin", Fakes.bin_dir(), *common)
        out, _ = self.run_tool("status", *common)
        self.assertEqual(out.count(" running "), 4, out)
        self.run_tool("down", *common)

    def test_bad_usage(self):
        _, err = self.run_tool(want=2)
        self.run_tool("up", want=2)
        self.run_tool("up", "--nodes", "x", want=2)
        self.run_tool("frobnicate", want=2)
        d = os.path.join(harness.tmpdir("cli-"), "none")
        _, err = self.run_tool("kill", "--nodes", "1", "--dir", d, want=1)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        _, err = self.run_tool("up", "--nodes", "1", "--dir", d, "--bin", d, want=1)
        self.assertIn("not found", err)


CMOCKA_LOG = """exec ${PAGER:-/usr/bin/less} "$0" || exit 1
Executing tests from //x:y_test
[==========] Running 5 test(s).
[ RUN      ] test_ok
[       OK ] test_ok
[ RUN      ] test_bad
[  ERROR   ] --- 0x1 != 0x2
[   LINE   ] --- x.c:9: error: Failure!
[  FAILED  ] test_bad
[ RUN      ] test_setup_error
[  ERROR   ] test_setup_error
[ RUN      ] test_skipped
[  SKIPPED ] test_skipped
[ RUN      ] test_crash
[==========] 5 test(s) run.
[  PASSED  ] 1 test(s).
[  FAILED  ] 1 test(s), listed below:
[  FAILED  ] test_bad

 1 FAILED TEST(S)
"""


class Counting(unittest.TestCase):
    """tools/testcount.py: cases from cmocka logs and the build event file."""

    def test_parse_cmocka_log(self):
        self.assertEqual(testcount.parse_log(CMOCKA_LOG), {
            "test_ok": "passed", "test_bad": "failed", "test_setup_error": "failed",
            "test_skipped": "skipped", "test_crash": "failed"})

    def test_count_from_build_events(self):
        d = harness.tmpdir("bep-")

        def log(name, text):
            p = os.path.join(d, name)
            with open(p, "w") as f:
                f.write(text)
            return "file://" + p

        ok_log = log("ok.log", "[ RUN      ] a\n[       OK ] a\n[ RUN      ] b\n[       OK ] b\n")
        events = [
            {"id": {"targetConfigured": {"label": "//p:ok_test"}}, "configured": {"targetKind": "cc_test rule"}},
            {"id": {"targetConfigured": {"label": "//p:lib"}}, "configured": {"targetKind": "cc_library rule"}},
            {"id": {"targetConfigured": {"label": "//p:plain_test"}}, "configured": {"targetKind": "sh_test rule"}},
            {"id": {"targetConfigured": {"label": "//p:crash_test"}}, "configured": {"targetKind": "cc_test rule"}},
            {"id": {"targetConfigured": {"label": "//p:broken_test"}}, "configured": {"targetKind": "cc_test rule"}},
            {"id": {"targetConfigured": {"label": "//p:flaky_test"}}, "configured": {"targetKind": "cc_test rule"}},
            {"id": {"progress": {}}, "progress": {"stderr": "ERROR: package contains errors: q/r\n"}},
            {"id": {"testResult": {"label": "//p:ok_test", "run": 1, "shard": 1, "attempt": 1}},
             "testResult": {"testActionOutput": [{"name": "test.log", "uri": ok_log}], "cachedLocally": True}},
            {"id": {"testResult": {"label": "//p:ok_test", "run": 2, "shard": 1, "attempt": 1}},
             "testResult": {"testActionOutput": [{"name": "test.log", "uri": ok_log}]}},
            {"id": {"testSummary": {"label": "//p:ok_test"}}, "testSummary": {"overallStatus": "PASSED"}},
            {"id": {"testResult": {"label": "//p:plain_test", "run": 1, "shard": 1, "attempt": 1}},
             "testResult": {"testActionOutput": [{"name": "test.log", "uri": log("plain.log", "hello\n")}]}},
            {"id": {"testSummary": {"label": "//p:plain_test"}}, "testSummary": {"overallStatus": "PASSED"}},
            {"id": {"testResult": {"label": "//p:crash_test", "run": 1, "shard": 1, "attempt": 1}},
             "testResult": {"testActionOutput": [{"name": "test.log", "uri": log("crash.log", "[ RUN      ] a\n"
                                                  "[       OK ] a\nAddressSanitizer: leaks\n")}]}},
            {"id": {"testSummary": {"label": "//p:crash_test"}}, "testSummary": {"overallStatus": "FAILED"}},
            {"id": {"targetCompleted": {"label": "//p:broken_test"}}, "completed": {"success": False}},
            {"id": {"targetCompleted": {"label": "//p:lib"}}, "completed": {"success": True}},
            {"id": {"testResult": {"label": "//p:flaky_test", "run": 1, "shard": 1, "attempt": 1}},
             "testResult": {"testActionOutput": [{"name": "test.log", "uri": log("f1.log", "[ RUN      ] a\n"
                                                  "[  FAILED  ] a\n")}]}},
            {"id": {"testResult": {"label": "//p:flaky_test", "run": 1, "shard": 1, "attempt": 2}},
             "testResult": {"testActionOutput": [{"name": "test.log", "uri": log("f2.log", "[ RUN      ] a\n"
                                                  "[       OK ] a\n")}]}},
            {"id": {"testSummary": {"label": "//p:flaky_test"}}, "testSummary": {"overallStatus": "FLAKY"}},
        ]
        bep = os.path.join(d, "bep.json")
        with open(bep, "w") as f:
            f.write("".join(json.dumps(e) + "\n" for e in events) + '{"truncated')
        errors = {}
        targets = testcount.read_bep(bep, errors)
        out = open(os.path.join(d, "summary"), "w+")
        passed, failed, cases = testcount.count(targets, 1, out=out, loading_errors=errors)
        out.seek(0)
        text = out.read()
        self.assertEqual((passed, failed), (5, 3), text)  # ok 2 + plain 1 + crash 1 + flaky 1; crash, broken, q/r
        self.assertEqual(sorted(label for label, _ in cases), ["//p:broken_test", "//p:crash_test", "//q/r"])
        self.assertEqual(text.splitlines()[-1], "5 passed, 3 failed")
        self.assertIn("(cached)", text)

    def test_bazel_failure_without_targets_counts(self):
        d = harness.tmpdir("bep-")
        bep = os.path.join(d, "bep.json")
        open(bep, "w").close()
        out = open(os.path.join(d, "summary"), "w+")
        self.assertEqual(testcount.count(testcount.read_bep(bep), 2, out=out)[:2], (0, 1))
        self.assertEqual(testcount.count({}, 4, out=out)[:2], (0, 0))

    def test_missing_build_events_do_not_hide_a_failure(self):
        missing = os.path.join(harness.tmpdir("bep-"), "gone.json")
        for bazel_exit, want in ((3, 1), (1, 1), (0, 0)):
            with self.subTest(bazel_exit=bazel_exit):
                self.assertEqual(testcount.main(["--bep", missing, "--bazel-exit", str(bazel_exit)]), want)

if __name__ == "__main__":
    harness.main()
