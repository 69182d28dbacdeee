"""Every program's command line (one option table each, common/options): -h and --help print the
usage on stdout and exit 0 (wherever they stand), a command's -h its own help, and a bad option,
a missing or malformed value or a stray argument is one short line on stderr with exit status 2,
however long what was typed. No program is started for real: each run ends in its parser."""

import os
import subprocess

import harness

# name -> path in the runfiles (the daemons' and the CLI's from the harness, which follows them
# if they move); the arguments before the options (load_gen takes a MODE first).
PROGRAMS = {
    "dfs": (harness.RUNFILES_PATHS["dfs"], []),
    "dfs-metadata": (harness.RUNFILES_PATHS["dfs-metadata"], []),
    "dfs-storage": (harness.RUNFILES_PATHS["dfs-storage"], []),
    "dfs-gateway": ("gateway/dfs-gateway", []),
    "tcp_ceiling": ("benchmarks/tcp_ceiling", []),
    "ec_bench": ("benchmarks/ec_bench", []),
    "simulate": ("benchmarks/simulate", []),
    "load_gen": ("benchmarks/load_gen", ["run"]),
    "repl_bench": ("benchmarks/repl_bench", []),
    "s3inspect": ("gateway/s3/s3inspect", []),
    "dfs-mount": ("mount/dfs-mount", []),
    "cpu_floor": ("benchmarks/cpu_floor", ["sha256"]),
    "catalog_bench": ("benchmarks/catalog_bench", []),
    "metadata_gen": ("benchmarks/metadata_gen", ["pairs"]),
}
# One malformed value per program, and what the error says.
MALFORMED = {
    "dfs": (["--timeout", "soon", "ls"], "--timeout must be a whole number from 1 to 3600000, not 'soon'"),
    "dfs-metadata": (["--db", "c.db", "--threads", "4x"], "--threads must be a whole number from 1 to 256"),
    "dfs-storage": (["--data", "d", "--metadata", "h:1", "--threads", "-1"], "--threads must be a whole number"),
    "dfs-gateway": (["--metadata", "h:1", "--max-upload", "12Q"], "--max-upload: "),
    "tcp_ceiling": (["2s"], "SECONDS must be a number above 0 and below 600, not '2s'"),
    "ec_bench": (["--rounds", "three"], "--rounds must be a whole number from 1 to 16, not 'three'"),
    "simulate": (["--per-node", "1e3"], "--per-node must be a number above 0, not '1e3'"),
    "load_gen": (["--seconds", "0"], "--seconds must be a number above 0 and at most 86400, not '0'"),
    "repl_bench": (["--kills", "1001"], "--kills must be a whole number from 1 to 1000, not '1001'"),
    "s3inspect": (["--slice", "x"], "--slice must be a whole number"),
    "dfs-mount": (["--metadata", "h:1", "--attr-timeout", "soon", "/mnt"], "--attr-timeout must be a number"),
    "cpu_floor": (["--size", "12Q"], "--size"),
    "catalog_bench": (["--threads", "1,0"], "--threads takes up to 8 thread counts from 1 to 64"),
    "metadata_gen": (["--clients", "0"], "--clients must be a whole number from 1 to 1024, not '0'"),
}
LONG = "--" + "x" * 10000


def binary(rel):
    for base in harness._runfiles_dirs():
        p = os.path.join(base, rel)
        if os.path.isfile(p):
            return p
    p = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bazel-bin", rel)
    if os.path.isfile(p):
        return p
    raise AssertionError("%s not found: add it to the test's data" % rel)


def run(name, *args, env=None):
    rel, head = PROGRAMS[name]
    e = {k: v for k, v in os.environ.items() if not k.startswith("DFS_")}
    e.update(env or {})
    p = subprocess.run([binary(rel)] + head + list(args), capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, env=e, errors="replace")
    return p.returncode, p.stdout, p.stderr


