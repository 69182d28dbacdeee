"""A local dfs cluster: one dfs-metadata and N dfs-storage processes on loopback, in one directory.

Used by tools/cluster (the command line) and by tests/harness.py (end-to-end tests). Python 3 stdlib only.

Directory layout (D defaults to .cluster under the repository root):

    D/state.json            what was started: per process the exact argv, pid, /proc start time, state
    D/lock                  flock'ed while a command changes the cluster
    D/metadata/catalog.db   the catalog;  D/metadata/log, D/metadata/ready
    D/metadata-R/           replica R of a replicated catalog (up --metadata N, N > 1): catalog.db,
                            its Raft log catalog.db.raft/, log, ready; tokens stay in D/metadata/
    D/node-I/data/          node I's fragment store (its node id persists here); D/node-I/log, D/node-I/ready

The daemons' command lines (the contract with services/):

    dfs-metadata --listen 127.0.0.1:0 --db D/metadata/catalog.db --ready-file D/metadata/ready
                 [--log-level L] [extra flags]
    dfs-storage  --listen 127.0.0.1:0 --data D/node-I/data --metadata ADDR --ready-file D/node-I/ready
                 [--zone zK] [--log-level L]

With --metadata N (N > 1) replica R runs with --listen 127.0.0.1:GRPC_R --replica-id R+1
--peers 1=127.0.0.1:RAFT_0=127.0.0.1:GRPC_0,... (ports chosen once at `up`, kept in state.json), and
the storage nodes get --metadata with every replica's address.

Each daemon writes its ready file atomically with its advertised address and "\\n" once it serves
(storage: once registered), and exits 0 on SIGTERM.

Process identity: a pid is only ours while /proc/<pid>/cmdline still ends with the recorded argv (a
script run through an interpreter gets the interpreter prepended) and /proc/<pid>/stat shows the
recorded start time; pids get reused, so nothing is signalled without that check.
"""

import contextlib
import errno
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(REPO_ROOT, ".cluster")
DAEMONS = ("dfs-metadata", "dfs-storage")
CLI = "dfs"

READY_POLL_S = 0.02
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# How long a command waits for the cluster lock before it says another command holds it.
LOCK_WAIT_S = 2.0
STATE_VERSION = 1

# Process states recorded in state.json.
RUNNING = "running"
STOPPED = "stopped"  # stopped by us with SIGTERM (or SIGKILL after the grace period)
KILLED = "killed"  # SIGKILLed on purpose (kill --nodes)
EXITED = "exited"  # recorded as running but found gone: it died on its own


def is_metadata(name):
    """Whether a process name is the metadata service ("metadata") or one of its replicas."""
    return name == "metadata" or name.startswith("metadata-")


