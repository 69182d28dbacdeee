"""Crash safety with real processes: SIGKILL the metadata service or a storage node at a random point
while puts, deletes and repairs run, restart it, and check that nothing committed was lost, nothing
pending became visible, the catalog is intact, and the nodes end up holding what the catalog says.
Meanwhile copies are damaged behind the nodes' backs (a fragment file deleted, or rewritten
consistently with other data): every file still reads back, and in the end every copy the catalog
lists holds the catalog's checksum (readers and scrubbers found, reported and repaired the rest).
Also full disks: a storage node on a small file system, and the catalog's own disk.

The crash loop is seeded: the seed is printed at the start, and DFS_CRASH_SEED=N replays its schedule
(what is killed, when, which operations; the exact interleavings vary).
DFS_CRASH_ITERATIONS=N runs N iterations instead of the suite's 4 (a few seconds each), and
DFS_TERM_ITERATIONS=N makes TermDuringWork stop nodes with SIGTERM N times instead of 8, e.g.

    bazel test //tests:crash_test --test_env=DFS_CRASH_ITERATIONS=100 --test_filter=CrashLoop \\
        --test_timeout=3600 --test_output=streamed
    DFS_CRASH_ITERATIONS=100 DFS_CRASH_SEED=7 python3 tests/crash_test.py CrashLoop   # bazel-bin
"""

import ctypes
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

import harness
from integrity_test import rewrite_consistently

# Liveness fast enough for a node killed in one iteration to be declared dead and repaired in it.
FAST = ["--heartbeat-ms", "200", "--suspect-after-ms", "600", "--dead-after-ms", "1500",
        "--pending-timeout-ms", "6000"]
NODES = 6
PUT_WORKERS = 4
RM_WORKERS = 2
# Local files the puts draw from: block, chunk and fragment edges, a few MiB at most.
SOURCE_SIZES = (0, 1, 1000, 65536, 65537, 300001, 1 << 20, (2 << 20) + 3)
# After each crash every file touched since the previous check is read back, and this many
# others at random (the final check reads them all), so that long runs stay linear.
RECHECK_SAMPLE = 60
# Replication fanned out by the client (the default), chained through the nodes, erasure code.
PUT_FLAGS = ([], [], ["--replication", "chain"], ["--ec", "2+1"])
OP_TIMEOUT_S = 60
ITERATIONS = int(os.environ.get("DFS_CRASH_ITERATIONS", "4"))
# The crash loop's nodes scrub often, so that damaged copies no reader met are found too.
SCRUB = ["--scrub-interval", "3"]


def log(msg):
    print("crash: " + msg, flush=True)


def integrity_check(db_path):
    """`sqlite3 DB 'PRAGMA integrity_check'` output (the shell, or Python's sqlite3 without it)."""
    exe = shutil.which("sqlite3")
    if exe:
        p = subprocess.run([exe, db_path, "PRAGMA integrity_check"], capture_output=True, text=True,
                           timeout=60)
        return (p.stdout + p.stderr).strip()
    import sqlite3
    db = sqlite3.connect(db_path)
    try:
        return "\n".join(r[0] for r in db.execute("PRAGMA integrity_check"))
    finally:
        db.close()


def copy_catalog(cluster, dest_dir):
    """Copy catalog.db and its WAL (the daemon is stopped): what the next start will recover."""
    os.makedirs(dest_dir, exist_ok=True)
    src = cluster.path("metadata", "catalog.db")
    for suffix in ("", "-wal"):
        if os.path.exists(src + suffix):
            shutil.copyfile(src + suffix, os.path.join(dest_dir, "catalog.db" + suffix))
    return os.path.join(dest_dir, "catalog.db")


def backup_catalog(cluster, dest):
    """A consistent copy of the live catalog through the sqlite3 shell's .backup."""
    src = cluster.path("metadata", "catalog.db")
    exe = shutil.which("sqlite3")
    if exe:
        subprocess.run([exe, src, ".backup '%s'" % dest], check=True, capture_output=True, timeout=60)
    else:
        import sqlite3
        a, b = sqlite3.connect(src), sqlite3.connect(dest)
        a.backup(b)
        a.close()
        b.close()
    return dest


def node_dirs(cluster):
    """{node id: data dir} for every node the cluster ever started."""
    out = {}
    for row in cluster.status():
        if row["name"] == "metadata":
            continue
        data = cluster.path(row["name"], "data")
        try:
            with open(os.path.join(data, "node.id"), encoding="ascii") as f:
                out[f.read().strip()] = data
        except FileNotFoundError:
            pass
    return out


def stored_fragments(data_dir):
    """Fragment ids stored under a node's data dir."""
    found = set()
    for _, _, files in os.walk(os.path.join(data_dir, "fragments")):
        found.update(files)
    return found


