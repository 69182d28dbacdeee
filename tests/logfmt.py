"""A strict parser of the log lines dfs programs write (common/log.h is the grammar). Python 3 stdlib only.

    fields = logfmt.parse('ts=... level=info prog=dfs-storage msg="stored" id=ab')   # [(key, value), ...]
    logfmt.problems(["/path/to/daemon.log"])      # ["path:12: why: line", ...], [] when every line parses

A line is `key=value` pairs separated by single spaces, beginning with ts, level, prog and msg, keys
[a-z0-9_]+ and unique in the line. A value is bare (one or more printable ASCII bytes other than
'"', '=' and '\\') or quoted: '"', then bytes other than '"', '\\' and control bytes, or the escapes
\\" \\\\ \\n \\r \\t \\xHH, then '"'. A quoted value holds UTF-8 (what is not is written as \\xHH). Lines
the test harness writes itself into a log ("=== ...") are skipped.
"""

import re

_KEY = re.compile(rb"[a-z0-9_]+")
_BARE = re.compile(rb"[\x21\x23-\x3c\x3e-\x5b\x5d-\x7e]+")
_HEADER = (b"ts", b"level", b"prog", b"msg")
LEVELS = (b"debug", b"info", b"warn", b"error")
HARNESS_PREFIX = b"=== "
_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}
_HEX = b"0123456789abcdef"


class LogfmtError(ValueError):
    """A line that is not strict logfmt; .column is where it went wrong (0-based, in bytes)."""

    def __init__(self, why, column):
        super().__init__("%s (byte %d)" % (why, column))
        self.column = column


def parse(line, header=True):
    """[(key, value_bytes), ...] of one line (bytes or str, without its newline); raises LogfmtError.

    header=True also requires ts, level, prog and msg first, and a known level.
    """
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogateescape")
    if not line:
        raise LogfmtError("empty line", 0)
    fields, seen, i, n = [], set(), 0, len(line)
    while True:
        m = _KEY.match(line, i)
        if not m:
            raise LogfmtError("expected a key ([a-z0-9_]+)", i)
        key = m.group(0)
        i = m.end()
        if i >= n or line[i] != ord("="):
            raise LogfmtError("expected '=' after key %r" % key.decode(), i)
        i += 1
        if key in seen:
            raise LogfmtError("key %r twice" % key.decode(), m.start())
        seen.add(key)
        if i < n and line[i] == ord('"'):
            i += 1
            value = bytearray()
            while True:
                if i >= n:
                    raise LogfmtError("unterminated quoted value of %r" % key.decode(), i)
                c = line[i]
                if c == ord('"'):
                    i += 1
                    break
                if c < 0x20 or c == 0x7F:
                    raise LogfmtError("raw control byte 0x%02x in a quoted value" % c, i)
                if c == ord("\\"):
                    e = line[i + 1] if i + 1 < n else None
                    if e in _ESCAPES:
                        value += _ESCAPES[e]
                        i += 2
                    elif e == ord("x") and i + 3 < n and line[i + 2] in _HEX and line[i + 3] in _HEX:
                        value.append(int(line[i + 2:i + 4], 16))
                        i += 4
                    else:
                        raise LogfmtError("bad escape in the value of %r" % key.decode(), i)
                    continue
                value.append(c)
                i += 1
            value = bytes(value)
        else:
            m = _BARE.match(line, i)
            if not m:
                raise LogfmtError("empty or bad bare value of %r (quote it)" % key.decode(), i)
            value = m.group(0)
            i = m.end()
        fields.append((key.decode(), value))
        if i == n:
            break
        if line[i] != ord(" ") or i + 1 == n:
            raise LogfmtError("expected one space between fields", i)
        i += 1
    if header:
        keys = [k.encode() for k, _ in fields[:4]]
        if tuple(keys) != _HEADER:
            raise LogfmtError("a line begins with ts, level, prog, msg, not %s" % b",".join(keys).decode(), 0)
        if fields[1][1] not in LEVELS:
            raise LogfmtError("unknown level %r" % fields[1][1].decode("utf-8", "replace"), 0)
    return fields


def problems(paths, limit=20):
    """Lines of these files that are not strict logfmt: ["path:lineno: why: line", ...] (at most limit)."""
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            out.append("%s:%d: the last line has no newline: %r" % (path, len(lines), lines[-1][:200]))
        for no, line in enumerate(lines, 1):
            if line.startswith(HARNESS_PREFIX):
                continue
            try:
                parse(line)
            except LogfmtError as e:
                out.append("%s:%d: %s: %r" % (path, no, e, line[:300]))
            if len(out) >= limit:
                return out
    return out