def _free_ports(n):
    """n distinct free loopback TCP ports (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ClusterError(Exception):
    """A cluster operation failed; str() is a one-line reason (details may follow on later lines)."""


# Where a bazel-bin holds the programs (the Bazel packages that build them), then the image's
# /opt/dfs/bin/services/ (k8s/build-image keeps that layout).
BIN_SUBDIRS = (os.path.join("services", "metadata"), os.path.join("services", "storage"), "cli", "services")


def find_binaries(bin_dir=None, names=DAEMONS + (CLI,), required=DAEMONS):
    """Map each binary name to an absolute path.

    Looks in bin_dir (and the subfolders a bazel-bin puts them in: services/metadata/,
    services/storage/, cli/; and services/, the container image's layout), else $DFS_BIN_DIR, else the
    repository's bazel-bin. Raises ClusterError when a required one is missing.
    """
    bin_dir = bin_dir or os.environ.get("DFS_BIN_DIR")
    if bin_dir:
        where = bin_dir
        dirs = [bin_dir] + [os.path.join(bin_dir, d) for d in BIN_SUBDIRS]
    else:
        where = os.path.join(REPO_ROOT, "bazel-bin")
        dirs = [os.path.join(where, d) for d in BIN_SUBDIRS]
    found = {}
    for name in names:
        for d in dirs:
            p = os.path.join(d, name)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                found[name] = os.path.abspath(p)
                break
    missing = [n for n in required if n not in found]
    if missing:
        hint = "" if (bin_dir and bin_dir != os.environ.get("DFS_BIN_DIR")) else "; build first: bazel build //..."
        raise ClusterError("%s not found in %s%s" % (", ".join(missing), where, hint))
    return found


def _proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not raw:
        return None  # a zombie, or a kernel thread
    return [a.decode("utf-8", "surrogateescape") for a in raw.rstrip(b"\0").split(b"\0")]


def _proc_starttime(pid):
    """Field 22 of /proc/<pid>/stat (clock ticks since boot); None if gone. Zombies count as gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    if not rest or rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def _proc_starttime_any(pid):
    """Like _proc_starttime but zombies included."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2:].split()[19])


def _is_ours(rec):
    """True while the recorded process is alive and is the one we started."""
    pid = rec.get("pid")
    if not pid:
        return False
    start = _proc_starttime(pid)
    if start is None or (rec.get("starttime") is not None and start != rec["starttime"]):
        return False
    cmd = _proc_cmdline(pid)
    want = rec["cmd"]
    return cmd is not None and len(cmd) >= len(want) and cmd[len(cmd) - len(want):] == want


def _tail(path, offset=0, lines=30):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e.strerror)
    text = data.decode("utf-8", "replace").rstrip("\n").split("\n")
    if text == [""]:
        return "(log is empty)"
    return "\n".join(text[-lines:])


def _atomic_write(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _die_with_parent_prefix():
    """A command prefix that makes the child get SIGKILL when this process dies (test harnesses).

    setpriv (util-linux, essential in Debian) sets the parent-death signal and execs the command,
    which keeps it. It replaces a preexec_fn because a preexec_fn makes subprocess fork() instead of
    vfork(), and fork() runs every pthread_atfork handler in this process: gRPC 1.51's event engine
    (loaded by tests that speak gRPC through tests/grpcinspect) registers such handlers whatever
    GRPC_ENABLE_FORK_SUPPORT says, and one of them aborts the test process now and then
    ("thread_pool.cc: assertion failed: state_ == State::kRunning", grpc/grpc#31885).
    None when setpriv is missing: the caller falls back to _die_with_parent_hook.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else None


def _die_with_parent_hook():
    """A preexec_fn that makes the child get SIGKILL when this process dies (for test harnesses).

    libc is loaded here, in the parent: importing or loading anything between fork and exec can
    deadlock on locks another thread held at fork time.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    PR_SET_PDEATHSIG = 1

    def hook():
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


class Cluster:
    """A local cluster rooted at a directory. All methods raise ClusterError on failure.

    ready_timeout: seconds to wait for each ready file (polled every 20 ms).
    bin_dir / binaries choose the executables (binaries: {"dfs-metadata": path, ...} wins);
    die_with_parent=True makes every daemon get SIGKILL if this Python process dies (test harnesses);
    the command line leaves it False so the daemons outlive `tools/cluster up`.
    out is where progress messages go (default stderr); None silences them.
    """

    def __init__(self, dir=None, bin_dir=None, binaries=None, die_with_parent=False, out=sys.stderr,
                 log_level="info", ready_timeout=READY_TIMEOUT_S):
        self.dir = os.path.abspath(dir or DEFAULT_DIR)
        self._bin_dir = bin_dir
        self._binaries = dict(binaries) if binaries else None
        self.die_with_parent = die_with_parent
        self.out = out
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        self._children = {}  # pid -> Popen, for processes this object started (exit codes)
        # One entry per process this object stopped or found dead:
        # {"name", "pid", "how": "sigterm"|"sigkill-after-timeout"|"killed"|"exited", "exit_code"}
        self.stop_results = []

    # ---- paths and state -------------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def state_path(self):
        return self.path("state.json")

    def load_state(self):
        try:
            with open(self.state_path) as f:
                state = json.load(f)
        except FileNotFoundError:
            return {"version": STATE_VERSION, "processes": {}}
        except (OSError, ValueError) as e:
            raise ClusterError("cannot read %s: %s" % (self.state_path, e))
        state.setdefault("processes", {})
        return state

    def _save_state(self, state):
        os.makedirs(self.dir, exist_ok=True)
        _atomic_write(self.state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def _locked(self):
        os.makedirs(self.dir, exist_ok=True)
        fd = os.open(self.path("lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # A process forked (by another thread of this program) while the lock was held keeps
            # it until its exec closes the descriptor: wait that out, but not another command.
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                    if time.monotonic() >= deadline:
                        raise ClusterError("another tools/cluster command is working on %s" % self.dir)
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)

    def _say(self, msg):
        if self.out is not None:
            print(msg, file=self.out, flush=True)

    @property
    def metadata_address(self):
        """The running metadata service's address ("127.0.0.1:PORT"), or with replicas the list of
        every replica's ("a:1,b:2,c:3", for DFS_METADATA) while one runs; else None."""
        state = self.load_state()
        recs = self._metadata_recs(state)
        if any(r.get("state") == RUNNING and self._alive(r) for r in recs):
            return self._metadata_list(state)
        return None

    @staticmethod
    def _metadata_recs(state):
        """The metadata process records, replica 0 first."""
        names = sorted((n for n in state["processes"] if is_metadata(n)),
                       key=lambda n: -1 if n == "metadata" else int(n.split("-")[1]))
        return [state["processes"][n] for n in names]

    def _metadata_list(self, state):
        """What clients and nodes get as --metadata: one address, or every replica's."""
        peers = state.get("metadata_peers")
        if peers:
            return ",".join("127.0.0.1:%d" % p["grpc"] for p in peers)
        rec = state["processes"].get("metadata")
        return rec.get("address") if rec else None

    def binaries(self):
        if self._binaries is None:
            self._binaries = find_binaries(self._bin_dir)
        return self._binaries

    # ---- process primitives ----------------------------------------------------------------

    def _alive(self, rec):
        child = self._children.get(rec.get("pid"))
        if child is not None:
            # Our own child: its pid cannot be reused before we reap it, and /proc shows an exiting
            # process (empty cmdline) before waitpid can collect its status.
            return child.poll() is None
        return _is_ours(rec)

    def _spawn(self, name, cmd, ready_file, log_path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ready_file)  # stale from an earlier run: never mistake it for this one's
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(("=== %s start: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), " ".join(cmd))).encode())
            log.flush()
            offset = log.tell()
            argv, hook = cmd, None
            if self.die_with_parent:
                prefix = _die_with_parent_prefix()
                if prefix:
                    argv = prefix + cmd  # _is_ours matches the command as a suffix of the cmdline
                else:
                    hook = _die_with_parent_hook()
            try:
                child = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
                    start_new_session=True, cwd=self.dir, preexec_fn=hook)
            except OSError as e:
                raise ClusterError("cannot start %s (%s): %s" % (name, cmd[0], e.strerror))
        self._children[child.pid] = child
        return {
            "name": name,
            "cmd": cmd,
            "pid": child.pid,
            "starttime": _proc_starttime(child.pid),
            "state": RUNNING,
            "address": None,
            "log": log_path,
            "log_offset": offset,
            "ready_file": ready_file,
            "started_at": time.time(),
        }

    def _wait_ready(self, recs):
        """Wait until every rec's ready file holds an address; fills rec["address"]."""
        timeout = self.ready_timeout
        deadline = time.monotonic() + timeout
        pending = list(recs)
        while pending:
            for rec in list(pending):
                try:
                    with open(rec["ready_file"]) as f:
                        content = f.read()
                except FileNotFoundError:
                    content = ""
                if content.endswith("\n") and content.strip():
                    rec["address"] = content.strip()
                    pending.remove(rec)
                    continue
                if not self._alive(rec):
                    code = self._exit_code(rec)
                    raise ClusterError(
                        "%s exited%s before it was ready; last lines of %s:\n%s" % (
                            rec["name"], "" if code is None else " with status %d" % code, rec["log"],
                            _tail(rec["log"], rec.get("log_offset", 0))))
            if not pending:
                break
            if time.monotonic() >= deadline:
                rec = pending[0]
                raise ClusterError("%s not ready after %g s (no %s); last lines of %s:\n%s" % (
                    rec["name"], timeout, rec["ready_file"], rec["log"],
                    _tail(rec["log"], rec.get("log_offset", 0))))
            time.sleep(READY_POLL_S)

    def _exit_code(self, rec):
        """The exit status if we are the parent and it has ended (negative: killed by that signal)."""
        child = self._children.get(rec.get("pid"))
        if child is None:
            return None
        return child.poll()

    def _wait_gone(self, recs, timeout):
        deadline = time.monotonic() + timeout
        left = [r for r in recs if self._alive(r)]
        while left and time.monotonic() < deadline:
            time.sleep(READY_POLL_S)
            left = [r for r in left if self._alive(r)]
        return left

    def _wait_reaped(self, recs, timeout=3.0):
        """Wait (bounded) until exited processes we are not the parent of leave the process table.

        Their new parent (init) reaps them when it gets to it; until then they are zombies that
        `pgrep` still lists, which confuses checks that nothing is left behind.
        """
        deadline = time.monotonic() + timeout
        for rec in recs:
            pid = rec.get("pid")
            if not pid or pid in self._children:
                continue
            while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
                if _proc_starttime_any(pid) != rec.get("starttime"):
                    break  # already reaped, and the pid reused by someone else
                time.sleep(READY_POLL_S)

    def _reap(self, rec):
        child = self._children.pop(rec.get("pid"), None)
        if child is None:
            return None
        try:
            return child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None

    def _signal(self, rec, sig):
        if self._alive(rec):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec["pid"], sig)

    def _stop(self, recs, timeout=STOP_TIMEOUT_S):
        """SIGTERM every rec that is ours, wait up to timeout, SIGKILL the rest; record results."""
        live = [r for r in recs if r.get("state") == RUNNING and self._alive(r)]
        for r in recs:
            if r.get("state") == RUNNING and r not in live:
                self._mark_exited(r)
        for r in live:
            self._signal(r, signal.SIGTERM)
        stubborn = self._wait_gone(live, timeout)
        for r in stubborn:
            self._say("%s (pid %d) did not exit %g s after SIGTERM: SIGKILL" % (r["name"], r["pid"], timeout))
            self._signal(r, signal.SIGKILL)
        self._wait_gone(stubborn, 5)
        for r in live:
            code = self._reap(r)
            how = "sigkill-after-timeout" if r in stubborn else "sigterm"
            self.stop_results.append({"name": r["name"], "pid": r["pid"], "how": how, "exit_code": code})
            r["state"] = STOPPED
            r["how"] = how
            r["exit_code"] = code
            r["stopped_at"] = time.time()

    def _mark_exited(self, rec):
        code = self._reap(rec)
        self.stop_results.append({"name": rec["name"], "pid": rec["pid"], "how": "exited", "exit_code": code})
        rec["state"] = EXITED
        rec["exit_code"] = code

    def _refresh(self, state):
        """Mark processes recorded as running that are gone as exited."""
        for rec in state["processes"].values():
            if rec.get("state") == RUNNING and not self._alive(rec):
                self._mark_exited(rec)

    # ---- commands ----------------------------------------------------------------------------

    def tls_flags(self):
        """Daemon flags for TLS with a development CA in DIR/tls (tools/devca, run on first use)."""
        tls = self.path("tls")
        if not os.path.exists(os.path.join(tls, "server.pem")):
            devca = os.path.join(os.path.dirname(os.path.realpath(__file__)), "devca")
            subprocess.run([devca, tls], check=True, capture_output=True)
        return ["--tls-cert", os.path.join(tls, "server.pem"), "--tls-key", os.path.join(tls, "server.key"),
                "--tls-ca", os.path.join(tls, "ca.pem")]

    @property
    def admin_token_file(self):
        """The cluster's admin token (made by dfs-metadata at its first start; mode 0600)."""
        return self.path("metadata", "admin.token")

    @property
    def node_token_file(self):
        """The enrollment token (role bootstrap) the storage nodes present at their first registration,
        made by dfs-metadata too; each node then makes its own (D/node-I/data/node.token) and presents
        only that one."""
        return self.path("metadata", "node.token")

    def _metadata_cmd(self, extra, listen="127.0.0.1:0"):
        cmd = [self.binaries()["dfs-metadata"], "--listen", listen,
               "--db", self.path("metadata", "catalog.db"),
               "--ready-file", self.path("metadata", "ready"),
               "--admin-token-file", self.admin_token_file,
               "--node-token-file", self.node_token_file]
        if self.log_level:
            cmd += ["--log-level", self.log_level]
        return cmd + list(extra)

    def _storage_cmd(self, i, metadata_addr, zones, extra=()):
        cmd = [self.binaries()["dfs-storage"], "--listen", "127.0.0.1:0",
               "--data", self.path("node-%d" % i, "data"),
               "--metadata", metadata_addr,
               "--ready-file", self.path("node-%d" % i, "ready"),
               "--token-file", self.node_token_file]
        if zones:
            cmd += ["--zone", "z%d" % (i % zones)]
        if self.log_level:
            cmd += ["--log-level", self.log_level]
        return cmd + list(extra)

    def _replica_cmd(self, state, r):
        """Replica r's command line (replicated catalog): fixed ports, the same --peers on all."""
        peers = state["metadata_peers"]
        cmd = [self.binaries()["dfs-metadata"], "--listen", "127.0.0.1:%d" % peers[r]["grpc"],
               "--db", self.path("metadata-%d" % r, "catalog.db"),
               "--ready-file", self.path("metadata-%d" % r, "ready"),
               "--admin-token-file", self.admin_token_file,
               "--node-token-file", self.node_token_file,
               "--replica-id", str(r + 1),
               "--peers", ",".join("%d=127.0.0.1:%d=127.0.0.1:%d" % (i + 1, p["raft"], p["grpc"])
                                   for i, p in enumerate(peers))]
        if self.log_level:
            cmd += ["--log-level", self.log_level]
        return cmd + list(state.get("metadata_flags", []))

    def _spawn_replica(self, state, r):
        name = "metadata-%d" % r
        os.makedirs(self.path(name), exist_ok=True)
        rec = self._spawn(name, self._replica_cmd(state, r), self.path(name, "ready"), self.path(name, "log"))
        rec["index"] = r
        state["processes"][name] = rec
        return rec

    def _wait_tokens(self):
        """A replicated catalog's first leader writes the token files once it leads: wait for them."""
        deadline = time.monotonic() + self.ready_timeout
        while not (os.path.exists(self.admin_token_file) and os.path.exists(self.node_token_file)):
            if time.monotonic() >= deadline:
                raise ClusterError("no metadata replica became leader within %g s (no %s)" % (
                    self.ready_timeout, self.admin_token_file))
            time.sleep(READY_POLL_S)

    def _start_storage(self, state, indexes):
        addr = self._metadata_list(state)
        recs = []
        try:
            for i in indexes:
                name = "node-%d" % i
                os.makedirs(self.path(name, "data"), exist_ok=True)
                rec = self._spawn(name, self._storage_cmd(i, addr, state.get("zones"), state.get("storage_flags", [])),
                                  self.path(name, "ready"), self.path(name, "log"))
                rec["index"] = i
                if state.get("zones"):
                    rec["zone"] = "z%d" % (i % state["zones"])
                state["processes"][name] = rec
                recs.append(rec)
            self._save_state(state)
            self._wait_ready(recs)
        except BaseException:
            self._stop(recs)
            self._save_state(state)
            raise
        self._save_state(state)
        return recs

    def running(self):
        """Names of recorded processes that are alive and ours."""
        state = self.load_state()
        return [n for n, r in state["processes"].items() if r.get("state") == RUNNING and self._alive(r)]

    def up(self, nodes, zones=None, metadata_flags=(), storage_flags=(), metadata_replicas=1):
        """Start the metadata service (metadata_replicas > 1: that many replicas of a replicated
        catalog) and nodes 0..nodes-1; returns the metadata address (list).

        Reuses the directory (catalog and data survive, nodes keep their ids). On failure stops
        whatever this call started and raises ClusterError.
        """
        if nodes < 0:
            raise ClusterError("--nodes must be >= 0")
        if zones is not None and zones < 1:
            raise ClusterError("--zones must be >= 1")
        if metadata_replicas < 1:
            raise ClusterError("--metadata must be >= 1")
        if metadata_replicas > 1:
            return self._up_replicated(nodes, zones, metadata_flags, storage_flags, metadata_replicas)
        with self._locked():
            state = self.load_state()
            live = [r for r in state["processes"].values() if r.get("state") == RUNNING and self._alive(r)]
            if live:
                raise ClusterError("a cluster is already running in %s (%s); run `tools/cluster down` first" % (
                    self.dir, ", ".join("%s pid %d" % (r["name"], r["pid"]) for r in live)))
            self._refresh(state)
            self.binaries()
            os.makedirs(self.path("metadata"), exist_ok=True)
            state.update({"version": STATE_VERSION, "dir": self.dir, "nodes": nodes, "zones": zones,
                          "metadata_flags": list(metadata_flags), "storage_flags": list(storage_flags),
                          "binaries": self.binaries(), "metadata_peers": None})
            rec = self._spawn("metadata", self._metadata_cmd(metadata_flags), self.path("metadata", "ready"),
                              self.path("metadata", "log"))
            state["processes"]["metadata"] = rec
            self._save_state(state)
            try:
                self._wait_ready([rec])
            except BaseException:
                self._stop([rec])
                self._save_state(state)
                raise
            self._say("metadata ready at %s (pid %d)" % (rec["address"], rec["pid"]))
            try:
                self._start_storage(state, range(nodes))
            except BaseException:
                self._stop([rec])
                self._save_state(state)
                raise
            self._say("%d storage node(s) ready%s" % (nodes, "" if not zones else " in %d zone(s)" % zones))
            return rec["address"]

    def _up_replicated(self, nodes, zones, metadata_flags, storage_flags, n):
        with self._locked():
            state = self.load_state()
            live = [r for r in state["processes"].values() if r.get("state") == RUNNING and self._alive(r)]
            if live:
                raise ClusterError("a cluster is already running in %s (%s); run `tools/cluster down` first" % (
                    self.dir, ", ".join("%s pid %d" % (r["name"], r["pid"]) for r in live)))
            self._refresh(state)
            self.binaries()
            os.makedirs(self.path("metadata"), exist_ok=True)
            peers = state.get("metadata_peers")
            if not peers or len(peers) != n:  # a new cluster (a reused one keeps its addresses)
                ports = _free_ports(2 * n)
                peers = [{"grpc": ports[2 * i], "raft": ports[2 * i + 1]} for i in range(n)]
            state.update({"version": STATE_VERSION, "dir": self.dir, "nodes": nodes, "zones": zones,
                          "metadata_flags": list(metadata_flags), "storage_flags": list(storage_flags),
                          "binaries": self.binaries(), "metadata_peers": peers})
            state["processes"].pop("metadata", None)  # a one-service run in this folder before
            recs = [self._spawn_replica(state, r) for r in range(n)]
            self._save_state(state)
            try:
                self._wait_ready(recs)
                self._wait_tokens()
            except BaseException:
                self._stop(recs)
                self._save_state(state)
                raise
            self._say("metadata replicas ready at %s (pids %s)" % (
                self._metadata_list(state), " ".join(str(r["pid"]) for r in recs)))
            try:
                self._start_storage(state, range(nodes))
            except BaseException:
                self._stop(recs)
                self._save_state(state)
                raise
            self._say("%d storage node(s) ready%s" % (nodes, "" if not zones else " in %d zone(s)" % zones))
            return self._metadata_list(state)

    def start_metadata(self):
        """Start every metadata replica (or the one service) recorded but not running, on its old
        addresses; returns the names started."""
        with self._locked():
            state = self.load_state()
            self._refresh(state)
            if self._binaries is None and state.get("binaries") and not self._bin_dir:
                self._binaries = state["binaries"]
            recs = self._metadata_recs(state)
            if not recs:
                raise ClusterError("the metadata service was never started in %s" % self.dir)
            started = []
            try:
                for rec in recs:
                    if rec.get("state") == RUNNING:
                        continue
                    if rec["name"] == "metadata":
                        new = self._spawn("metadata", self._metadata_cmd(state.get("metadata_flags", []),
                                                                         listen=rec["address"]),
                                          self.path("metadata", "ready"), self.path("metadata", "log"))
                        state["processes"]["metadata"] = new
                    else:
                        new = self._spawn_replica(state, rec["index"])
                    started.append(new)
                self._save_state(state)
                self._wait_ready(started)
            except BaseException:
                self._stop(started)
                self._save_state(state)
                raise
            self._save_state(state)
            for r in started:
                self._say("%s started at %s (pid %d)" % (r["name"], r["address"], r["pid"]))
            return [r["name"] for r in started]

    def metadata_pids(self):
        """{name: pid} of the metadata processes running now (for tests that signal them)."""
        state = self.load_state()
        return {r["name"]: r["pid"] for r in self._metadata_recs(state)
                if r.get("state") == RUNNING and self._alive(r)}

    def down(self, timeout=STOP_TIMEOUT_S):
        """Stop every recorded process that is still ours: storage nodes first, then metadata.

        Returns this call's entries of stop_results.
        """
        with self._locked():
            state = self.load_state()
            before = len(self.stop_results)
            procs = state["processes"]
            nodes = [r for n, r in procs.items() if not is_metadata(n)]
            try:
                self._stop(nodes, timeout)
                self._stop(self._metadata_recs(state), timeout)
            finally:
                self._save_state(state)
            stopped = self.stop_results[before:]
            self._wait_reaped([procs[r["name"]] for r in stopped if r["name"] in procs and r["how"] != "exited"])
            return stopped

    def kill_nodes(self, count, seed=None):
        """SIGKILL `count` randomly chosen running storage nodes; returns their names."""
        with self._locked():
            state = self.load_state()
            self._refresh(state)
            live = sorted((r for n, r in state["processes"].items() if not is_metadata(n) and r["state"] == RUNNING),
                          key=lambda r: r.get("index", 0))
            if count < 0 or count > len(live):
                self._save_state(state)
                raise ClusterError("cannot kill %d node(s): %d running" % (count, len(live)))
            victims = random.Random(seed).sample(live, count)
            for r in victims:
                self._signal(r, signal.SIGKILL)
            left = self._wait_gone(victims, 5)
            for r in victims:
                r["exit_code"] = None if r in left else self._reap(r)
                r["state"] = KILLED
                r["stopped_at"] = time.time()
                self.stop_results.append({"name": r["name"], "pid": r["pid"], "how": "killed",
                                          "exit_code": r["exit_code"]})
            self._save_state(state)
            return sorted((r["name"] for r in victims), key=lambda n: int(n.split("-")[1]))

    def start_node(self, i):
        """(Re)start storage node i with its data dir (a new index adds a node); returns its address."""
        if i < 0:
            raise ClusterError("node index must be >= 0")
        with self._locked():
            state = self.load_state()
            self._refresh(state)
            if not any(r.get("state") == RUNNING for r in self._metadata_recs(state)):
                self._save_state(state)
                raise ClusterError("the metadata service is not running in %s; run `tools/cluster up` first" %
                                   self.dir)
            rec = state["processes"].get("node-%d" % i)
            if rec and rec.get("state") == RUNNING:
                raise ClusterError("node-%d is already running (pid %d)" % (i, rec["pid"]))
            if self._binaries is None and state.get("binaries") and not self._bin_dir:
                self._binaries = state["binaries"]
            (rec,) = self._start_storage(state, [i])
            if i >= state.get("nodes", 0):
                state["nodes"] = i + 1
                self._save_state(state)
            self._say("node-%d ready at %s (pid %d)" % (i, rec["address"], rec["pid"]))
            return rec["address"]

    def stop_node(self, i, timeout=STOP_TIMEOUT_S):
        """SIGTERM storage node i (SIGKILL after timeout); returns its stop result."""
        with self._locked():
            state = self.load_state()
            self._refresh(state)
            rec = state["processes"].get("node-%d" % i)
            if not rec or rec.get("state") != RUNNING:
                self._save_state(state)
                raise ClusterError("node-%d is not running" % i)
            before = len(self.stop_results)
            try:
                self._stop([rec], timeout)
            finally:
                self._save_state(state)
            return self.stop_results[before]

    def restart_metadata(self, timeout=STOP_TIMEOUT_S, kill=False):
        """Stop the metadata service (SIGTERM, or SIGKILL with kill=True) and start it again on the same
        address, so the storage nodes, which keep running, find it again. Returns the address."""
        with self._locked():
            state = self.load_state()
            self._refresh(state)
            rec = state["processes"].get("metadata")
            if state.get("metadata_peers"):
                self._save_state(state)
                raise ClusterError("a replicated catalog: use start-metadata (after stopping replicas)")
            if not rec or not rec.get("address"):
                self._save_state(state)
                raise ClusterError("the metadata service was never started in %s" % self.dir)
            address = rec["address"]
            if rec.get("state") == RUNNING:
                if kill:
                    self._signal(rec, signal.SIGKILL)
                    self._wait_gone([rec], 5)
                    rec["exit_code"] = self._reap(rec)
                    rec["state"] = KILLED
                    self.stop_results.append({"name": "metadata", "pid": rec["pid"], "how": "killed",
                                              "exit_code": rec["exit_code"]})
                else:
                    self._stop([rec], timeout)
            new = self._spawn("metadata", self._metadata_cmd(state.get("metadata_flags", []), listen=address),
                              self.path("metadata", "ready"), self.path("metadata", "log"))
            state["processes"]["metadata"] = new
            self._save_state(state)
            try:
                self._wait_ready([new])
            except BaseException:
                self._stop([new])
                self._save_state(state)
                raise
            self._save_state(state)
            self._say("metadata restarted at %s (pid %d)" % (new["address"], new["pid"]))
            return new["address"]

    def status(self):
        """One dict per recorded process: name, pid, state, address, zone, log. Running first."""
        state = self.load_state()
        rows = []
        for name, r in state["processes"].items():
            st = r.get("state", "?")
            if st == RUNNING and not self._alive(r):
                st = EXITED
            rows.append({"name": name, "pid": r.get("pid"), "state": st, "address": r.get("address"),
                         "zone": r.get("zone"), "log": r.get("log"), "exit_code": r.get("exit_code"),
                         "how": r.get("how")})

        def order(row):
            if row["name"] == "metadata":
                return (0, 0)
            if is_metadata(row["name"]):
                return (0, int(row["name"].split("-")[1]) + 1)
            return (1, int(row["name"].split("-")[1]))

        return sorted(rows, key=order)

    def logs(self):
        """Paths of every recorded process's log."""
        return [r["log"] for r in self.load_state()["processes"].values() if r.get("log")]