class Options(harness.TestCase):
    def usage_error(self, name, args, says=None, env=None):
        """One short line on stderr starting with the program's name, nothing on stdout, exit 2."""
        rc, out, err = run(name, *args, env=env)
        self.assertEqual(rc, 2, err[:300])
        self.assertEqual(out, "")
        self.assertEqual(len(err.splitlines()), 1, err[:500])
        self.assertTrue(err.startswith(name + ": "), err[:200])
        self.assertLess(len(err), 300, err[:400])
        if says is not None:
            self.assertIn(says, err)
        return err

    def test_help(self):
        for name in PROGRAMS:
            for args in (["-h"], ["--help"]):
                with self.subTest(program=name, args=args):
                    rc, out, err = run(name, *args)
                    self.assertEqual((rc, err), (0, ""), out)
                    self.assertTrue(out.startswith("usage: " + name + " "), out[:200])
                    # Generated from the table: every line fits, and -h itself is listed.
                    self.assertLessEqual(max(len(line) for line in out.splitlines()), 100, out)
                    self.assertIn("-h, --help", out)

    def test_help_among_other_options(self):
        # -h wins over what else is (or is not) given: it is never taken for another option.
        for name, args in (("dfs-storage", ["--data", "/nonexistent", "-h"]),
                           ("dfs-storage", ["-h", "--token-file", "/nonexistent"]),
                           ("dfs-metadata", ["--db", "/nonexistent/x.db", "-h"]),
                           ("dfs-gateway", ["--listen", "127.0.0.1:0", "-h"]),
                           ("dfs", ["--json", "-h"]),
                           ("ec_bench", ["--k", "3", "--help"])):
            with self.subTest(program=name, args=args):
                rc, out, err = run(name, *args)
                self.assertEqual((rc, err), (0, ""), out)
                self.assertIn("usage", out.lower())

    def test_command_help(self):
        # A command's -h (or `dfs help COMMAND`) is its own: its usage and its options only.
        for args in (["put", "-h"], ["put", "a", "--help"], ["help", "put"]):
            with self.subTest(args=args):
                rc, out, err = run("dfs", *args)
                self.assertEqual((rc, err), (0, ""), out)
                self.assertTrue(out.startswith("usage: dfs put LOCAL REMOTE"), out[:200])
                for flag in ("--replicas K", "--ec K+M", "--throttle RATE"):
                    self.assertIn(flag, out)
                self.assertNotIn("--loss", out)
        rc, out, _ = run("dfs", "-h")
        self.assertIn("  put LOCAL REMOTE ", out)
        self.assertIn("--metadata HOST:PORT", out)
        self.assertIn("env DFS_METADATA", out)
        self.assertNotIn("--replicas", out)
        rc, out, _ = run("load_gen", "-h")  # after `run`: its own help
        self.assertTrue(out.startswith("usage: load_gen run"), out[:200])

    def test_version(self):
        for name in ("dfs", "dfs-metadata", "dfs-storage", "dfs-gateway", "dfs-mount"):
            with self.subTest(program=name):
                rc, out, err = run(name, "--version")
                self.assertEqual((rc, err), (0, ""))
                self.assertRegex(out, r"^%s \d+\.\d+\.\d+\n$" % name)

    def test_bad_options_are_one_short_line(self):
        bad = [["--no-such-option"], ["-Z"], [LONG], [LONG + "=1"]]
        for name in PROGRAMS:
            for args in bad:
                with self.subTest(program=name, args=[a[:20] for a in args]):
                    err = self.usage_error(name, args)
                    if args[0] in ("--no-such-option", "-Z"):
                        self.assertIn("unknown option '%s'" % args[0], err)

    def test_malformed_values(self):
        self.assertEqual(set(MALFORMED), set(PROGRAMS))
        for name, (args, says) in MALFORMED.items():
            with self.subTest(program=name, args=args):
                self.usage_error(name, args, says)

    def test_metadata_peers(self):
        """--replica-id and --peers (a replicated catalog): refused as usage errors before anything opens."""
        peers = "1=127.0.0.1:7101=127.0.0.1:7001,2=127.0.0.1:7102=127.0.0.1:7002"
        cases = [
            (["--peers", peers], "--peers and --replica-id go together"),
            (["--replica-id", "1"], "--peers and --replica-id go together"),
            (["--replica-id", "1", "--peers", "1=127.0.0.1:7101"], "is not ID=RAFT_HOST:PORT=GRPC_HOST:PORT"),
            (["--replica-id", "1", "--peers", peers + ",1=h:1=h:2"], "--peers: id 1 twice"),
            (["--replica-id", "3", "--peers", peers], "--replica-id 3 is not in --peers"),
            (["--replica-id", "0", "--peers", peers], "--replica-id must be"),
            (["--join"], "--join needs --peers and --replica-id"),
        ]
        for args, says in cases:
            with self.subTest(args=args):
                self.usage_error("dfs-metadata", ["--db", "c.db"] + args, says)

    def test_missing_values_and_stray_arguments(self):
        cases = [
            ("dfs", ["--metadata"], "--metadata needs a value"),
            ("dfs", ["-qZ", "ls"], "unknown option '-Z'"),
            ("dfs", ["--throttle", "1" + "x" * 10000, "ls"], "--throttle"),
            ("dfs", ["--json=yes", "ls"], "--json takes no value"),
            ("dfs", ["metadata", "add", "x=1"], "is not ID=RAFT_HOST:PORT=GRPC_HOST:PORT"),
            ("dfs", ["metadata", "remove", "0"], "is not an ID"),
            ("dfs", ["metadata", "drop"], "use \"metadata ls\""),
            ("dfs", ["get", "/a", "b", "--replicas", "2"], "get does not take --replicas"),
            ("dfs", ["put", "a", "b", "c"], "unexpected argument 'c'"),
            ("dfs", ["frobnicate"], "unknown command 'frobnicate'"),
            ("dfs", [], "no command given"),
            ("dfs", ["put", "a", "b", "--policy", "nearest"],
             "--policy must be random, min_copy, buddy or least_used, not 'nearest'"),
            ("dfs", ["token", "create", "--ttl", "90"], "--ttl takes a duration like 3600s"),
            ("dfs-metadata", ["--db"], "--db needs a value"),
            ("dfs-metadata", ["--db", "c.db", "stray" * 2000], "unexpected argument"),
            ("dfs-metadata", ["--threads", "9" * 10000], "--threads must be a whole number"),
            ("dfs-storage", ["--data"], "--data needs a value"),
            ("dfs-storage", ["--data", "d", "--metadata", "m" * 10000], "--metadata must be HOST:PORT"),
            ("dfs-storage", ["--data", "d", "--metadata", "h:1", "--scrub-rate", "9" * 10000 + "Q"],
             "--scrub-rate"),
            ("dfs-storage", ["--data", "d", "--metadata", "h:1", "--advertise", "node:"],
             "--advertise must be HOST:PORT, not 'node:'"),
            ("dfs-gateway", ["--metadata"], "--metadata needs a value"),
            ("dfs-gateway", ["--metadata", "h:1", "--log-level", "v" * 10000], "--log-level"),
            ("ec_bench", ["--k"], "--k needs a value"),
            ("ec_bench", ["stray"], "unexpected argument 'stray'"),
            ("simulate", ["--nodes"], "--nodes needs a value"),
            ("load_gen", ["--clients"], "--clients needs a value"),
            ("load_gen", ["stray"], "unexpected argument 'stray'"),
            ("tcp_ceiling", ["1", "2"], "unexpected argument '2'"),
            ("repl_bench", ["--dir"], "--dir needs a value"),
            ("s3inspect", ["--key", "nocolon"], "--key takes ID:SECRET:ROLE"),
            ("dfs-mount", ["--metadata"], "--metadata needs a value"),
            ("dfs-mount", ["--metadata", "h:1"], "MOUNTPOINT"),
            ("dfs-mount", ["--metadata", "h:1", "/a", "/b"], "unexpected argument '/b'"),
            ("dfs-mount", ["/"], "no metadata service address"),
            ("dfs-mount", ["--metadata", "h:1", "--read-min", "1M", "--read-ahead", "64K", "/"],
             "--read-ahead must be at least --read-min"),
            ("cpu_floor", ["--file"], "--file needs a value"),
            ("catalog_bench", ["--seconds"], "--seconds needs a value"),
            ("catalog_bench", ["stray"], "unexpected argument 'stray'"),
            ("metadata_gen", ["--catalog"], "--catalog needs a value"),
            ("metadata_gen", ["--catalog", "c.db"], "--metadata and --catalog are required"),
            ("metadata_gen", ["--clients", "2", "--seconds", "1", "--metadata", "h:1"],
             "--metadata and --catalog are required"),
        ]
        for name, args, says in cases:
            with self.subTest(program=name, args=[a[:20] for a in args]):
                self.usage_error(name, args, says)

    def test_environment(self):
        # $DFS_TLS_CA stands in for --tls-ca, and the command line wins (the CA is read before any
        # connection is made); an empty variable counts as unset.
        where = ["ls", "--metadata", "127.0.0.1:1"]
        rc, _, err = run("dfs", *where, env={"DFS_TLS_CA": "/nonexistent/env-ca.pem"})
        self.assertEqual(rc, 2, err)
        self.assertIn("env-ca.pem", err)
        rc, _, err = run("dfs", *where, "--tls-ca", "/nonexistent/flag-ca.pem",
                         env={"DFS_TLS_CA": "/nonexistent/env-ca.pem"})
        self.assertEqual(rc, 2, err)
        self.assertIn("flag-ca.pem", err)
        self.assertNotIn("env-ca.pem", err)
        rc, _, err = run("dfs", "ls", env={"DFS_METADATA": ""})
        self.assertEqual(rc, 2, err)
        self.assertIn("no metadata service address", err)
        rc, _, err = run("load_gen", "--clients", "1", env={"DFS_METADATA": ""})
        self.assertEqual(rc, 2, err)
        self.assertIn("run needs --metadata HOST:PORT (or DFS_METADATA)", err)

    def test_mount_refused_before_mounting(self):
        # A client dfs-mount cannot open (plaintext to a remote address) is one line and exit
        # status 1, before anything is mounted; it used to crash (fuse_destroy of no session).
        rc, out, err = run("dfs-mount", "--metadata", "192.0.2.1:1", "/")
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, "")
        self.assertIn("without TLS", err)
        self.assertEqual(len(err.splitlines()), 1, err)


if __name__ == "__main__":
    harness.main()
