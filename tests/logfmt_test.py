"""The strict logfmt parser the harness runs on every daemon log (tests/logfmt.py): what it accepts,
and the forged and broken lines it refuses (the forms the daemons wrote before common/log quoted)."""

import os

import harness
import logfmt

TS = "ts=2026-11-22T10:00:00.123Z level=info prog=dfs-storage "


class Logfmt(harness.TestCase):
    def test_accepts_and_decodes(self):
        f = logfmt.parse(TS + r'msg="stored \"frag\"\nnext" id=ab size=5 e="" u="caf' + "\u00e9" +
                         r'" b="\x01\\" path=/a/b:c')
        self.assertEqual(f, [("ts", b"2026-11-22T10:00:00.123Z"), ("level", b"info"), ("prog", b"dfs-storage"),
                             ("msg", b'stored "frag"\nnext'), ("id", b"ab"), ("size", b"5"), ("e", b""),
                             ("u", "caf\u00e9".encode()), ("b", b"\x01\\"), ("path", b"/a/b:c")])
        self.assertEqual(logfmt.parse('a=1 b="x y"', header=False), [("a", b"1"), ("b", b"x y")])

    def test_refuses_forged_and_broken_lines(self):
        bad = [
            TS + 'msg="refused" code=permission denied',            # a value with a space, unquoted
            TS + 'msg="token created" name="x" role=admin"',        # a quote that closed early
            TS + 'msg="a" id=1 id=2',                               # a key twice
            TS + 'msg="a" e=',                                      # an empty bare value
            TS + 'msg="a" k=a=b',                                   # '=' in a bare value
            TS + 'msg="a" k="open',                                 # unterminated
            TS + 'msg="a" k="\x1b[31m"',                            # a raw control byte
            TS + r'msg="a" k="\q"',                                 # an unknown escape
            TS + r'msg="a" k="\x4"',                                # a short \x escape
            TS + 'msg="a"  k=1',                                    # two spaces
            TS + 'msg="a" k=1 ',                                    # a trailing space
            TS + 'msg="a" K=1',                                     # a key outside [a-z0-9_]
            TS + 'msg="a" k\\=1',
            'level=info ts=x prog=p msg="a"',                       # the header out of order
            'ts=x level=loud prog=p msg="a"',                       # an unknown level
            'ts=x level=info prog=p',                               # no msg
            "dfs-storage: cannot start",                            # not logfmt at all
            "",
        ]
        for line in bad:
            with self.subTest(line=line):
                with self.assertRaises(logfmt.LogfmtError):
                    logfmt.parse(line)

    def test_problems_in_files(self):
        path = self.tmp("x.log")
        with open(path, "wb") as f:
            f.write(b"=== 2026-11-22T10:00:00 start: dfs-storage --data d\n")
            f.write((TS + 'msg="ok" a=1\n').encode())
            f.write((TS + 'msg="refused" code=permission denied\n').encode())
            f.write((TS + 'msg="cut" a=1').encode())
        got = logfmt.problems([path, os.path.join(self.tmp("missing.log"))])
        self.assertEqual(len(got), 2, got)
        self.assertTrue(any("x.log:3: expected '=' after key 'denied'" in p for p in got), got)
        self.assertTrue(any("no newline" in p for p in got), got)


if __name__ == "__main__":
    harness.main()
