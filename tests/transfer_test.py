"""The transfer engine as a user sees it: bandwidth limits, parallelism, resumed downloads, and the
progress line on a terminal (driven through tmux)."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import harness


def timed(tc, *args):
    t0 = time.monotonic()
    tc.dfs(*args)
    return time.monotonic() - t0


class Throttle(harness.TestCase):
    def test_per_link_and_total_limits(self):
        self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("f"), 8 << 20, seed=61)
        # Lower bounds only (a slow machine is allowed): bytes on the busiest link (or in all, for
        # --max-rate) over the rate, less the first message, which goes at once, less 10%.
        def at_least(nbytes, rate, first):
            return 0.9 * (nbytes - first) / rate

        M = 1 << 20
        # 3 nodes, 3 replicas: every link carries the whole 8 MiB; messages of rate/16.
        self.assertGreater(timed(self, "put", "-q", "--throttle", "4M", src, "/t"),
                           at_least(8 * M, 4 * M, M // 4))
        self.assertGreater(timed(self, "get", "-q", "--max-rate", "4M", "/t", self.tmp("o")),
                           at_least(8 * M, 4 * M, M // 8))
        self.assertEqual(harness.sha256(self.tmp("o")), harness.sha256(src))
        # --max-rate holds all 24 MiB of copies together.
        self.assertGreater(timed(self, "put", "-q", "--force", "--max-rate", "12M", src, "/t"),
                           at_least(24 * M, 12 * M, 12 * M // 16))
        # Erasure 2+1: each fragment (4 MiB, 1 MiB cells) on its own link.
        self.assertGreater(timed(self, "put", "-q", "--ec", "2+1", "--throttle", "2M", src, "/te"),
                           at_least(4 * M, 2 * M, M))
        self.assertGreater(timed(self, "get", "-q", "--throttle", "1M", "/te", self.tmp("e")),
                           at_least(4 * M, M, M))
        self.assertEqual(harness.sha256(self.tmp("e")), harness.sha256(src))

    def test_parallel_one_stream_at_a_time(self):
        self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("f"), (5 << 20) + 3, seed=62)
        self.dfs("put", "--parallel", "1", src, "/p")
        self.dfs("get", "--parallel", "1", "/p", self.tmp("o"))
        self.assertEqual(harness.sha256(self.tmp("o")), harness.sha256(src))

    def test_bad_rates(self):
        self.start_cluster(nodes=3)
        for args in (["--throttle", "fast"], ["--max-rate", "0"], ["--parallel", "0"],
                     ["--throttle", "10Q"]):
            rc, _, err = self.dfs("get", "/x", self.tmp("o"), *args, check=False)
            self.assertEqual(rc, 2, err)


class Resume(harness.TestCase):
    def interrupted_get(self, c, remote, out):
        """Start a throttled get and interrupt it (SIGINT) once part of the file has arrived."""
        p = subprocess.Popen([c.binaries()["dfs"], "get", "--throttle", "4M", remote, out],
                             env=c.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        return p.returncode, err

    def test_interrupted_get_resumes(self):
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("f"), 24 << 20, seed=63)
        self.dfs("put", src, "/r")
        out = self.tmp("r.out")
        rc, err = self.interrupted_get(c, "/r", out)
        self.assertEqual(rc, 130, err)
        self.assertIn("dfs get --resume /r", err)
        self.assertTrue(os.path.exists(out + ".dfs-part"))
        self.assertFalse(os.path.exists(out))
        _, js, _ = self.dfs("get", "--json", "--resume", "/r", out)
        self.assertGreater(json.loads(js)["resumed_bytes"], 0)
        self.assertEqual(harness.sha256(out), harness.sha256(src))
        self.assertFalse(os.path.exists(out + ".dfs-part"))
        self.assertFalse(os.path.exists(out + ".dfs-part.state"))

    def test_resume_of_a_replaced_file_starts_over(self):
        c = self.start_cluster(nodes=3)
        a = harness.random_file(self.tmp("a"), 24 << 20, seed=64)
        b = harness.random_file(self.tmp("b"), 24 << 20, seed=65)
        self.dfs("put", a, "/r")
        out = self.tmp("r.out")
        rc, _ = self.interrupted_get(c, "/r", out)
        self.assertEqual(rc, 130)
        self.dfs("put", "--force", b, "/r")  # a new file at the same path: a new id
        _, js, _ = self.dfs("get", "--json", "--resume", "/r", out)
        self.assertEqual(json.loads(js)["resumed_bytes"], 0)
        self.assertEqual(harness.sha256(out), harness.sha256(b))


class ProgressLine(harness.TestCase):
    """A progress line on a terminal, none when stderr is not one."""

    def setUp(self):
        if shutil.which("tmux") is None:
            self.fail("tmux is not installed (tools/bootstrap installs it)")
        # A Unix socket path must be short (108 bytes): not under Bazel's deep temp folder.
        d = tempfile.mkdtemp(prefix="dfs-tmux-", dir="/tmp")
        self.sock = os.path.join(d, "s")
        self.addCleanup(shutil.rmtree, d, True)
        self.addCleanup(self.tmux, "kill-server", check=False)

    def tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-S", self.sock] + list(args), capture_output=True, text=True,
                              check=check, timeout=30).stdout

    def test_bar_updates_in_place_on_a_terminal(self):
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("f"), 12 << 20, seed=66)
        dfs = c.binaries()["dfs"]
        done = self.tmp("done")
        cmd = "DFS_METADATA=%s DFS_TOKEN_FILE=%s %s put --throttle 4M %s /bar; echo exit=$? > %s" % (
            c.address, c.admin_token_file, dfs, src, done)
        self.tmux("new-session", "-d", "-x", "120", "-y", "20", "sh", "-c", cmd + "; sleep 30")
        seen = []
        deadline = time.monotonic() + 60
        while not os.path.exists(done) and time.monotonic() < deadline:
            seen.append(self.tmux("capture-pane", "-p"))
            time.sleep(0.2)
        final = self.tmux("capture-pane", "-p")
        self.assertTrue(os.path.exists(done), "the put did not finish")
        with open(done) as f:
            self.assertEqual(f.read().strip(), "exit=0")
        during = [s for s in seen if "ETA" in s]
        self.assertTrue(during, "no progress line was seen:\n" + "\n---\n".join(seen[-3:]))
        line = next(l for l in during[0].splitlines() if "ETA" in l)
        self.assertIn("put /bar", line)
        self.assertRegex(line, r"\d+% \[[=> ]+\] ")
        # The first redraw may come before any rate is known ("0 B/s"); later ones show it.
        rates = [l for s in during for l in s.splitlines() if "ETA" in l and "MiB/s" in l]
        self.assertTrue(rates, "no progress line showed a rate:\n" + "\n".join(during[-3:]))
        # In place: one line for the transfer, however many updates there were.
        self.assertEqual(sum("put /bar" in l for l in final.splitlines()), 1, final)
        self.assertRegex(final, r"put /bar 100% .* in ")
        self.assertIn("stored /bar", final)

    def test_no_progress_when_not_a_terminal_or_quiet(self):
        self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("f"), 4 << 20, seed=67)
        _, out, err = self.dfs("put", "--throttle", "8M", src, "/np")
        self.assertNotIn("ETA", err)
        self.assertNotIn("\r", err)
        self.assertIn("stored /np", out)
        _, out, err = self.dfs("get", "-q", "/np", self.tmp("o"))
        self.assertEqual(out + err, "")


if __name__ == "__main__":
    harness.main()
