"""Independent clients for what every dfs server answers besides its own service: server reflection
(grpc.reflection.v1 and v1alpha), health (grpc.health.v1), and the Prometheus metrics endpoint.

Nothing here comes from dfs: gRPC is Debian's python3-grpcio, the reflection and health messages are
encoded and decoded by hand below (field numbers from /usr/share/grpc-proto/grpc/{reflection,health}),
and the file descriptors the server returns are parsed by Google's protobuf runtime (python3-protobuf).
So a test that passes here checks the protocol as grpc_cli or grpcurl speak it, not our own code
talking to itself.

    import grpcinspect                      # first: may re-run the test under /usr/bin/python3
    r = grpcinspect.Reflection("127.0.0.1:7000")
    r.list_services()                       # ["dfs.v1.Metadata", "grpc.health.v1.Health", ...]
    files = r.file_containing_symbol("dfs.v1.Metadata")   # [FileDescriptorProto, ...] or raises
    pool = r.pool_for("dfs.v1.Metadata")    # a DescriptorPool with the file and its imports
    grpcinspect.health_check("127.0.0.1:7000", "")        # "SERVING"
    grpcinspect.parse_prometheus(text)      # {(name, frozenset(labels.items())): value}, families
"""

import os
import sys

# Every test that imports this also forks (`dfs`, the daemons, tools) while its own gRPC channels
# are open. With gRPC's fork support on, each fork first waits for gRPC's thread pool to go idle,
# which it may never do (a pool thread polls for good): inspect_test hung for minutes in
# "Waiting for thread pool to idle before forking" on a loaded machine. The children exec at
# once, so they need none of it. Set before grpc is first imported (below), which reads it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

_DEBIAN_PYTHON = "/usr/bin/python3"


def _ensure_debian_grpc():
    """python3-grpcio is installed for Debian's interpreter; an interpreter on PATH (pyenv, venv)
    may lack it. Then run this same test again under /usr/bin/python3, environment and argv kept."""
    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
        return
    except ImportError:
        pass
    if os.path.realpath(sys.executable) != os.path.realpath(_DEBIAN_PYTHON) and os.access(_DEBIAN_PYTHON, os.X_OK) \
            and not os.environ.get("DFS_GRPCINSPECT_REEXEC"):
        os.environ["DFS_GRPCINSPECT_REEXEC"] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(_DEBIAN_PYTHON, [_DEBIAN_PYTHON] + sys.argv)
    raise ImportError("grpc or google.protobuf not importable by %s: install python3-grpcio and python3-protobuf "
                      "(tools/bootstrap)" % sys.executable)


_ensure_debian_grpc()

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

# ---- protobuf wire format, by hand ------------------------------------------------------------


def varint(n):
    """A protobuf varint (negative numbers as their 64-bit two's complement)."""
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def decode(data):
    """[(field, wire_type, value)] of one message: ints for varints, bytes for length-delimited."""
    out = []
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(data, i)
        elif wt == 2:
            n, i = _read_varint(data, i)
            v = bytes(data[i:i + n])
            if len(v) != n:
                raise ValueError("truncated field %d" % num)
            i += n
        elif wt == 1:
            v, i = bytes(data[i:i + 8]), i + 8
        elif wt == 5:
            v, i = bytes(data[i:i + 4]), i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, wt, v))
    return out


def _read_varint(data, i):
    shift = 0
    v = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, i
        shift += 7


def _int32(v):
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


# ---- reflection --------------------------------------------------------------------------------

# grpc/reflection/v1/reflection.proto (v1alpha: the same numbers)
REQ_HOST, REQ_FILE_BY_FILENAME, REQ_FILE_CONTAINING_SYMBOL = 1, 3, 4
REQ_FILE_CONTAINING_EXTENSION, REQ_ALL_EXTENSION_NUMBERS, REQ_LIST_SERVICES = 5, 6, 7
RESP_VALID_HOST, RESP_ORIGINAL_REQUEST, RESP_FILES, RESP_EXTNUMS, RESP_SERVICES, RESP_ERROR = 1, 2, 4, 5, 6, 7