def catalog_copies(db_path):
    """{node id: {fragment ids}}: the acknowledged copies of committed files in a catalog copy."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    try:
        rows = db.execute("SELECT r.node_id, r.fragment_id FROM replicas r JOIN fragments f "
                          "ON f.fragment_id = r.fragment_id JOIN files fi ON fi.file_id = f.file_id "
                          "WHERE fi.state = 'committed' AND r.acked = 1").fetchall()
    finally:
        db.close()
    out = {}
    for node, frag in rows:
        out.setdefault(node, set()).add(frag)
    return out


def catalog_checksums(db_path):
    """{(node id, fragment id): checksum} of the acknowledged copies of committed files."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    try:
        rows = db.execute("SELECT r.node_id, r.fragment_id, f.checksum FROM replicas r JOIN fragments f "
                          "ON f.fragment_id = r.fragment_id JOIN files fi ON fi.file_id = f.file_id "
                          "WHERE fi.state = 'committed' AND r.acked = 1").fetchall()
    finally:
        db.close()
    return {(node, frag): checksum for node, frag, checksum in rows}


def held_checksum(data_dir, fragment_id):
    """The checksum a node's copy of a fragment holds (its header's), or None."""
    p = os.path.join(data_dir, "fragments", fragment_id[:2], fragment_id[2:4], fragment_id)
    try:
        with open(p, "rb") as f:
            return struct.unpack_from("<I", f.read(128), 28)[0]
    except (OSError, struct.error):
        return None


def repairs_done(cluster, reason=None):
    """Repairs the metadata service logged as done, over all its runs."""
    with open(cluster.path("metadata", "log"), encoding="utf-8", errors="replace") as f:
        lines = [line for line in f if 'msg="repaired"' in line]
    return len([line for line in lines if reason is None or " reason=%s " % reason in line])


def tmp_files(data_dir):
    try:
        return [f for f in os.listdir(os.path.join(data_dir, "tmp"))]
    except FileNotFoundError:
        return []


class Workload:
    """Concurrent `dfs put` and `dfs rm` processes until stopped; every outcome recorded.

    Every put goes to a path of its own, so what a path may hold is exactly one source file.
    """

    def __init__(self, tc, cluster, sources, rng):
        self.tc = tc
        self.cluster = cluster
        self.sources = sources  # [(local path, sha256)]
        self.seed = rng.randrange(1 << 30)
        self.lock = threading.Lock()
        self.puts = {}  # remote -> {"src", "sha", "rc", "err"}
        self.rms = {}  # remote -> {"rc", "err"}
        self.busy = set()  # remotes with an rm running
        self.counter = 0
        # The service keeps its address across restarts: resolve it once (Cluster.env() has none
        # while the service is down).
        self.env = dict(cluster.env(), DFS_METADATA=cluster.metadata_address)
        self.stop_ev = threading.Event()
        self.threads = []
        self.errors = []  # unexpected exceptions in workers

    def committed(self):
        """Paths whose put exited 0 and that no rm has touched (or is touching)."""
        with self.lock:
            return [p for p, r in self.puts.items() if r["rc"] == 0 and p not in self.rms and p not in self.busy]

    def run(self, *args):
        exe = self.cluster.binaries()["dfs"]
        try:
            p = subprocess.run([exe] + list(args), capture_output=True, text=True, env=self.env, timeout=OP_TIMEOUT_S,
                               stdin=subprocess.DEVNULL)
            return p.returncode, p.stderr.strip()
        except subprocess.TimeoutExpired:
            return -1, "timed out after %d s" % OP_TIMEOUT_S

    def put_worker(self, wid):
        rng = random.Random(self.seed * 31 + wid)
        while not self.stop_ev.is_set():
            src, sha = rng.choice(self.sources)
            with self.lock:
                self.counter += 1
                remote = "/crash/w%d/%06d" % (wid, self.counter)
                self.puts[remote] = {"src": src, "sha": sha, "rc": None, "err": ""}
            rc, err = self.run("put", "-q", *rng.choice(PUT_FLAGS), src, remote)
            with self.lock:
                self.puts[remote].update(rc=rc, err=err)

    def rm_worker(self, wid):
        rng = random.Random(self.seed * 37 + wid)
        while not self.stop_ev.is_set():
            cands = self.committed()
            if not cands:
                time.sleep(0.05)
                continue
            remote = rng.choice(sorted(cands))
            with self.lock:
                self.busy.add(remote)
            rc, err = self.run("rm", remote)
            with self.lock:
                self.busy.discard(remote)
                self.rms[remote] = {"rc": rc, "err": err}
            time.sleep(rng.uniform(0, 0.1))

    def start(self):
        self.stop_ev.clear()
        self.threads = [threading.Thread(target=self.put_worker, args=(i,), daemon=True)
                        for i in range(PUT_WORKERS)]
        self.threads += [threading.Thread(target=self.rm_worker, args=(i,), daemon=True) for i in range(RM_WORKERS)]
        for t in self.threads:
            t.start()

    def stop(self):
        """Stop starting operations and wait for the running ones (each is bounded by OP_TIMEOUT_S)."""
        self.stop_ev.set()
        for t in self.threads:
            t.join(OP_TIMEOUT_S + 10)
        stuck = [t for t in self.threads if t.is_alive()]
        if stuck:
            raise AssertionError("%d workload thread(s) did not finish" % len(stuck))


