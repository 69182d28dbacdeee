"""Every program's option loop: -h and --help print the usage on stdout and exit 0 (wherever they
stand), and a bad option, a missing value or a stray argument is one short line on stderr with exit
status 2, however long what was typed. No program is started for real: each run ends in its parser."""

import os
import subprocess

import harness

# name -> path in the runfiles; the arguments before the options (load_gen takes a MODE first).
PROGRAMS = {
    "dfs": ("cli/dfs", []),
    "dfs-metadata": ("services/metadata/dfs-metadata", []),
    "dfs-storage": ("services/storage/dfs-storage", []),
    "dfs-gateway": ("gateway/dfs-gateway", []),
    "tcp_ceiling": ("benchmarks/tcp_ceiling", []),
    "ec_bench": ("benchmarks/ec_bench", []),
    "simulate": ("benchmarks/simulate", []),
    "load_gen": ("benchmarks/load_gen", ["run"]),
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


def run(name, *args):
    rel, head = PROGRAMS[name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFS_")}
    p = subprocess.run([binary(rel)] + head + list(args), capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, env=env, errors="replace")
    return p.returncode, p.stdout, p.stderr


class Options(harness.TestCase):
    def test_help(self):
        for name in PROGRAMS:
            for args in (["-h"], ["--help"]):
                with self.subTest(program=name, args=args):
                    rc, out, err = run(name, *args)
                    self.assertEqual((rc, err), (0, ""), out)
                    self.assertIn("usage", out.lower())

    def test_help_among_other_options(self):
        # -h wins over what else is (or is not) given: it is never taken for another option.
        for name, args in (("dfs-storage", ["--data", "/nonexistent", "-h"]),
                           ("dfs-storage", ["-h", "--token-file", "/nonexistent"]),
                           ("dfs-metadata", ["--db", "/nonexistent/x.db", "-h"]),
                           ("dfs-gateway", ["--listen", "127.0.0.1:0", "-h"]),
                           ("dfs", ["--json", "-h"])):
            with self.subTest(program=name, args=args):
                rc, out, err = run(name, *args)
                self.assertEqual((rc, err), (0, ""), out)
                self.assertIn("usage", out.lower())

    def test_bad_options_are_one_short_line(self):
        bad = [["--no-such-option"], ["-Z"], [LONG], [LONG + "=1"]]
        for name in PROGRAMS:
            for args in bad:
                with self.subTest(program=name, args=[a[:20] for a in args]):
                    rc, out, err = run(name, *args)
                    self.assertEqual(rc, 2, err)
                    self.assertEqual(out, "")
                    self.assertEqual(len(err.splitlines()), 1, err[:500])
                    self.assertTrue(err.startswith(name + ": "), err[:200])
                    self.assertLess(len(err), 200, err[:300])
                    if args[0] in ("--no-such-option", "-Z"):
                        self.assertIn("unknown option '%s'" % args[0], err)

    def test_missing_values_and_stray_arguments(self):
        cases = [
            ("dfs", ["--metadata"], "--metadata needs a value"),
            ("dfs", ["-qZ", "ls"], "unknown option '-Z'"),
            ("dfs", ["--throttle", "1" + "x" * 10000, "ls"], "--throttle"),
            ("dfs-metadata", ["--db"], "--db needs a value"),
            ("dfs-metadata", ["--db", "c.db", "stray" * 2000], "unexpected argument"),
            ("dfs-metadata", ["--threads", "9" * 10000], "--threads must be a whole number"),
            ("dfs-storage", ["--data"], "--data needs a value"),
            ("dfs-storage", ["--data", "d", "--metadata", "m" * 10000], "--metadata must be HOST:PORT"),
            ("dfs-storage", ["--data", "d", "--metadata", "h:1", "--scrub-rate", "9" * 10000 + "Q"],
             "--scrub-rate"),
            ("dfs-gateway", ["--metadata"], "--metadata needs a value"),
            ("dfs-gateway", ["--metadata", "h:1", "--log-level", "v" * 10000], "--log-level"),
            ("ec_bench", ["--k"], "--k needs a value"),
            ("ec_bench", ["stray"], "unexpected argument 'stray'"),
            ("simulate", ["--nodes"], "--nodes needs a value"),
            ("load_gen", ["--clients"], "--clients needs a value"),
            ("load_gen", ["stray"], "unexpected argument 'stray'"),
            ("tcp_ceiling", ["1", "2"], "at most one argument"),
        ]
        for name, args, says in cases:
            with self.subTest(program=name, args=[a[:20] for a in args]):
                rc, out, err = run(name, *args)
                self.assertEqual(rc, 2, err[:300])
                self.assertEqual(len(err.splitlines()), 1, err[:500])
                self.assertIn(says, err)
                self.assertLess(len(err), 300, err[:400])


if __name__ == "__main__":
    harness.main()
