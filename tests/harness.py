"""End-to-end test harness: real dfs processes on loopback, cmocka-style output. Python 3 stdlib only.

A test file looks like this (BUILD: py_test(srcs=[...], deps=["//tests:harness"], python_version="PY3",
data=["//services/metadata:dfs-metadata", "//services/storage:dfs-storage", "//cli:dfs"])):

    import harness

    class PutGet(harness.TestCase):
        def test_roundtrip(self):
            c = self.start_cluster(nodes=3)            # stopped and checked after the test
            src = harness.random_file(self.tmp("a"), 1 << 20, seed=1)
            self.dfs("put", src, "/a")                # raises AssertionError on non-zero exit
            self.dfs("get", "/a", self.tmp("b"))
            self.assertEqual(harness.sha256(src), harness.sha256(self.tmp("b")))

    if __name__ == "__main__":
        harness.main()

main() runs the unittest-style test methods and prints the lines tools/test counts:
`[ RUN      ] PutGet.test_roundtrip`, `[       OK ] ...` or the traceback and `[  FAILED  ] ...`, then a
cmocka-style summary; exit status 1 if anything failed. It honours `bazel test --test_filter=PATTERN`
(substring or glob of Class.test_name, comma-separated) and test sharding (shard_count).

A Cluster (tools/dfscluster.py) lives in a fresh folder under $TEST_TMPDIR. Every daemon it starts gets
SIGKILL if the test process dies, and TestCase.start_cluster stops it after the test even on failure
(SIGTERM by Bazel's timeout too). Stopping fails the test when a daemon did not exit 0 on SIGTERM, died
on its own, wrote a sanitizer report to its log, or wrote a log line that is not strict logfmt (every
line of every daemon log is parsed by tests/logfmt.py).

Binaries: $DFS_BIN_DIR if set, else Bazel runfiles
($TEST_SRCDIR/$TEST_WORKSPACE/services/metadata/dfs-metadata, .../services/storage/dfs-storage,
.../cli/dfs), else the repository's bazel-bin (running a test file by hand after `bazel build //...`).
"""

import atexit
import fnmatch
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

_HERE = os.path.dirname(os.path.abspath(__file__))
for _d in (os.path.join(os.path.dirname(_HERE), "tools"),):
    if os.path.isdir(_d) and _d not in sys.path:
        sys.path.append(_d)  # outside Bazel; under Bazel, //tools:dfscluster's imports put it on the path

import dfscluster  # noqa: E402
import logfmt  # noqa: E402
from dfscluster import ClusterError  # noqa: E402,F401  (re-exported for tests)

DFS_TIMEOUT_S = 120.0
SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "runtime error:",
    "LeakSanitizer",
    "ThreadSanitizer",
    "ERROR: UndefinedBehaviorSanitizer",
)
RUNFILES_PATHS = {
    "dfs-metadata": "services/metadata/dfs-metadata",
    "dfs-storage": "services/storage/dfs-storage",
    "dfs": "cli/dfs",
}

_live_clusters = []  # started and not yet stopped, newest last
_test_clusters = []  # clusters started during the current test (for logs on failure)


# ---- binaries and files ----------------------------------------------------------------------

def _runfiles_dirs():
    dirs = []
    srcdir = os.environ.get("TEST_SRCDIR") or os.environ.get("RUNFILES_DIR")
    if srcdir:
        dirs.append(os.path.join(srcdir, os.environ.get("TEST_WORKSPACE", "dfs")))
    return dirs


def find_binaries(required=("dfs-metadata", "dfs-storage", "dfs")):
    """{name: absolute path} for the daemons and the CLI; raises ClusterError if a required one is missing."""
    if os.environ.get("DFS_BIN_DIR"):
        return dfscluster.find_binaries(os.environ["DFS_BIN_DIR"], required=required)
    found = {}
    for base in _runfiles_dirs():
        for name, rel in RUNFILES_PATHS.items():
            p = os.path.join(base, rel)
            if name not in found and os.path.isfile(p) and os.access(p, os.X_OK):
                found[name] = os.path.abspath(p)
    if all(n in found for n in required):
        return found
    if _runfiles_dirs():
        missing = [n for n in required if n not in found]
        raise ClusterError("%s not in the test's runfiles: add %s to its data" % (
            ", ".join(missing), ", ".join('"//%s:%s"' % tuple(RUNFILES_PATHS[n].rsplit("/", 1)) for n in missing)))
    return dfscluster.find_binaries(required=required)