METHODS = {
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}


def request(kind, value=""):
    """Encode a ServerReflectionRequest: kind is "file_by_filename", "file_containing_symbol",
    "all_extension_numbers_of_type", "list_services", or "file_containing_extension" with value
    (type, number); "empty" sets no request at all."""
    host = field_bytes(REQ_HOST, b"")  # an empty host, as grpc_cli sends it
    if kind == "empty":
        return host
    if kind == "file_containing_extension":
        typ, number = value
        ext = field_bytes(1, typ.encode()) + field_varint(2, number)
        return host + field_bytes(REQ_FILE_CONTAINING_EXTENSION, ext)
    num = {"file_by_filename": REQ_FILE_BY_FILENAME, "file_containing_symbol": REQ_FILE_CONTAINING_SYMBOL,
           "all_extension_numbers_of_type": REQ_ALL_EXTENSION_NUMBERS, "list_services": REQ_LIST_SERVICES}[kind]
    return host + field_bytes(num, value.encode())


class Response:
    """A decoded ServerReflectionResponse: exactly one of files / services / extension_numbers / error."""

    def __init__(self, data):
        self.files = None  # [bytes] serialized FileDescriptorProtos
        self.services = None  # [str]
        self.base_type = None
        self.extension_numbers = None  # [int]
        self.error = None  # (code, message)
        self.original_request = None
        self.valid_host = None
        for num, wt, v in decode(data):
            if num == RESP_VALID_HOST:
                self.valid_host = v.decode()
            elif num == RESP_ORIGINAL_REQUEST:
                self.original_request = v
            elif num == RESP_FILES:
                self.files = [fv for fn, _, fv in decode(v) if fn == 1]
            elif num == RESP_SERVICES:
                self.services = []
                for fn, _, sv in decode(v):
                    if fn == 1:
                        self.services += [nv.decode() for nn, _, nv in decode(sv) if nn == 1]
            elif num == RESP_EXTNUMS:
                self.base_type, self.extension_numbers = "", []
                for fn, fwt, fv in decode(v):
                    if fn == 1:
                        self.base_type = fv.decode()
                    elif fn == 2 and fwt == 0:
                        self.extension_numbers.append(_int32(fv))
                    elif fn == 2 and fwt == 2:  # packed
                        i = 0
                        while i < len(fv):
                            x, i = _read_varint(fv, i)
                            self.extension_numbers.append(_int32(x))
            elif num == RESP_ERROR:
                code, msg = 0, ""
                for fn, _, fv in decode(v):
                    if fn == 1:
                        code = _int32(fv)
                    elif fn == 2:
                        msg = fv.decode()
                self.error = (code, msg)

    def descriptors(self):
        """The files as parsed FileDescriptorProtos (by Google's runtime)."""
        return [descriptor_pb2.FileDescriptorProto.FromString(b) for b in self.files or []]


class ReflectionError(Exception):
    def __init__(self, code, message):
        super().__init__("reflection error %d: %s" % (code, message))
        self.code = code
        self.message = message


