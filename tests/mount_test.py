"""dfs-mount end to end: real programs (cp, rsync, tar, sha256sum, git, fio) in a FUSE mount of a real
cluster. Needs /dev/fuse and the right to mount (root, outside Bazel's sandbox: tags no-sandbox); each case
is skipped with the reason when that is missing. Every case unmounts and stops what it started, by pid,
even when it fails."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import harness

MOUNT_READY_S = 30.0
MOUNT_STOP_S = 30.0
# Kernel caches off: what another client changed shows at once (docs/mount.md, consistency).
NO_CACHE = ["--attr-timeout", "0", "--entry-timeout", "0"]


def mount_binary():
    for d in harness._runfiles_dirs():
        p = os.path.join(d, "mount", "dfs-mount")
        if os.access(p, os.X_OK):
            return p
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = os.path.join(repo, "bazel-bin", "mount", "dfs-mount")
    if os.access(p, os.X_OK):
        return p
    raise AssertionError("dfs-mount not found (bazel build //mount:dfs-mount)")


def cannot_mount():
    """Why FUSE mounts cannot work here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (tools/bootstrap: fuse3)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return "cannot open /dev/fuse: %s (the Bazel sandbox? this test is tagged no-sandbox)" % e
    if os.geteuid() != 0:
        return "not root: mounting with allow_other needs it"
    return None


class Mount:
    """A dfs-mount process in the foreground, mounted at dir; stop() unmounts and reaps it (idempotent)."""

    def __init__(self, case, cluster, dir, extra=(), side=None):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        base = os.path.join(side, os.path.basename(dir)) if side else dir.rstrip("/")
        self.log = base + ".log"
        spool = base + ".spool"
        os.makedirs(spool, exist_ok=True)
        cmd = [mount_binary(), "-f", "--metadata", cluster.address, "--token-file",
               cluster.admin_token_file, "--spool-dir", spool, "--log-level", "info", dir] + list(extra)
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT)
        case.addCleanup(self.stop)
        deadline = time.monotonic() + MOUNT_READY_S
        while not os.path.ismount(dir):
            if self.proc.poll() is not None:
                raise AssertionError("dfs-mount exited with %s before mounting:\n%s" % (self.proc.returncode,
                                                                                      self.tail()))
            if time.monotonic() > deadline:
                raise AssertionError("dfs-mount did not mount %s within %g s" % (dir, MOUNT_READY_S))
            time.sleep(0.05)

    def tail(self):
        with open(self.log, errors="replace") as f:
            return f.read()[-3000:]

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def stop(self, how="fusermount"):
        """Unmount and wait for the process; returns its exit status."""
        if self.proc.poll() is None:
            if how == "fusermount" and os.path.ismount(self.dir):
                subprocess.run(["fusermount3", "-u", self.dir], capture_output=True)
            if self.proc.poll() is None and not os.path.ismount(self.dir):
                try:
                    self.proc.wait(MOUNT_STOP_S)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(MOUNT_STOP_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if os.path.ismount(self.dir):
            subprocess.run(["fusermount3", "-uz", self.dir], capture_output=True)
        self.logf.close()
        return self.proc.returncode


def run(*cmd, cwd=None, check=True, timeout=600, **kw):
    r = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s\n%s" % (" ".join(cmd), r.returncode, r.stdout[-2000:],
                                                         r.stderr[-2000:]))
    return r


