"""dfs shell driven through a real terminal (tmux), as a person would use it."""

import os
import shutil
import subprocess
import tempfile
import time

import harness


class Shell(harness.TestCase):
    def setUp(self):
        if shutil.which("tmux") is None:
            self.fail("tmux is not installed (tools/bootstrap installs it)")
        self.cluster = self.start_cluster(nodes=3)
        d = tempfile.mkdtemp(prefix="dfs-tmux-", dir="/tmp")  # a short socket path
        self.addCleanup(shutil.rmtree, d, True)
        self.sock = os.path.join(d, "s")
        self.hist = os.path.join(d, "history")
        self.addCleanup(self.tmux, "kill-server", check=False)
        dfs = self.cluster.binaries()["dfs"]
        self.tmux("new-session", "-d", "-x", "400", "-y", "50", "env", "DFS_HISTORY=" + self.hist,
                  "DFS_METADATA=" + self.cluster.address,
                  "DFS_TOKEN_FILE=" + self.cluster.admin_token_file, "TERM=xterm", dfs, "shell")
        self.wait_for("Type help")

    def tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-S", self.sock] + list(args), capture_output=True, text=True,
                              check=check, timeout=30).stdout

    def screen(self):
        return self.tmux("capture-pane", "-p", "-S", "-200")

    def wait_for(self, text, timeout=30, after=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.screen()
            if s.count(text) > after:
                return s
            time.sleep(0.05)
        self.fail("%r never appeared on the screen:\n%s" % (text, self.screen()))

    def type(self, line):
        self.tmux("send-keys", "-l", line)
        self.tmux("send-keys", "Enter")

    def at_prompt(self, screen):
        """Whether the shell is waiting at an empty prompt (the last line is the prompt)."""
        lines = [l for l in screen.splitlines() if l.strip()]
        return bool(lines) and lines[-1].rstrip() == "dfs>"

    def run_line(self, line, expect):
        """Type a line; wait until its output shows `expect` and a new prompt follows it."""
        mark = "dfs> " + line
        before = self.screen().count(mark)
        self.type(line)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = self.screen()
            if s.count(mark) > before:
                after = s.split(mark)[-1]
                if expect in after and self.at_prompt(s):
                    return after
            time.sleep(0.05)
        self.fail("%r did not show %r:\n%s" % (line, expect, self.screen()[-3000:]))

    def test_commands_errors_and_exit(self):
        src = harness.random_file(self.tmp("a b"), 300000, seed=81)
        self.run_line("help", "exit, quit")
        self.run_line("put '%s' /sh/one" % src, "stored /sh/one")
        self.run_line("ls -l", "/sh/one")
        self.run_line("get /sh/one \"%s\"" % self.tmp("out"), "sha256 verified")
        self.assertEqual(harness.sha256(self.tmp("out")), harness.sha256(src))
        # Mistakes print a short message; the shell goes on.
        self.run_line("put 'unterminated", "unterminated ' quote")
        self.run_line("frobnicate", "unknown command 'frobnicate'")
        self.run_line("get /sh/one", "usage: dfs get REMOTE LOCAL")
        self.run_line("stat /missing", "no file /missing")
        self.run_line("status", "files:      1")
        # History: the up arrow brings back the last line.
        self.tmux("send-keys", "Up")
        time.sleep(0.3)
        self.assertTrue(self.screen().rstrip().endswith("dfs> status"), self.screen()[-300:])
        self.tmux("send-keys", "C-u")
        self.type("exit")
        alive = lambda: subprocess.run(["tmux", "-S", self.sock, "has-session"],  # noqa: E731
                                       capture_output=True).returncode == 0
        deadline = time.monotonic() + 10
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(alive(), "the shell did not exit")
        with open(self.hist) as f:
            hist = f.read()
        self.assertIn("status", hist)

    def test_ctrl_c_stops_the_transfer_not_the_shell(self):
        src = harness.random_file(self.tmp("big"), 16 << 20, seed=82)
        self.type("put %s /sh/slow --throttle 2M" % src)
        self.wait_for("ETA")
        self.tmux("send-keys", "C-c")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ("interrupted" in self.screen() and
                                                   self.at_prompt(self.screen())):
            time.sleep(0.05)
        self.assertIn("put /sh/slow: interrupted", self.screen())
        # The shell is alive, and the interrupted upload is nowhere.
        out = self.run_line("ls -l /sh/", "PATH")
        self.assertNotIn("/sh/slow", out)
        # Ctrl-C at the prompt clears the line and gives a new prompt.
        self.tmux("send-keys", "-l", "half typed")
        time.sleep(0.2)
        self.tmux("send-keys", "C-c")
        time.sleep(0.3)
        out = self.run_line("nodes", "alive")
        self.assertNotIn("half typed", out)


class ShellScript(harness.TestCase):
    def test_lines_from_a_pipe(self):
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("s"), 5000, seed=83)
        script = "put %s /piped\nls\nbogus\nstat /piped\n" % src
        p = subprocess.run([c.binaries()["dfs"], "shell"], input=script, capture_output=True,
                           text=True, env=c.env(), timeout=60)
        self.assertIn("stored /piped", p.stdout)
        self.assertIn("/piped\n", p.stdout)
        self.assertIn("unknown command 'bogus'", p.stderr)
        self.assertIn("size:        5000 bytes", p.stdout)
        self.assertNotIn("dfs> ", p.stdout)


if __name__ == "__main__":
    harness.main()