class CrashLoop(harness.TestCase):
    def setUp(self):
        self.seed = int(os.environ.get("DFS_CRASH_SEED") or random.SystemRandom().randrange(1 << 31))
        log("seed %d (replay with DFS_CRASH_SEED=%d), %d iteration(s)" % (self.seed, self.seed, ITERATIONS))
        self.rng = random.Random(self.seed)
        self.unknown_commits = set()  # visible files whose put failed unsure of its commit

    def kill_metadata(self, c):
        row = next(r for r in c.status() if r["name"] == "metadata")
        c.expected_exits.add("metadata")
        os.kill(row["pid"], signal.SIGKILL)
        harness.wait_until(lambda: "metadata" not in c.running(), 10, "the metadata service survived SIGKILL")

    def kill_node(self, c, name):
        row = next(r for r in c.status() if r["name"] == name)
        c.expected_exits.add(name)
        os.kill(row["pid"], signal.SIGKILL)
        harness.wait_until(lambda: name not in c.running(), 10, "%s survived SIGKILL" % name)

    def live_nodes(self, c):
        return [n for n in c.running() if n != "metadata"]

    def check_catalog(self, path, what):
        result = integrity_check(path)
        self.assertEqual(result, "ok", "integrity_check of the catalog %s: %s" % (what, result))

    def check_visible(self, w, read=None):
        """ls shows only paths some put wrote; those in `read` (default: all) read back as that
        put's source. Returns the listed paths."""
        _, out, _ = self.dfs("ls", "/crash/")
        listed = out.split()
        for remote in listed:
            self.assertIn(remote, w.puts, "ls shows %s, which no put wrote" % remote)
            put = w.puts[remote]
            if put["rc"] != 0:
                # A put that failed may only be visible if it could not tell whether CommitFile
                # took effect: the service stayed away longer than the client retries a commit.
                self.assertIn("cannot reach the metadata service", put["err"],
                              "%s is visible though its put failed: %s" % (remote, put["err"]))
                self.unknown_commits.add(remote)
            if read is None or remote in read:
                self.check_reads(remote, put)
        return set(listed)

    def check_reads(self, remote, put):
        local = self.tmp("back")
        rc, _, err = self.dfs("get", "-q", remote, local, check=False)
        self.assertEqual(rc, 0, "get %s failed: %s" % (remote, err))
        self.assertEqual(harness.sha256(local), put["sha"], "%s does not read back as its source" % remote)
        os.unlink(local)

    def check_replays(self, c, w):
        """Write tickets outlive their commit: a replay of PutFragment with other bytes against
        every copy of a few committed files (tests/replay.py, a process of its own) is refused by
        every node that answers, whatever crashed meanwhile, and the files read back intact."""
        cands = sorted(w.committed())
        pick = self.rng.sample(cands, min(3, len(cands)))
        if not pick:
            return
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
        p = subprocess.run([sys.executable, os.path.join(here, "replay.py"), c.metadata_address,
                            c.admin_token_file, c.path("metadata", "catalog.db")] + pick,
                           capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        for line in p.stdout.splitlines():
            self.assertNotEqual(line.split()[-1], "OK-REPLACED", "a replayed put replaced a committed copy: " + line)
        for remote in pick:
            self.check_reads(remote, w.puts[remote])

    def check_committed(self, w, listed):
        """Every put that exited 0 is listed and intact, unless an rm of it exited 0."""
        for remote, put in w.puts.items():
            if put["rc"] != 0:
                continue
            rm = w.rms.get(remote)
            if rm is not None and rm["rc"] == 0:
                self.assertNotIn(remote, listed, "%s was removed (rm exited 0) but is listed" % remote)
                continue
            if rm is not None and remote not in listed:
                continue  # an rm that failed may still have taken effect
            self.assertIn(remote, listed, "%s was committed (put exited 0) but is not listed" % remote)

    def damage_a_copy(self, c, w, damaged):
        """Delete one copy's file, or rewrite it consistently with other data, behind its node's
        back: one copy of one fragment of a replicated file no copy of which is damaged yet."""
        cands = sorted(set(w.committed()) - damaged)
        if not cands:
            return
        remote = self.rng.choice(cands)
        rc, out, _ = self.dfs("stat", "--json", remote, check=False)
        if rc != 0:
            return
        st = json.loads(out)
        if st["redundancy"]["scheme"] != "replication" or st["redundancy"]["replicas"] < 3:
            return
        fr = self.rng.choice(st["fragments"])
        files = sorted(harness.fragment_files(c, [fr["fragment_id"]]))
        if not files:
            return
        path = self.rng.choice(files)
        damaged.add(remote)
        try:
            if self.rng.random() < 0.5:
                os.unlink(path)
                log("damaged %s fragment %d: a copy's file deleted" % (remote, fr["index"]))
            else:
                rewrite_consistently(path)
                log("damaged %s fragment %d: a copy rewritten with other data" % (remote, fr["index"]))
        except OSError:
            pass  # the copy moved or went meanwhile

    def test_crash_loop(self):
        c = self.start_cluster(nodes=NODES, metadata_flags=FAST, storage_flags=SCRUB)
        sources = []
        for i, size in enumerate(SOURCE_SIZES):
            p = harness.random_file(self.tmp("src-%d" % i), size, seed=self.seed + i)
            sources.append((p, harness.sha256(p)))
        w = Workload(self, c, sources, self.rng)
        self.addCleanup(self.failure_reasons, w)
        dead = None  # a node kept down for an iteration, so that repairs run
        checked = set()  # puts whose outcome a check has seen
        outcomes = []
        damaged = set()  # files one copy of which was damaged
        for it in range(ITERATIONS):
            w.start()
            if self.rng.random() < 0.7:
                self.damage_a_copy(c, w, damaged)
            # Repairs: a node killed while files are being written is declared dead 1.5 s later
            # and its copies are made again elsewhere, maybe while the crash below happens.
            time.sleep(self.rng.uniform(0.2, 1.0))
            if dead is None and self.rng.random() < 0.6:
                dead = self.rng.choice(sorted(self.live_nodes(c)))
                self.kill_node(c, dead)
            time.sleep(self.rng.uniform(0.3, 2.5))
            victim = "metadata" if self.rng.random() < 0.5 else self.rng.choice(sorted(self.live_nodes(c)))
            t_kill = time.monotonic()
            if victim == "metadata":
                self.kill_metadata(c)
                time.sleep(self.rng.uniform(0, 0.5))
                # The daemon is stopped: check what its next start will recover.
                self.check_catalog(copy_catalog(c, self.tmp("cat-%d" % it)), "after SIGKILL")
                c.restart_metadata()
            else:
                self.kill_node(c, victim)
                time.sleep(self.rng.uniform(0, 0.5))
                c.start_node(int(victim.split("-")[1]))
            down_s = time.monotonic() - t_kill
            time.sleep(self.rng.uniform(0.2, 1.0))
            w.stop()
            if victim != "metadata":
                self.check_catalog(backup_catalog(c, self.tmp("backup-%d.db" % it)), "(backup, live)")
            # Read back what changed since the last check, and a sample of the rest.
            with w.lock:
                fresh = set(w.puts) - checked
            older = sorted(checked & set(w.puts))
            read = fresh | set(self.rng.sample(older, min(RECHECK_SAMPLE, len(older))))
            listed = self.check_visible(w, read)
            checked |= fresh
            self.check_committed(w, listed)
            self.check_replays(c, w)
            if victim != "metadata":
                # A node killed and started again on another port takes its registration back at
                # once (its old address answers no more); the catalog shows where it is now.
                rows = json.loads(self.dfs("nodes", "--json")[1])
                addr = next(r["address"] for r in c.status() if r["name"] == victim)
                self.assertIn(addr, [n["address"] for n in rows if n["state"] == "alive"],
                              "%s is not registered at its new address" % victim)
            done = [p for p in w.puts.values() if p["rc"] is not None]
            ok = sum(1 for p in done if p["rc"] == 0)
            outcomes.append((victim, ok, len(done) - ok))
            log("iteration %d: killed %s (down %.2f s)%s; puts so far %d ok, %d failed; rm %d; %d listed; "
                "%d repairs so far" % (it, victim, down_s, "" if dead is None else ", %s dead" % dead, ok,
                                       len(done) - ok, len(w.rms), len(listed), repairs_done(c)))
            # The node kept down comes back on some later iteration.
            if dead is not None and self.rng.random() < 0.5:
                c.start_node(int(dead.split("-")[1]))
                dead = None
        if dead is not None:
            c.start_node(int(dead.split("-")[1]))
        self.settle(c, w)

    def failure_reasons(self, w):
        """Log why puts and rms failed, grouped by message (ids, ports and paths masked)."""
        reasons = {}
        with w.lock:
            ops = [("put", p) for p in w.puts.values()] + [("rm", r) for r in w.rms.values()]
        for kind, op in ops:
            if op["rc"] not in (0, None):
                why = kind + ": " + re.sub(r"[0-9a-f]{32,}|127\.0\.0\.1:\d+|/crash/\S+", "X", op["err"])[:200]
                reasons[why] = reasons.get(why, 0) + 1
        for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            log("  %5d x %s" % (n, why))

    def settle(self, c, w):
        """Every node up: the cluster converges to the catalog (repairs done, garbage collected)."""
        # Restarted nodes report their inventory at registration; restart every node once more so
        # that each one has reported after the last crash.
        for name in sorted(self.live_nodes(c)):
            i = int(name.split("-")[1])
            c.stop_node(i)
            c.start_node(i)
        status = {}

        def converged():
            status.update(json.loads(self.dfs("status", "--json")[1]))
            h, r = status["health"], status["repair"]
            return (h["degraded"] == 0 and h["lost"] == 0 and r["queued"] == 0 and r["running"] == 0 and
                    status["pending_files"] == 0 and status["pending_deletions"] == 0)

        try:
            harness.wait_until(converged, 60, "not converged")
        except AssertionError:
            raise AssertionError("the cluster did not converge: %s" % json.dumps(status))
        listed = self.check_visible(w)
        self.check_committed(w, listed)
        # The disks match the catalog: every copy it lists is on its node, and the nodes hold
        # nothing else. Rebalancing may still be moving copies (a new copy is made before the old
        # one is dropped and collected), so compare snapshots until they agree.
        dirs = node_dirs(c)
        diff = {}

        def disks_match():
            db = backup_catalog(c, self.tmp("settle.db"))
            want = catalog_copies(db)
            sums = catalog_checksums(db)
            diff.clear()
            for n in set(want) | set(dirs):
                have = stored_fragments(dirs[n]) if n in dirs else set()
                missing, extra = want.get(n, set()) - have, have - want.get(n, set())
                # And each copy is the catalog's: a copy rewritten with other data is not.
                wrong = sorted(f for f in want.get(n, set()) & have
                               if held_checksum(dirs[n], f) != sums[(n, f)])
                if missing or extra or wrong:
                    diff[n] = {"missing": sorted(missing), "extra": sorted(extra), "wrong": wrong}
            return not diff

        try:
            harness.wait_until(disks_match, 30, "disks differ from the catalog")
        except AssertionError:
            raise AssertionError("the nodes' disks differ from the catalog: %s" % json.dumps(diff))
        for n, d in dirs.items():
            self.assertEqual(tmp_files(d), [], "node %s left temporary files" % n)
        st = json.loads(self.dfs("status", "--json", "--loss")[1])
        self.assertTrue(st["health"]["verified"])
        self.assertEqual(st["health"]["lost"] + st["health"]["degraded"], 0, json.dumps(st["health"]))
        self.assertEqual(st["health"]["files"], len(listed))
        ok = sum(1 for p in w.puts.values() if p["rc"] == 0)
        log("repairs completed: %d, of a copy on a dead node: %d" % (repairs_done(c), repairs_done(c, "dead")))
        log("converged: %d files, %d puts ok, %d failed (%d of them visible: commit outcome unknown), "
            "%d rm" % (len(listed), ok, len(w.puts) - ok, len(self.unknown_commits), len(w.rms)))


class MetadataOutage(harness.TestCase):
    def test_outage_longer_than_the_dead_timeout_kills_no_node(self):
        # The catalog remembers when each node last heartbeated; while the service is down the
        # nodes cannot reach anyone. A restart after an outage longer than the dead timeout must
        # not take that silence for deaths (and queue a repair of every fragment).
        # The nodes' channels retry with a backoff of up to 2 s: they are back well within 5 s.
        c = self.start_cluster(nodes=4, metadata_flags=["--heartbeat-ms", "200", "--suspect-after-ms", "4000",
                                                        "--dead-after-ms", "5000"])
        src = harness.random_file(self.tmp("f"), 100000, seed=3)
        self.dfs("put", src, "/outage/f")
        row = next(r for r in c.status() if r["name"] == "metadata")
        c.expected_exits.add("metadata")
        os.kill(row["pid"], signal.SIGKILL)
        harness.wait_until(lambda: "metadata" not in c.running(), 10, "the metadata service survived SIGKILL")
        time.sleep(5.5)  # the outage: longer than --dead-after-ms
        log_path = c.path("metadata", "log")
        offset = os.path.getsize(log_path)
        restarted_ms = time.time() * 1000
        c.restart_metadata()

        def all_heartbeated():
            nodes = json.loads(self.dfs("nodes", "--json")[1])
            return len(nodes) == 4 and all(n["last_heartbeat_ms"] >= restarted_ms for n in nodes)

        harness.wait_until(all_heartbeated, 20, "the nodes did not heartbeat to the restarted service")
        with open(log_path, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            after = f.read()
        deaths = [line for line in after.splitlines() if 'msg="node dead' in line]
        self.assertEqual(deaths, [], "nodes declared dead after the restart")
        nodes = json.loads(self.dfs("nodes", "--json")[1])
        self.assertEqual(sorted(n["state"] for n in nodes), ["alive"] * 4)
        st = json.loads(self.dfs("status", "--json")[1])
        self.assertEqual(st["health"]["degraded"], 0, json.dumps(st))
        self.dfs("get", "/outage/f", self.tmp("f.out"))
        self.assertEqual(harness.sha256(self.tmp("f.out")), harness.sha256(src))


# ---- full disks ------------------------------------------------------------------------------

MS_REC = 16384
MS_PRIVATE = 1 << 18
CLONE_NEWNS = 0x00020000
_libc = ctypes.CDLL(None, use_errno=True)
_private_ns = []  # [None] once this process has its own mount namespace, [reason] if it cannot


def _enter_private_mount_namespace():
    """Give this process (its main thread, and every process it starts) a mount namespace of its
    own, so that what the tests mount is seen by nobody else and vanishes with the test process
    even if it dies. Returns None, or why it could not."""
    if not _private_ns:
        if _libc.unshare(CLONE_NEWNS) != 0:
            _private_ns.append("unshare(CLONE_NEWNS): %s" % os.strerror(ctypes.get_errno()))
        elif _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            _private_ns.append("mount --make-rprivate /: %s" % os.strerror(ctypes.get_errno()))
        else:
            _private_ns.append(None)
    return _private_ns[0]


def mount_small_fs(tc, path, size):
    """Mount a tmpfs of `size` bytes at path (unmounted after the test); skips the test when this
    process may not mount (ENOSPC is also covered by the injected write failures of
    storage/frag_store_test and services/storage/storage_service_test)."""
    why = _enter_private_mount_namespace()
    os.makedirs(path, exist_ok=True)
    if _libc.mount(b"tmpfs", path.encode(), b"tmpfs", 0, b"size=%d,mode=0755" % size) != 0:
        err = os.strerror(ctypes.get_errno())
        tc.skipTest("cannot mount a %d-byte tmpfs at %s (%s%s); disk-full handling is covered by the "
                    "injected ENOSPC tests of storage/frag_store_test and "
                    "services/storage/storage_service_test"
                    % (size, path, err, "" if why is None else "; " + why))
    tc.addCleanup(lambda: _libc.umount2(path.encode(), 2))  # MNT_DETACH
    return path


def fill_fs(path, leave):
    """Write a filler file under path until only `leave` bytes are free; returns its path."""
    filler = os.path.join(path, "filler")
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        left = max(0, free - leave)
        while left > 0:
            n = min(left, 1 << 20)
            try:
                f.write(b"\0" * n)
                f.flush()
            except OSError:
                break
            left -= n
    return filler


class StorageDiskFull(harness.TestCase):
    SMALL = 8 << 20

    def small_cluster(self, nodes):
        """A cluster whose last node keeps its data on a SMALL-byte file system."""
        c = harness.Cluster(nodes=nodes - 1, metadata_flags=["--heartbeat-ms", "200"])
        mount_small_fs(self, c.path("node-%d" % (nodes - 1), "data"), self.SMALL)
        self.addCleanup(self._finish_cluster, c)  # cleanups run last first: stopped, then unmounted
        c.start()
        self.cluster = c
        c.start_node(nodes - 1)
        return c

    def small_data(self, c, nodes):
        return c.path("node-%d" % (nodes - 1), "data")

    def one_line(self, err):
        self.assertEqual(len(err.strip().splitlines()), 1, "not one line: " + err)

    def test_put_that_does_not_fit_fails_cleanly_and_the_node_recovers(self):
        c = self.small_cluster(3)
        data = self.small_data(c, 3)
        before = harness.random_file(self.tmp("before"), 100000, seed=1)
        self.dfs("put", before, "/full/before")
        # Every node must take every fragment (3 nodes, 3 copies): 4 fragments of 3 MiB each fit
        # the small node one at a time (the node checks each against its free space), not all
        # together, so the disk runs full in the middle of writes.
        big = harness.random_file(self.tmp("big"), 12 << 20, seed=2)
        rc, _, err = self.dfs("put", big, "/full/big", check=False)
        self.assertEqual(rc, 1, "the put should not fit: " + err)
        log("full node: %s" % err.strip())
        self.one_line(err)
        self.assertRegex(err.lower(), "disk|space|full|resource_exhausted", err)
        # Nothing partial is visible; the earlier file reads back.
        _, out, _ = self.dfs("ls", "/full/")
        self.assertEqual(out.split(), ["/full/before"])
        self.assertEqual(self.dfs("stat", "/full/big", check=False)[0], 1)
        self.dfs("get", "/full/before", self.tmp("before.out"))
        self.assertEqual(harness.sha256(self.tmp("before.out")), harness.sha256(before))
        # No temporary file is left (the node aborts the cancelled writes as the calls end), and the
        # aborted put's copies are collected.
        harness.wait_until(lambda: tmp_files(data) == [], 10, "temporary files left: %s" % tmp_files(data))
        harness.wait_until(lambda: json.loads(self.dfs("status", "--json")[1])["pending_deletions"] == 0, 30,
                           "the failed put's copies were not collected")
        self.assertEqual(json.loads(self.dfs("status", "--json")[1])["pending_files"], 0)
        # With the space free again the node takes writes.
        fits = harness.random_file(self.tmp("fits"), 4 << 20, seed=3)
        self.dfs("put", fits, "/full/fits")
        self.dfs("get", "/full/fits", self.tmp("fits.out"))
        self.assertEqual(harness.sha256(self.tmp("fits.out")), harness.sha256(fits))
        st = json.loads(self.dfs("stat", "--json", "/full/fits")[1])
        small_id = open(os.path.join(data, "node.id")).read().strip()
        self.assertTrue(all(small_id in [r["node_id"] for r in fr["replicas"]] for fr in st["fragments"]))
        self.assertEqual(tmp_files(data), [])

    def test_full_node_is_replaced_and_the_put_completes(self):
        c = self.small_cluster(4)
        data = self.small_data(c, 4)
        filler = fill_fs(data, 256 << 10)
        src = harness.random_file(self.tmp("f"), 8 << 20, seed=4)
        for i in range(3):  # with 3 of 4 nodes per fragment, the small node is in most plans
            rc, out, err = self.dfs("put", src, "/full/f%d" % i, check=False)
            self.assertEqual(rc, 0, err)
            log("put with a full node: %s" % out.strip())
        small_id = open(os.path.join(data, "node.id")).read().strip()
        for i in range(3):
            self.dfs("get", "/full/f%d" % i, self.tmp("out"))
            self.assertEqual(harness.sha256(self.tmp("out")), harness.sha256(src))
            st = json.loads(self.dfs("stat", "--json", "/full/f%d" % i)[1])
            for fr in st["fragments"]:
                ids = {r["node_id"] for r in fr["replicas"]}
                self.assertEqual(len(ids), 3)
                self.assertNotIn(small_id, ids, "a copy is recorded on the full node")
        self.assertEqual(tmp_files(data), [])
        os.unlink(filler)
        # The node serves again once space is back.
        for i in range(3):
            self.dfs("get", "/full/f%d" % i, self.tmp("out"))


class MetadataDiskFull(harness.TestCase):
    def test_catalog_disk_full_gives_a_clear_error_and_stays_intact(self):
        c = harness.Cluster(nodes=3)
        mount_small_fs(self, c.path("metadata"), 4 << 20)
        self.addCleanup(self._finish_cluster, c)  # cleanups run last first: stopped, then unmounted
        c.start()
        self.cluster = c
        src = harness.random_file(self.tmp("f"), 1000, seed=5)
        kept = []
        for i in range(3):
            self.dfs("put", src, "/meta/before%d" % i)
            kept.append("/meta/before%d" % i)
        filler = fill_fs(c.path("metadata"), 64 << 10)
        failure = None
        for i in range(400):  # each put adds rows; the WAL runs out of room within a few hundred
            rc, _, err = self.dfs("put", src, "/meta/f%03d" % i, check=False)
            if rc != 0:
                failure = err
                break
            kept.append("/meta/f%03d" % i)
        self.assertIsNotNone(failure, "400 puts fit in 64 KiB of catalog space")
        log("catalog disk full after %d puts: %s" % (len(kept) - 3, failure.strip()))
        self.assertEqual(len(failure.strip().splitlines()), 1, failure)
        self.assertRegex(failure.lower(), "disk is full|no space|resource_exhausted", failure)
        # What was committed still reads back while the disk is full.
        _, out, _ = self.dfs("ls", "/meta/")
        self.assertEqual(sorted(out.split()), sorted(kept))
        self.dfs("get", kept[-1], self.tmp("out"))
        self.assertEqual(harness.sha256(self.tmp("out")), harness.sha256(src))
        self.check_catalog(c)
        os.unlink(filler)
        # Space again: the service takes writes; the catalog is intact.
        self.dfs("put", src, "/meta/after")
        kept.append("/meta/after")
        _, out, _ = self.dfs("ls", "/meta/")
        self.assertEqual(sorted(out.split()), sorted(kept))
        self.check_catalog(c)

    def check_catalog(self, c):
        copy = backup_catalog(c, self.tmp("backup.db"))
        self.assertEqual(integrity_check(copy), "ok")
        os.unlink(copy)


TERM_ITERATIONS = int(os.environ.get("DFS_TERM_ITERATIONS", "8"))


class TermDuringWork(harness.TestCase):
    """SIGTERM storage nodes in the middle of repairs, puts, gets and scrubs, again and again: every
    stop must exit 0 (the short grace makes each one cancel what is running), and the data stays
    whole. DFS_TERM_ITERATIONS=N runs N stops instead of the suite's 8; DFS_CRASH_SEED replays."""

    def test_sigterm_during_repairs_puts_gets_and_scrubs(self):
        seed = int(os.environ.get("DFS_CRASH_SEED") or random.SystemRandom().randrange(1 << 31))
        log("seed %d (replay with DFS_CRASH_SEED=%d), %d stop(s)" % (seed, seed, TERM_ITERATIONS))
        rng = random.Random(seed)
        # Repairs of 2 MiB fragments at 1 MiB/s take seconds; the nodes re-read their disks
        # all the time; a stop gives calls 200 ms and then cancels them.
        c = self.start_cluster(nodes=6, metadata_flags=FAST,
                               storage_flags=["--repair-rate", "1M", "--scrub-interval", "1",
                                              "--scrub-rate", "32M", "--grace-ms", "200"])
        files = {}
        for i in range(8):
            src = harness.random_file(self.tmp("src-%d" % i), 4 << 20, seed=seed + i)
            self.dfs("put", "-q", "--replicas", "2", "--fragments", "2", src, "/term/f%d" % i)
            files["/term/f%d" % i] = harness.sha256(src)
        env = dict(c.env(), DFS_METADATA=c.metadata_address)
        exe = c.binaries()["dfs"]
        stop_ev = threading.Event()
        counts = {"put": [0, 0], "get": [0, 0]}

        def dfs_quiet(*args):
            try:
                return subprocess.run([exe] + list(args), capture_output=True, env=env, timeout=OP_TIMEOUT_S,
                                      stdin=subprocess.DEVNULL).returncode
            except subprocess.TimeoutExpired:
                return -1

        def putter(wid):
            n = 0
            while not stop_ev.is_set():
                n += 1
                rc = dfs_quiet("put", "-q", "--throttle", "4M", "--replicas", "2", self.tmp("src-%d" % (n % 8)),
                               "/term/w%d-%d" % (wid, n))
                counts["put"][rc != 0] += 1

        def getter(wid):
            r = random.Random(seed + wid)
            while not stop_ev.is_set():
                rc = dfs_quiet("get", "-q", "--throttle", "8M", r.choice(sorted(files)), self.tmp("get-%d" % wid))
                counts["get"][rc != 0] += 1

        threads = [threading.Thread(target=putter, args=(i,), daemon=True) for i in range(2)]
        threads += [threading.Thread(target=getter, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        dirs = {"node-%d" % i: c.path("node-%d" % i, "data") for i in range(6)}
        down = None  # a node kept down for a while, so that its copies are repaired
        busy_hits = repair_hits = 0

        def repairs_running():
            return json.loads(self.dfs("status", "--json")[1])["repair"]["running"] > 0

        try:
            for it in range(TERM_ITERATIONS):
                repairing = False
                if down is not None:
                    # Once the node kept down is dead, its copies are being made again elsewhere.
                    try:
                        harness.wait_until(repairs_running, 15, "no repair running")
                        repairing = True
                    except AssertionError:
                        pass
                repair_hits += repairing
                live = sorted(n for n in c.running() if n != "metadata" and n != down)
                # Prefer a node writing something (a repair or a put in its tmp/) right now.
                deadline = time.monotonic() + 8
                busy = []
                while time.monotonic() < deadline and not busy:
                    busy = [n for n in live if tmp_files(dirs[n])]
                    if not busy:
                        time.sleep(0.02)
                victim = rng.choice(busy or live)
                busy_hits += bool(busy)
                i = int(victim.split("-")[1])
                res = c.stop_node(i)
                self.assertEqual((res["how"], res["exit_code"]), ("sigterm", 0),
                                 "stop %d: %s did not exit 0 on SIGTERM: %s" % (it, victim, res))
                log("stop %d: %s (%s%s) exited 0" % (it, victim, "writing" if busy else "idle",
                                                      ", repairs running" if repairing else ""))
                if down is None:
                    down = victim  # stays down until it is dead and its copies are being repaired
                else:
                    c.start_node(i)
                    if rng.random() < 0.5:
                        c.start_node(int(down.split("-")[1]))
                        down = None
        finally:
            stop_ev.set()
            for t in threads:
                t.join(OP_TIMEOUT_S + 10)
        if down is not None:
            c.start_node(int(down.split("-")[1]))
        log("%d of %d stops hit a node writing, %d while repairs ran; puts ok/failed %s, gets ok/failed %s" % (
            busy_hits, TERM_ITERATIONS, repair_hits, counts["put"], counts["get"]))
        self.assertGreater(busy_hits, 0, "no stop landed while a node was writing")
        self.assertGreater(repair_hits, 0, "no stop landed while repairs ran")
        for remote, digest in files.items():
            self.dfs("get", "-q", remote, self.tmp("back"))
            self.assertEqual(harness.sha256(self.tmp("back")), digest, remote)


if __name__ == "__main__":
    harness.main()