def make_tree(root, files, seed):
    """files small files in nested directories (three levels), a few of them larger."""
    rnd = random.Random(seed)
    for i in range(files):
        d = os.path.join(root, "d%d" % (i % 7), "e%d" % (i % 5), "f%d" % (i % 3))
        os.makedirs(d, exist_ok=True)
        size = rnd.choice([0, 1, 100, 4096, 20000, 70000]) if i % 50 else 1 << 20
        with open(os.path.join(d, "file-%03d.bin" % i), "wb") as f:
            f.write(rnd.randbytes(size))
    os.makedirs(os.path.join(root, "empty", "dir"), exist_ok=True)


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class MountTest(harness.TestCase):
    def setUp(self):
        why = cannot_mount()
        if why:
            self.skipTest(why)

    def mount(self, c, name="mnt", extra=()):
        return Mount(self, c, self.tmp(name), extra)

    def test_tree_cp_rsync_tar(self):
        c = self.start_cluster(nodes=3)
        m = self.mount(c, extra=["--list-page", "7"])  # directories read over many pages
        src = self.tmp("tree")
        make_tree(src, 240, seed=1)
        run("cp", "-r", src, m.path("cp"))
        run("diff", "-r", src, m.path("cp"))
        run("rsync", "-a", src + "/", m.path("rsync") + "/")
        run("diff", "-r", src, m.path("rsync"))
        # a second rsync finds nothing to do, and the tree is in the catalog under its paths
        run("rsync", "-a", src + "/", m.path("rsync") + "/")
        listing = c.dfs("ls", "/rsync/")[1]
        self.assertIn("/rsync/d1/e1/f1/file-001.bin", listing)
        tar = self.tmp("t.tar")
        run("tar", "cf", tar, "-C", m.path(), "cp")
        os.makedirs(self.tmp("untar"))
        run("tar", "xf", tar, "-C", self.tmp("untar"))
        run("diff", "-r", src, self.tmp("untar", "cp"))
        os.makedirs(m.path("tarx"))
        run("tar", "xf", tar, "-C", m.path("tarx"))
        run("diff", "-r", src, m.path("tarx", "cp"))
        # rm -r empties directories before removing them: they stay until their rmdir
        run("rm", "-r", m.path("tarx"))
        self.assertFalse(os.path.exists(m.path("tarx")))
        self.assertEqual(c.dfs("ls", "/tarx/")[1].strip(), "")
        self.assertEqual(m.stop(), 0, m.tail())

    def test_large_file_sha256_and_random_reads(self):
        c = self.start_cluster(nodes=3)
        m = self.mount(c)
        big = harness.random_file(self.tmp("big"), 48 << 20, seed=2)
        want = sha(big)
        run("cp", big, m.path("big"))
        out = run("sha256sum", m.path("big")).stdout.split()[0]
        self.assertEqual(out, want)
        c.dfs("get", "/big", self.tmp("got"))
        self.assertEqual(sha(self.tmp("got")), want)
        # a file stored with dfs put reads the same through the mount
        c.dfs("put", big, "/dir/put")
        self.assertEqual(run("sha256sum", m.path("dir", "put")).stdout.split()[0], want)
        # random reads: bytes right at random offsets
        rnd = random.Random(3)
        with open(big, "rb") as a, open(m.path("big"), "rb", buffering=0) as b:
            for _ in range(200):
                off = rnd.randrange(0, (48 << 20) - 1)
                n = rnd.choice([1, 100, 4096, 70000])
                a.seek(off)
                b.seek(off)
                self.assertEqual(b.read(n), a.read(n), "at %d" % off)
        if shutil.which("fio") is None:
            return
        r = run("fio", "--name=rr", "--filename=" + m.path("big"), "--rw=randread", "--bs=4k",
                "--size=48M", "--runtime=3", "--time_based", "--ioengine=psync", "--numjobs=2",
                "--group_reporting", "--output-format=json", "--readonly")
        j = json.loads(r.stdout[r.stdout.index("{"):])
        self.assertEqual(j["jobs"][0]["error"], 0)
        self.assertGreater(j["jobs"][0]["read"]["total_ios"], 0)
        df = run("df", "-B1", m.path()).stdout.splitlines()[-1].split()
        self.assertGreater(int(df[1]), 0)  # statfs: the cluster's capacity
        self.assertEqual(m.stop(), 0, m.tail())

    def test_git_clone_and_fsck(self):
        if shutil.which("git") is None:
            self.skipTest("git is not installed")
        c = self.start_cluster(nodes=3)
        m = self.mount(c)
        repo = self.tmp("repo")
        env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                   GIT_COMMITTER_EMAIL="t@t", HOME=self.tmp())
        run("git", "init", "-q", repo, env=env)
        for i in range(3):
            make_tree(os.path.join(repo, "src%d" % i), 20, seed=10 + i)
            shutil.rmtree(os.path.join(repo, "src%d" % i, "empty"))  # git keeps no empty directories
            run("git", "add", ".", cwd=repo, env=env)
            run("git", "commit", "-qm", "commit %d" % i, cwd=repo, env=env)
        run("git", "clone", "-q", repo, m.path("clone"), env=env)
        run("git", "fsck", "--full", "--strict", cwd=m.path("clone"), env=env)
        log = run("git", "log", "--oneline", cwd=m.path("clone"), env=env).stdout
        self.assertEqual(len(log.splitlines()), 3)
        self.assertEqual(run("git", "status", "--porcelain", cwd=m.path("clone"), env=env).stdout, "")
        run("diff", "-r", "-x", ".git", repo, m.path("clone"))
        self.assertEqual(m.stop(), 0, m.tail())

    def test_writes(self):
        c = self.start_cluster(nodes=3)
        m = self.mount(c)
        p = m.path("w")
        with open(p, "wb") as f:
            f.write(b"hello ")
        with open(p, "ab") as f:  # O_APPEND
            f.write(b"world")
        self.assertEqual(open(p, "rb").read(), b"hello world")
        with open(p, "r+b") as f:  # overwrite in place
            f.seek(6)
            f.write(b"WORLD")
        self.assertEqual(open(p, "rb").read(), b"hello WORLD")
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"!")
        os.fsync(fd)  # fsync stores it: another client sees it before the close
        c.dfs("get", "/w", self.tmp("w1"))
        self.assertEqual(open(self.tmp("w1"), "rb").read(), b"hello WORLD!")
        os.close(fd)
        with open(p, "wb") as f:  # O_TRUNC
            f.write(b"x")
        self.assertEqual(open(p, "rb").read(), b"x")
        with open(m.path("sparse"), "wb") as f:
            f.seek(5 << 20)
            f.write(b"end")
        data = open(m.path("sparse"), "rb").read()
        self.assertEqual(len(data), (5 << 20) + 3)
        self.assertEqual(data[:4096], bytes(4096))
        self.assertEqual(data[-3:], b"end")
        os.truncate(m.path("sparse"), 10)
        self.assertEqual(os.path.getsize(m.path("sparse")), 10)
        os.truncate(m.path("sparse"), 100)
        self.assertEqual(open(m.path("sparse"), "rb").read(), bytes(100))
        open(m.path("empty"), "wb").close()
        self.assertEqual(os.path.getsize(m.path("empty")), 0)
        self.assertIn("/empty", c.dfs("ls", "/")[1])
        os.rename(m.path("w"), m.path("w2"))
        self.assertEqual(open(m.path("w2"), "rb").read(), b"x")
        self.assertFalse(os.path.exists(m.path("w")))
        os.unlink(m.path("w2"))
        self.assertFalse(os.path.exists(m.path("w2")))
        self.assertNotIn("/w2", c.dfs("ls", "/")[1])
        os.mkdir(m.path("d"))
        os.mkdir(m.path("d", "e"))
        self.assertEqual(sorted(os.listdir(m.path("d"))), ["e"])
        with self.assertRaises(OSError):
            os.rmdir(m.path("d"))  # not empty
        os.rmdir(m.path("d", "e"))
        os.rmdir(m.path("d"))
        self.assertFalse(os.path.exists(m.path("d")))
        os.chmod(m.path("empty"), 0o600)
        self.assertEqual(os.stat(m.path("empty")).st_mode & 0o777, 0o600)
        os.utime(m.path("empty"), (1000000000, 1000000000))
        self.assertEqual(os.stat(m.path("empty")).st_mtime, 1000000000)
        self.assertEqual(m.stop(), 0, m.tail())

    def test_rename_is_one_catalog_operation(self):
        c = self.start_cluster(nodes=3)
        m = self.mount(c, extra=NO_CACHE)
        src = self.tmp("tree")
        make_tree(src, 30, seed=8)
        run("cp", "-r", src, m.path("a"))
        before = sorted(l for l in c.dfs("ls", "/a/")[1].split() if l.startswith("/a/"))
        self.assertEqual(len(before), 30)
        os.rename(m.path("a"), m.path("b"))  # a whole directory
        after = sorted(l for l in c.dfs("ls", "/b/")[1].split() if l.startswith("/b/"))
        self.assertEqual(after, ["/b/" + p[3:] for p in before])
        self.assertEqual(c.dfs("ls", "/a/")[1].strip(), "")
        run("diff", "-r", src, m.path("b"))
        # a file onto another: replaced; the same file id, no copy of the bytes
        st = c.dfs("stat", "--json", "/b/d1/e1/f1/file-001.bin")[1]
        os.rename(m.path("b", "d1", "e1", "f1", "file-001.bin"), m.path("b", "d2", "e2", "f2", "file-002.bin"))
        st2 = c.dfs("stat", "--json", "/b/d2/e2/f2/file-002.bin")[1]
        self.assertEqual(json.loads(st)["file_id"], json.loads(st2)["file_id"])
        # refusals
        with self.assertRaises(OSError):
            os.rename(m.path("b", "d3"), m.path("b", "d4"))  # onto a non-empty directory
        # a file being written, renamed before its close, is stored under the new name
        with open(m.path("w"), "wb") as f:
            f.write(b"data")
            f.flush()
            os.rename(m.path("w"), m.path("w2"))
            f.write(b" more")
        self.assertEqual(open(m.path("w2"), "rb").read(), b"data more")
        self.assertFalse(os.path.exists(m.path("w")))
        # an empty directory made here, renamed
        os.mkdir(m.path("e"))
        os.rename(m.path("e"), m.path("e2"))
        self.assertTrue(os.path.isdir(m.path("e2")))
        self.assertFalse(os.path.exists(m.path("e")))
        # dfs mv: the same operation from the command line
        c.dfs("mv", "/b", "/c")
        self.assertTrue(os.path.isdir(m.path("c", "d0")))
        self.assertFalse(os.path.exists(m.path("b", "d0")))
        rc, out, err = c.dfs("mv", "/c/d0", "/w2", check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("is a file", err)
        self.assertEqual(m.stop(), 0, m.tail())

    def test_cluster_tool_mount(self):
        tool = None
        for base in harness._runfiles_dirs() + [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]:
            if os.path.isfile(os.path.join(base, "tools", "cluster")):
                tool, bin_dir = os.path.join(base, "tools", "cluster"), base
                break
        self.assertIsNotNone(tool, "tools/cluster not found")
        if not os.path.exists(os.path.join(bin_dir, "mount", "dfs-mount")):
            bin_dir = os.path.join(bin_dir, "bazel-bin")
        d, where = self.tmp("c"), self.tmp("m")

        def tool_run(*args):
            return subprocess.run([sys.executable, tool] + list(args) + ["--dir", d], capture_output=True,
                                  text=True, timeout=120)

        self.addCleanup(tool_run, "down")
        r = tool_run("up", "--nodes", "3", "--bin", bin_dir, "--mount", where)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(os.path.ismount(where))
        with open(os.path.join(where, "f"), "w") as f:
            f.write("through the mount")
        self.assertIn("dfs-mount", tool_run("status").stdout)
        held = open(os.path.join(where, "f"))  # down unmounts even with a file open
        try:
            r = tool_run("down")
        finally:
            try:
                held.close()
            except OSError:
                pass  # ENOTCONN: the mount is gone
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("unmounted", r.stderr)
        self.assertFalse(os.path.ismount(where))

    def test_attributes_and_directories_kept_in_the_catalog(self):
        c = self.start_cluster(nodes=3)
        m = self.mount(c)
        os.makedirs(m.path("empty", "inner"))
        os.chmod(m.path("empty"), 0o710)
        with open(m.path("f"), "wb") as f:
            f.write(b"x")
        os.chmod(m.path("f"), 0o640)
        os.chown(m.path("f"), 1234, 5678)
        os.utime(m.path("f"), (1500000000, 1500000000))
        with open(m.path("f"), "ab") as f:  # a new version keeps them
            f.write(b"y")
        os.utime(m.path("f"), (1500000000, 1500000000))
        self.assertEqual(m.stop(), 0, m.tail())
        # a second mount (a new process) finds all of it in the catalog
        m2 = self.mount(c, "mnt2", extra=NO_CACHE)
        st = os.stat(m2.path("f"))
        self.assertEqual(st.st_mode & 0o7777, 0o640)
        self.assertEqual((st.st_uid, st.st_gid), (1234, 5678))
        self.assertEqual(int(st.st_mtime), 1500000000)
        self.assertEqual(open(m2.path("f"), "rb").read(), b"xy")
        self.assertEqual(sorted(os.listdir(m2.path())), ["empty", "f"])
        self.assertEqual(os.listdir(m2.path("empty")), ["inner"])
        self.assertEqual(os.stat(m2.path("empty")).st_mode & 0o7777, 0o710)
        # rename moves them; rmdir forgets them
        os.rename(m2.path("empty"), m2.path("moved"))
        self.assertEqual(os.stat(m2.path("moved")).st_mode & 0o7777, 0o710)
        self.assertTrue(os.path.isdir(m2.path("moved", "inner")))
        with self.assertRaises(OSError):
            os.rmdir(m2.path("moved"))  # not empty
        os.rmdir(m2.path("moved", "inner"))
        os.rmdir(m2.path("moved"))
        self.assertEqual(sorted(os.listdir(m2.path())), ["f"])
        self.assertEqual(m2.stop(), 0, m2.tail())

    def test_spool_full_is_enospc(self):
        c = self.start_cluster(nodes=3)
        m = self.mount(c, extra=["--spool-size", "1M"])
        fd = os.open(m.path("big"), os.O_WRONLY | os.O_CREAT)
        try:
            os.write(fd, bytes(512 << 10))
            with self.assertRaises(OSError) as e:
                os.write(fd, bytes(1 << 20))
            self.assertEqual(e.exception.errno, 28)  # ENOSPC reaches the writer
        finally:
            os.close(fd)
        self.assertEqual(os.path.getsize(m.path("big")), 512 << 10)  # what was written, stored
        self.assertEqual(m.stop(), 0, m.tail())

    def test_spool_memory_spills_to_disk(self):
        """Files being written live in memory up to --spool-memory together, then move to disk
        with every byte: a file that grows past it, one fetched whole at open, one truncated
        up past it, while another stays in memory."""
        c = self.start_cluster(nodes=3)
        m = self.mount(c, extra=["--spool-memory", "1M"])
        pattern = bytes((i * 7 + i // 4096) % 256 for i in range(3 << 20))
        small = os.open(m.path("small"), os.O_WRONLY | os.O_CREAT)
        os.write(small, b"s" * (256 << 10))  # takes 256 KiB of the memory
        with open(m.path("grows"), "wb") as f:
            for i in range(0, len(pattern), 100000):  # moves to disk past 768 KiB
                f.write(pattern[i:i + 100000])
                f.flush()
        os.write(small, b"t" * 10)
        os.close(small)
        c.dfs("get", "/grows", self.tmp("grows"))
        self.assertEqual(open(self.tmp("grows"), "rb").read(), pattern)
        self.assertEqual(open(m.path("small"), "rb").read(), b"s" * (256 << 10) + b"t" * 10)
        with open(m.path("grows"), "r+b") as f:  # fetched whole: 3 MiB, straight to disk
            f.seek(1 << 20)
            f.write(b"middle")
        want = pattern[:1 << 20] + b"middle" + pattern[(1 << 20) + 6:]
        self.assertEqual(open(m.path("grows"), "rb").read(), want)
        with open(m.path("sparse"), "wb") as f:
            f.write(b"head")
            f.truncate(2 << 20)  # past the memory: moves to disk, the hole kept
            f.seek(0, os.SEEK_END)
            f.write(b"tail")
        self.assertEqual(open(m.path("sparse"), "rb").read(), b"head" + bytes((2 << 20) - 4) + b"tail")
        self.assertEqual(m.stop(), 0, m.tail())

    def test_memory_reused_across_files(self):
        """A file in memory takes the pages of one closed before (kept for reuse): it never shows
        their bytes, not in a hole, not past a truncate, not in what is stored."""
        c = self.start_cluster(nodes=3)
        m = self.mount(c)
        pattern = bytes((i * 7 + i // 4096 + 1) % 256 for i in range(3 << 20))
        with open(m.path("first"), "wb") as f:
            f.write(pattern)
        with open(m.path("second"), "wb") as f:  # its hole lies over the first file's bytes
            f.seek(1 << 20)
            f.write(b"x")
        want = bytes(1 << 20) + b"x"
        self.assertEqual(open(m.path("second"), "rb").read(), want)
        c.dfs("get", "/second", self.tmp("second"))
        self.assertEqual(open(self.tmp("second"), "rb").read(), want)
        with open(m.path("third"), "wb") as f:
            f.write(b"abc")
            f.truncate(2 << 20)  # grown over the first file's bytes
            f.flush()
            os.fsync(f.fileno())
            f.truncate(1)
            f.truncate(100)  # cut, then grown: zeros past the cut
        self.assertEqual(open(m.path("third"), "rb").read(), b"a" + bytes(99))
        c.dfs("get", "/first", self.tmp("first"))
        self.assertEqual(open(self.tmp("first"), "rb").read(), pattern)
        self.assertEqual(m.stop(), 0, m.tail())

    def test_daemon(self):
        """Without -f the command returns once mounted (0); the daemon stores what is written
        (its gRPC threads start after the fork) and exits at the unmount. A failure before the
        mount is the command's exit status, with its reason on standard error."""
        c = self.start_cluster(nodes=3)
        d = self.tmp("dmnt")
        spool = self.tmp("dspool")
        os.makedirs(d)
        os.makedirs(spool)
        log = self.tmp("daemon.log")
        r = run(mount_binary(), "--metadata", c.address, "--token-file", c.admin_token_file,
                "--spool-dir", spool, "--log-file", log, d, timeout=MOUNT_READY_S)
        pids = []

        def stop():
            if os.path.ismount(d):
                subprocess.run(["fusermount3", "-uz", d], capture_output=True)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.addCleanup(stop)
        self.assertTrue(os.path.ismount(d), r.stderr)
        for e in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % e, "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if d.encode() in args and any(a.endswith(b"dfs-mount") for a in args):
                pids.append(int(e))
        self.assertEqual(len(pids), 1, pids)
        data = random.Random(9).randbytes(3 << 20)
        with open(os.path.join(d, "f"), "wb") as f:
            f.write(data)
        c.dfs("get", "/f", self.tmp("f"))
        self.assertEqual(open(self.tmp("f"), "rb").read(), data)
        run("fusermount3", "-u", d)
        deadline = time.monotonic() + MOUNT_STOP_S
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % pids[0]) as f:
                    if f.read().split(")")[-1].split()[0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.05)
        else:
            self.fail("the daemon did not exit after the unmount")
        # Its log went to --log-file, from the mount to the unmount.
        with open(log) as f:
            text = f.read()
        self.assertIn('msg="mounted"', text)
        self.assertIn('msg="unmounting"', text)
        r = run(mount_binary(), "--metadata", c.address, "--token-file", self.tmp("no-such-token"),
                "--spool-dir", spool, "--log-file", log, d, check=False, timeout=MOUNT_READY_S)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("token", r.stderr)
        self.assertFalse(os.path.ismount(d))

    def test_replaced_while_read(self):
        c = self.start_cluster(nodes=3)
        m = self.mount(c, extra=NO_CACHE)
        v1 = harness.random_file(self.tmp("v1"), 12 << 20, seed=4)
        v2 = harness.random_file(self.tmp("v2"), 12 << 20, seed=5)
        c.dfs("put", v1, "/f")
        old, new = open(v1, "rb").read(), open(v2, "rb").read()
        with open(m.path("f"), "rb", buffering=0) as r:
            first = r.read(4 << 20)
            c.dfs("put", "--force", v2, "/f")
            try:
                rest = b""
                while True:
                    b = r.read(1 << 20)
                    if not b:
                        break
                    rest += b
                got = first + rest
                # a reader that was open sees the version it opened, whole, never a mix
                self.assertTrue(got == old, "a reader saw a mix of versions")
            except OSError:
                pass  # or an error, once the old copies are gone: never wrong bytes
        self.assertEqual(open(m.path("f"), "rb").read(), new)  # a new open sees the new version
        self.assertEqual(m.stop(), 0, m.tail())

    def test_streamed_reads_seek_and_check_every_block(self):
        # Sequential reads past the read-ahead window stream the rest of the file through one
        # range fetch; a seek starts another; damaged copies are read around, and a fragment with
        # no good copy left fails the read: never wrong bytes.
        c = self.start_cluster(nodes=3)
        m = self.mount(c)
        size = 40 << 20
        src = harness.random_file(self.tmp("src"), size, seed=8)
        data = open(src, "rb").read()
        c.dfs("put", "--replicas", "3", src, "/s")
        with open(m.path("s"), "rb", buffering=0) as r:
            got = b"".join(r.read(1 << 20) for _ in range(20))
            self.assertEqual(got, data[: 20 << 20])
            r.seek(5 << 20)  # back: a new fetch from there
            rest = b"".join(iter(lambda: r.read(1 << 20), b""))
            self.assertEqual(rest, data[5 << 20:])
        frags = json.loads(c.dfs("stat", "--json", "/s")[1])["fragments"]
        last = frags[-1]
        copies = sorted(harness.fragment_files(c, [last["fragment_id"]]))
        self.assertEqual(len(copies), 3)

        def flip(path):
            with open(path, "r+b") as f:
                for mib in range(last["size"] >> 20):
                    f.seek(128 + (mib << 20) + 1000)  # after the 128-byte header
                    b = f.read(1)
                    f.seek(-1, os.SEEK_CUR)
                    f.write(bytes([b[0] ^ 0x10]))

        for p in copies[:2]:
            flip(p)
        self.assertEqual(sha(m.path("s")), hashlib.sha256(data).hexdigest())
        flip(copies[2])
        with self.assertRaises(OSError):
            with open(m.path("s"), "rb", buffering=0) as r:
                for b in iter(lambda: r.read(1 << 20), b""):
                    pass
        self.assertEqual(m.stop(), 0, m.tail())

    def test_storage_node_killed_during_reads(self):
        c = self.start_cluster(nodes=4)
        m = self.mount(c)
        src = harness.random_file(self.tmp("src"), 24 << 20, seed=6)
        c.dfs("put", "--replicas", "3", src, "/f")
        want = sha(src)
        h = hashlib.sha256()
        with open(m.path("f"), "rb", buffering=0) as r:
            h.update(r.read(2 << 20))
            for name in c.kill_nodes(1, seed=1):
                c.expected_exits.add(name)
            for b in iter(lambda: r.read(256 << 10), b""):
                h.update(b)
        self.assertEqual(h.hexdigest(), want)
        self.assertEqual(sha(m.path("f")), want)
        self.assertEqual(m.stop(), 0, m.tail())

    def test_unmount_with_open_files(self):
        c = self.start_cluster(nodes=3)
        m = self.mount(c)
        c.dfs("put", harness.random_file(self.tmp("a"), 1 << 20, seed=7), "/a")
        r = open(m.path("a"), "rb")
        r.read(10)
        w = open(m.path("written"), "wb")
        w.write(b"kept at unmount")
        w.flush()
        # busy: fusermount3 -u refuses, and the mount stays whole
        self.assertNotEqual(subprocess.run(["fusermount3", "-u", m.dir], capture_output=True).returncode, 0)
        self.assertTrue(os.path.ismount(m.dir))
        # SIGTERM unmounts all the same; what was written is stored
        self.assertEqual(m.stop(how="sigterm"), 0, m.tail())
        self.assertFalse(os.path.ismount(m.dir))
        for f in (r, w):
            try:
                f.close()
            except OSError:
                pass
        c.dfs("get", "/written", self.tmp("written"))
        self.assertEqual(open(self.tmp("written"), "rb").read(), b"kept at unmount")

    def test_default_permissions(self):
        c = self.start_cluster(nodes=3)
        # a mount point other users can reach (the test's own folders are private)
        mdir = tempfile.mkdtemp(prefix="dfs-mount-test-", dir="/tmp")
        self.addCleanup(shutil.rmtree, mdir, True)  # runs after the unmount below
        os.chmod(mdir, 0o755)
        m = Mount(self, c, os.path.join(mdir, "mnt"), ["-o", "allow_other,default_permissions"],
                  side=self.tmp())
        with open(m.path("secret"), "wb") as f:
            f.write(b"s")
        with open(m.path("open"), "wb") as f:
            f.write(b"o")
        os.chmod(m.path("secret"), 0o600)
        os.chmod(m.path("open"), 0o644)
        nobody = 65534

        def as_nobody(*cmd):
            return subprocess.run(list(cmd), capture_output=True, text=True,
                                  preexec_fn=lambda: (os.setgid(nobody), os.setuid(nobody)))

        self.assertEqual(as_nobody("cat", m.path("open")).stdout, "o")
        r = as_nobody("cat", m.path("secret"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Permission denied", r.stderr)
        r = as_nobody("sh", "-c", "echo x >> " + m.path("open"))
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(open(m.path("open"), "rb").read(), b"o")
        self.assertEqual(m.stop(), 0, m.tail())


if __name__ == "__main__":
    harness.main()