_session_root = []  # outside Bazel: one temp folder for this run, removed at exit unless a case failed
_failures = []


def _remove_session_root():
    if _session_root and not _failures:
        shutil.rmtree(_session_root[0], ignore_errors=True)
    elif _session_root:
        print("harness: kept %s for inspection" % _session_root[0], flush=True)


def tmpdir(prefix="dfs-"):
    """A fresh folder under $TEST_TMPDIR (Bazel cleans it), else under one temp folder for this run."""
    base = os.environ.get("TEST_TMPDIR")
    if not base:
        if not _session_root:
            _session_root.append(tempfile.mkdtemp(prefix="dfs-test-"))
        base = _session_root[0]
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def random_file(path, size, seed=0):
    """Write `size` pseudo-random bytes, the same for the same seed; returns path."""
    rng = random.Random(seed)
    chunk = 1 << 20
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(chunk, left)
            f.write(rng.randbytes(n))
            left -= n
    return path


def sha256(path):
    """Hex SHA-256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- the CLI -----------------------------------------------------------------------------------

def dfs(*args, input=None, check=True, env=None, timeout=DFS_TIMEOUT_S, cluster=None, metadata=None, text=True):
    """Run `dfs ARGS...` with DFS_METADATA set; returns (rc, stdout, stderr).

    The metadata address comes from `metadata`, else `cluster`, else the newest running Cluster, else
    $DFS_METADATA. env adds (or, with None values, removes) environment variables. input is str or bytes.
    check=True raises AssertionError on a non-zero exit; a timeout always raises AssertionError.
    """
    exe = (cluster.binaries() if cluster else find_binaries(required=("dfs",)))["dfs"]
    if metadata is None:
        c = cluster or (_live_clusters[-1] if _live_clusters else None)
        metadata = c.metadata_address if c else os.environ.get("DFS_METADATA")
    full_env = dict(os.environ)
    if metadata:
        full_env["DFS_METADATA"] = metadata
    c = cluster or (_live_clusters[-1] if _live_clusters else None)
    if c is not None and os.path.exists(c.admin_token_file):
        full_env["DFS_TOKEN_FILE"] = c.admin_token_file
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    if text and isinstance(input, bytes):
        text = False
    if not text and isinstance(input, str):
        input = input.encode()
    cmd = [exe] + [str(a) for a in args]
    shown = "dfs " + " ".join(str(a) for a in args)
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, env=full_env, timeout=timeout, text=text,
                           stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("`%s` timed out after %.0f s\nstdout: %s\nstderr: %s" % (
            shown, timeout, _short(e.stdout), _short(e.stderr)))
    if check and p.returncode != 0:
        raise AssertionError("`%s` exited with status %d\nstdout: %s\nstderr: %s" % (
            shown, p.returncode, _short(p.stdout), _short(p.stderr)))
    return p.returncode, p.stdout, p.stderr


def _short(s, limit=2000):
    if s is None:
        return ""
    if isinstance(s, bytes):
        s = s.decode("utf-8", "replace")
    s = s.rstrip("\n")
    return s if len(s) <= limit else "..." + s[-limit:]


# ---- looking at what the cluster holds ----------------------------------------------------------

def fragment_files(cluster, fragment_ids):
    """Paths of the files holding these fragments on every node of the cluster."""
    found = []
    for row in cluster.status():
        if dfscluster.is_metadata(row["name"]):
            continue
        data = cluster.path(row["name"], "data")
        for fid in fragment_ids:
            p = os.path.join(data, "fragments", fid[0:2], fid[2:4], fid)
            if os.path.exists(p):
                found.append(p)
    return found


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("%s after %g s" % (what, timeout))


# ---- the cluster fixture -----------------------------------------------------------------------

class Cluster(dfscluster.Cluster):
    """A dfscluster.Cluster for tests: its own temp dir, daemons die with the test process, checked stop.

        c = Cluster(nodes=3).start()      # or: with Cluster(nodes=3) as c: ...
        c.dfs("ls")
        problems = c.stop()               # [] when every daemon exited 0 on SIGTERM and logs are clean
    """

    def __init__(self, nodes=3, zones=None, metadata_flags=(), storage_flags=(), dir=None, binaries=None,
                 log_level="info", metadata_replicas=1,
                 ready_timeout=dfscluster.READY_TIMEOUT_S, stop_timeout=dfscluster.STOP_TIMEOUT_S):
        super().__init__(dir=dir or tmpdir("cluster-"), binaries=binaries or find_binaries(),
                         die_with_parent=True, out=sys.stdout, log_level=log_level, ready_timeout=ready_timeout)
        self.nodes = nodes
        self.zones = zones
        self.metadata_replicas = metadata_replicas
        self.metadata_flags = list(metadata_flags)
        self.storage_flags = list(storage_flags)
        self.stop_timeout = stop_timeout
        self.expected_exits = set()  # names allowed to die on their own (fault tests)
        self.stopped = False

    def start(self):
        _live_clusters.append(self)
        _test_clusters.append(self)
        self.stopped = False
        self.up(self.nodes, zones=self.zones, metadata_flags=self.metadata_flags, storage_flags=self.storage_flags,
                metadata_replicas=self.metadata_replicas)
        return self

    @property
    def address(self):
        return self.metadata_address

    def env(self):
        """os.environ plus DFS_METADATA for this cluster."""
        e = dict(os.environ)
        if self.metadata_address:
            e["DFS_METADATA"] = self.metadata_address
        if os.path.exists(self.admin_token_file):
            e["DFS_TOKEN_FILE"] = self.admin_token_file
        return e

    def dfs(self, *args, **kw):
        kw.setdefault("cluster", self)
        return dfs(*args, **kw)

    def sanitizer_reports(self):
        """Lines of the daemons' logs that look like sanitizer reports: ["log: line", ...]."""
        found = []
        for log in self.logs():
            try:
                with open(log, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        if any(p in line for p in SANITIZER_PATTERNS):
                            found.append("%s: %s" % (log, line.rstrip()))
            except OSError:
                continue
        return found

    def problems(self):
        """What went wrong so far: bad exits on SIGTERM, unexpected deaths, sanitizer reports."""
        out = []
        for r in self.stop_results:
            if r["how"] == "sigterm" and r["exit_code"] != 0:
                code = r["exit_code"]
                out.append("%s (pid %d) exited with %s after SIGTERM, not 0" % (
                    r["name"], r["pid"], "signal %d" % -code if code is not None and code < 0 else
                    "status %s" % code))
            elif r["how"] == "sigkill-after-timeout":
                out.append("%s (pid %d) did not exit within %g s of SIGTERM" % (
                    r["name"], r["pid"], self.stop_timeout))
            elif r["how"] == "exited" and r["name"] not in self.expected_exits:
                out.append("%s (pid %d) died on its own (exit status %s)" % (r["name"], r["pid"], r["exit_code"]))
        reports = self.sanitizer_reports()
        if reports:
            out.append("sanitizer reports in daemon logs:\n  " + "\n  ".join(reports[:20]))
        bad = logfmt.problems(self.logs())
        if bad:
            out.append("daemon log lines that are not strict logfmt (common/log.h):\n  " + "\n  ".join(bad))
        return out

    def stop(self):
        """Stop everything this cluster runs (idempotent); returns problems() (empty when all is well)."""
        if not self.stopped:
            self.down(timeout=self.stop_timeout)  # if this raises, stop_all_clusters() tries again
            self.stopped = True
        if self in _live_clusters:
            _live_clusters.remove(self)
        return self.problems()

    def log_tails(self, lines=20):
        out = []
        for log in sorted(self.logs()):
            out.append("--- last lines of %s" % log)
            out.append(dfscluster._tail(log, 0, lines))
        return "\n".join(out)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        problems = self.stop()
        if problems and exc[0] is None:
            raise AssertionError("cluster problems:\n" + "\n".join(problems))
        return False


def stop_all_clusters():
    """Stop every cluster still running (used at exit and on SIGTERM)."""
    for c in list(_live_clusters):
        try:
            c.stop()
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            print("harness: stopping cluster in %s: %s" % (c.dir, e), flush=True)


atexit.register(_remove_session_root)  # atexit runs in reverse: clusters stop first
atexit.register(stop_all_clusters)


class TestCase(unittest.TestCase):
    """unittest.TestCase with a cluster fixture, a temp folder and the dfs helper."""

    cluster = None

    def start_cluster(self, nodes=3, **kw):
        """Start a Cluster for this test; it is stopped and checked after the test, even on failure."""
        c = Cluster(nodes=nodes, **kw)
        self.addCleanup(self._finish_cluster, c)
        c.start()
        self.cluster = c
        return c

    def _finish_cluster(self, c):
        problems = c.stop()
        if problems:
            self.fail("cluster in %s:\n%s" % (c.dir, "\n".join(problems)))

    def tmp(self, *parts):
        """A path in this test's own temp folder."""
        if not getattr(self, "_tmp", None):
            self._tmp = tmpdir("case-")
        return os.path.join(self._tmp, *parts)

    def dfs(self, *args, **kw):
        if self.cluster is not None:
            kw.setdefault("cluster", self.cluster)
        return dfs(*args, **kw)


# ---- the runner --------------------------------------------------------------------------------

class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM (Bazel's timeout) or SIGINT so clusters get stopped."""


_interrupted = []  # the reason, once a signal arrived


def _on_signal(signum, frame):
    # Once is enough: a second signal must not interrupt the cleanup the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    why = "SIGTERM (Bazel's test timeout?)" if signum == signal.SIGTERM else "SIGINT"
    _interrupted.append(why)
    raise Terminated("interrupted by " + why)


def case_name(test):
    """`Class.test_method` for a test, `Class.setUpClass` for a class fixture error."""
    if isinstance(test, unittest.TestCase) and hasattr(test, "_testMethodName"):
        return "%s.%s" % (type(test).__name__, test._testMethodName)
    desc = str(test)  # unittest's _ErrorHolder: "setUpClass (module.Class)" / "setUpModule (module)"
    if " (" in desc and desc.endswith(")"):
        what, where = desc[:-1].split(" (", 1)
        return "%s.%s" % (where.rsplit(".", 1)[-1], what)
    return desc


class CmockaResult(unittest.TestResult):
    """Prints cmocka-style lines for each case as it runs."""

    def __init__(self, stream=None):
        super().__init__()
        self.out = stream or sys.stdout
        self.ran = []  # names in order
        self.passed, self.failed_names, self.skipped_names = [], [], []
        self._current = None
        self._errors = []
        self._skip = None
        self._start = 0.0

    def _p(self, line=""):
        print(line, file=self.out, flush=True)

    def startTest(self, test):
        super().startTest(test)
        self._current = test
        self._errors = []
        self._skip = None
        self._start = time.monotonic()
        del _test_clusters[:]
        self._p("[ RUN      ] %s" % case_name(test))

    def _record(self, test, text):
        if test is self._current or (self._current is not None and getattr(test, "test_case", None)
                                     is self._current):
            self._errors.append(text)
        else:
            # A class or module fixture failed outside any test: report it as a case of its own.
            name = case_name(test)
            self._p("[ RUN      ] %s" % name)
            self._p(text.rstrip("\n"))
            self._p("[  FAILED  ] %s" % name)
            self.ran.append(name)
            self.failed_names.append(name)
            _failures.append(name)

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, self._exc_info_to_string(err, test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._errors.append("subtest %s:\n%s" % (subtest._subDescription(), self._exc_info_to_string(err, test)))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if test is self._current:
            self._skip = reason
        else:
            name = case_name(test)
            self._p("[  SKIPPED ] %s (%s)" % (name, reason))

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._errors.append("unexpected success (the test is marked expectedFailure)\n")

    def stopTest(self, test):
        super().stopTest(test)
        name = case_name(test)
        self.ran.append(name)
        secs = time.monotonic() - self._start
        if _interrupted:
            self._errors.append("interrupted by %s while running this case; stopping its clusters\n" %
                                _interrupted[0])
        if self._errors:
            for text in self._errors:
                self._p(text.rstrip("\n"))
            for c in list(_test_clusters):
                self._p(c.log_tails())
                _save_logs(c, name)
            self._p("[  FAILED  ] %s" % name)
            self.failed_names.append(name)
            _failures.append(name)
        elif self._skip is not None:
            self._p("    skipped: %s" % self._skip)
            self._p("[  SKIPPED ] %s" % name)
            self.skipped_names.append(name)
        else:
            self._p("[       OK ] %s" % name)
            self.passed.append(name)
        if secs >= 1.0:
            self._p("    (%s took %.1f s)" % (name, secs))
        self._current = None

    def wasSuccessful(self):
        return not self.failed_names and super().wasSuccessful()


def _save_logs(cluster, case):
    """Copy a failed case's daemon logs to Bazel's undeclared outputs (bazel-testlogs/.../outputs.zip)."""
    outdir = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if not outdir:
        return
    dest = os.path.join(outdir, case.replace("/", "_"), os.path.basename(cluster.dir))
    for log in cluster.logs():
        rel = os.path.relpath(log, cluster.dir)
        target = os.path.join(dest, rel.replace(os.sep, "_"))
        try:
            os.makedirs(dest, exist_ok=True)
            shutil.copyfile(log, target)
        except OSError:
            pass


def _iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _iter_tests(t)
        else:
            yield t


def _select(tests, patterns):
    if not patterns:
        return tests

    def match(name):
        return any(p in name or fnmatch.fnmatchcase(name, p) for p in patterns)

    return [t for t in tests if match(case_name(t))]


def main(module="__main__", argv=None):
    """Run every test in `module` with cmocka-style output; exits 1 if any case failed, else 0.

    argv (default sys.argv[1:]) and $TESTBRIDGE_TEST_ONLY (bazel --test_filter) select cases by
    substring or glob of `Class.test_name`, comma-separated.
    """
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except AttributeError:
        pass
    argv = sys.argv[1:] if argv is None else argv
    patterns = [p for a in argv for p in a.split(",") if p]
    patterns += [p for p in os.environ.get("TESTBRIDGE_TEST_ONLY", "").split(",") if p]

    mod = sys.modules[module] if isinstance(module, str) else module
    tests = list(_iter_tests(unittest.TestLoader().loadTestsFromModule(mod)))
    tests = _select(tests, patterns)

    total_shards = int(os.environ.get("TEST_TOTAL_SHARDS", "1") or 1)
    if os.environ.get("TEST_SHARD_STATUS_FILE"):
        open(os.environ["TEST_SHARD_STATUS_FILE"], "a").close()
    if total_shards > 1:
        index = int(os.environ.get("TEST_SHARD_INDEX", "0"))
        tests = [t for i, t in enumerate(tests) if i % total_shards == index]

    previous = (signal.signal(signal.SIGTERM, _on_signal), signal.signal(signal.SIGINT, _on_signal))
    result = CmockaResult(sys.stdout)
    print("[==========] Running %d test(s)." % len(tests), flush=True)
    interrupted = None
    try:
        unittest.TestSuite(tests).run(result)
    except KeyboardInterrupt as e:
        interrupted = e
        traceback.print_exc(file=sys.stdout)
        if not _interrupted or not result.ran or result.ran[-1] not in result.failed_names:
            # Not inside a case (stopTest reports those): count the interruption itself.
            print("[ RUN      ] harness\n[  FAILED  ] harness", flush=True)
            result.ran.append("harness")
            result.failed_names.append("harness")
            _failures.append("harness")
    finally:
        stop_all_clusters()
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])

    print("[==========] %d test(s) run." % len(result.ran), flush=True)
    print("[  PASSED  ] %d test(s)." % len(result.passed), flush=True)
    if result.skipped_names:
        print("[  SKIPPED ] %d test(s), listed below:" % len(result.skipped_names))
        for n in result.skipped_names:
            print("[  SKIPPED ] %s" % n)
    if result.failed_names:
        print("[  FAILED  ] %d test(s), listed below:" % len(result.failed_names))
        for n in result.failed_names:
            print("[  FAILED  ] %s" % n)
        print("\n %d FAILED TEST(S)" % len(result.failed_names), flush=True)
    if not tests and not patterns:
        print("harness: no test cases found in %s" % getattr(mod, "__file__", module), flush=True)
        sys.exit(1)
    sys.exit(1 if result.failed_names or interrupted or not result.wasSuccessful() else 0)