def channel(target, tls_ca=None):
    """A channel to target: plaintext, or TLS trusting the CA in the PEM file tls_ca (grpc_cli --ssl
    --ssl_target ... --root_certs)."""
    if tls_ca is None:
        return grpc.insecure_channel(target)
    with open(tls_ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    return grpc.secure_channel(target, creds)


class Reflection:
    """A reflection client for one server (target "host:port"), over v1 or v1alpha."""

    def __init__(self, target, version="v1", timeout=10.0, tls_ca=None):
        self.target = target
        self.method = METHODS[version]
        self.timeout = timeout
        self.tls_ca = tls_ca

    def ask(self, *requests):
        """Send the encoded requests on ONE bidirectional stream; returns their Responses in order."""
        with channel(self.target, self.tls_ca) as ch:
            call = ch.stream_stream(self.method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            return [Response(r) for r in call(iter(requests), timeout=self.timeout)]

    def one(self, kind, value=""):
        (r,) = self.ask(request(kind, value))
        if r.error is not None:
            raise ReflectionError(*r.error)
        return r

    def list_services(self):
        return self.one("list_services").services

    def file_containing_symbol(self, symbol):
        return self.one("file_containing_symbol", symbol).descriptors()

    def file_by_filename(self, name):
        return self.one("file_by_filename", name).descriptors()

    def pool_for(self, *symbols):
        """A DescriptorPool holding the files of these symbols and their imports, as a client builds it."""
        files = {}
        for s in symbols:
            for fd in self.file_containing_symbol(s):
                files.setdefault(fd.name, fd)
        return build_pool(files.values())


def build_pool(file_protos):
    """Add FileDescriptorProtos to a new pool, imports first; raises if one is missing."""
    pool = descriptor_pool.DescriptorPool()
    pending = {fd.name: fd for fd in file_protos}
    added = set()
    while pending:
        ready = [fd for fd in pending.values() if all(d in added for d in fd.dependency)]
        if not ready:
            raise ValueError("imports missing from the reflection answers: %s" % sorted(
                {d for fd in pending.values() for d in fd.dependency if d not in added}))
        for fd in ready:
            pool.Add(fd)
            added.add(fd.name)
            del pending[fd.name]
    return pool


def message_class(pool, full_name):
    """The Python class of a message type found in the pool."""
    desc = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def call_unary(target, pool, method_full_name, request_message, timeout=10.0, token=None, tls_ca=None):
    """Call a unary method named like grpc_cli does ("dfs.v1.Metadata.ListNodes"), with the request
    and response types taken from the pool (i.e. from reflection). Returns the response message.
    token: a bearer token sent as "authorization: Bearer ..." (grpc_cli: --metadata authorization:...)."""
    service_name, method_name = method_full_name.rsplit(".", 1)
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    resp_cls = message_class(pool, method.output_type.full_name)
    with channel(target, tls_ca) as ch:
        fn = ch.unary_unary("/%s/%s" % (service_name, method_name), request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=resp_cls.FromString)
        md = [("authorization", "Bearer " + token)] if token else None
        return fn(request_message, timeout=timeout, metadata=md)


# ---- health ------------------------------------------------------------------------------------

STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _health_request(service):
    return field_bytes(1, service.encode()) if service else b""


def _health_status(data):
    st = 0
    for num, wt, v in decode(data):
        if num == 1 and wt == 0:
            st = v
    return STATUS_NAMES.get(st, str(st))


def health_check(target, service="", timeout=5.0, tls_ca=None):
    """grpc.health.v1.Health/Check: "SERVING", "NOT_SERVING"...; raises grpc.RpcError on a failed call."""
    with channel(target, tls_ca) as ch:
        fn = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=_health_request,
                            response_deserializer=_health_status)
        return fn(service, timeout=timeout)


class HealthWatch:
    """grpc.health.v1.Health/Watch in a background thread: .statuses fills as messages arrive; .code is
    the final grpc.StatusCode once the stream ended."""

    def __init__(self, target, service="", timeout=60.0):
        import threading
        self.statuses = []
        self.code = None
        self.details = None
        self._cond = threading.Condition()
        self._ch = grpc.insecure_channel(target)
        fn = self._ch.unary_stream("/grpc.health.v1.Health/Watch", request_serializer=_health_request,
                                   response_deserializer=_health_status)
        self._call = fn(service, timeout=timeout)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for st in self._call:
                with self._cond:
                    self.statuses.append(st)
                    self._cond.notify_all()
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        with self._cond:
            self.code, self.details = code, details
            self._cond.notify_all()

    def wait_for(self, pred, timeout=10.0):
        """Wait until pred(self) holds; returns whether it did."""
        with self._cond:
            return self._cond.wait_for(lambda: pred(self), timeout)

    def close(self):
        self._call.cancel()
        self._thread.join(5)
        self._ch.close()


# ---- Prometheus text format ---------------------------------------------------------------------

def parse_prometheus(text):
    """Parse the text exposition format (0.0.4) strictly enough to catch mistakes.

    Returns (samples, families): samples maps (name, frozenset of (label, value)) to a float;
    families maps a family name to its TYPE. Raises ValueError on a malformed line, a sample outside
    any declared family, a duplicate series, a label value with a bad escape, or a histogram whose
    buckets decrease or whose _count differs from its +Inf bucket.
    """
    import math
    import re
    samples = {}
    families = {}
    helps = set()
    current = None
    name_re = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
    for lineno, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                if not name_re.match(parts[2]) or parts[2] in helps:
                    raise ValueError("line %d: bad or repeated HELP" % lineno)
                helps.add(parts[2])
            elif len(parts) == 4 and parts[1] == "TYPE":
                if parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError("line %d: unknown type %r" % (lineno, parts[3]))
                if parts[2] in families:
                    raise ValueError("line %d: family %s declared twice" % (lineno, parts[2]))
                families[parts[2]] = parts[3]
                current = parts[2]
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$", line)
        if not m:
            raise ValueError("line %d: not a sample: %r" % (lineno, line))
        name, labels_text, value_text = m.group(1), m.group(3), m.group(4)
        labels = _parse_labels(labels_text or "", lineno)
        if value_text in ("+Inf", "-Inf", "NaN"):
            value = float(value_text.replace("Inf", "inf").replace("NaN", "nan"))
        else:
            value = float(value_text)
        fam = current
        ok = fam is not None and (name == fam or (families.get(fam) in ("histogram", "summary") and
                                                  name in (fam + "_bucket", fam + "_sum", fam + "_count")))
        if not ok:
            raise ValueError("line %d: sample %s outside its family (current: %s)" % (lineno, name, fam))
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ValueError("line %d: duplicate series %s" % (lineno, line))
        if families[fam] == "counter" and (value < 0 or math.isnan(value)):
            raise ValueError("line %d: negative counter" % lineno)
        samples[key] = value
    # Histogram consistency.
    for fam, typ in families.items():
        if typ != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            if name == fam + "_bucket":
                d = dict(labels)
                le = d.pop("le")
                series.setdefault(frozenset(d.items()), []).append((float(le), v))
        for lbl, buckets in series.items():
            buckets.sort()
            counts = [v for _, v in buckets]
            if counts != sorted(counts) or buckets[-1][0] != float("inf"):
                raise ValueError("histogram %s%s: buckets decrease or no +Inf" % (fam, dict(lbl)))
            if samples.get((fam + "_count", lbl)) != counts[-1] or (fam + "_sum", lbl) not in samples:
                raise ValueError("histogram %s%s: _count/_sum do not match" % (fam, dict(lbl)))
    return samples, families


def _parse_labels(text, lineno):
    labels = {}
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        key = text[i:eq]
        if not key or not key.replace("_", "a").isalnum() or text[eq + 1] != '"':
            raise ValueError("line %d: bad label near %r" % (lineno, text[i:]))
        j = eq + 2
        val = []
        while text[j] != '"':
            if text[j] == "\\":
                esc = text[j + 1]
                if esc not in 'n"\\':
                    raise ValueError("line %d: bad escape \\%s" % (lineno, esc))
                val.append("\n" if esc == "n" else esc)
                j += 2
            else:
                val.append(text[j])
                j += 1
        if key in labels:
            raise ValueError("line %d: label %s twice" % (lineno, key))
        labels[key] = "".join(val)
        i = j + 1
        if i < len(text):
            if text[i] != ",":
                raise ValueError("line %d: expected , after a label" % lineno)
            i += 1
    return labels


def metric(samples, name, **labels):
    """The value of one series (0.0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def metric_sum(samples, name, **labels):
    """Sum of every series of `name` whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= set(lbl))
