#!/usr/bin/env python3
"""Check the relative links of every Markdown file in the repository.

    python3 docs/check_links.py [ROOT]

For every `*.md` under ROOT (default: the repository this script sits in; folders starting with `.`
or `bazel-` are skipped), every inline link `[text](target)` and reference definition `[id]: target`
outside code is checked: a relative target must exist (a file or a folder), and a `#fragment` on a
Markdown target (or alone, for the same page) must name one of its headings, slugged as GitHub does.
Links with a scheme (https:, mailto:) are not followed.

Prints one cmocka-style case per file (`[ RUN      ] links: README.md`, `[       OK ] ...` or the
broken links and `[  FAILED  ] ...`), the form tools/testcount.py counts, and exits 1 if a link is
broken. Under Bazel (//docs:links_test) it reads the source tree the script's runfile links to, so
the test is tagged to run unsandboxed and uncached.
"""

import os
import re
import sys

FENCE_RE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN_RE = re.compile(r"(`+)(.+?)\1")
INLINE_LINK_RE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF_RE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HEADING_RE = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def md_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith((".", "bazel-")) and x != "node_modules")
        for f in sorted(files):
            if f.endswith(".md"):
                out.append(os.path.join(d, f))
    return out


def prose_lines(text):
    """(line number, line) of the lines outside fenced code blocks."""
    fence = None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE_RE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield n, line


def slug(heading):
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation other than
    '-' and '_' removed, spaces turned into hyphens."""
    text = CODE_SPAN_RE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = text.replace("*", "")
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen = {}
        found = set()
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for _, line in prose_lines(text):
            m = HEADING_RE.match(line)
            if not m:
                continue
            s = slug(m.group(2))
            k = seen.get(s, 0)
            seen[s] = k + 1
            found.add(s if k == 0 else "%s-%d" % (s, k))
        cache[path] = found
    return cache[path]


def links(text):
    for n, line in prose_lines(text):
        bare = CODE_SPAN_RE.sub(lambda m: " " * len(m.group(0)), line)
        for m in INLINE_LINK_RE.finditer(bare):
            yield n, m.group(1)
        m = REF_DEF_RE.match(bare)
        if m:
            yield n, m.group(1)


def check_file(root, path):
    """The broken links of one file, as messages."""
    bad = []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for n, target in links(text):
        target = target.strip("<>")
        if SCHEME_RE.match(target) or target.startswith("//"):
            continue
        where, _, frag = target.partition("#")
        if where == "":
            dest = path
        else:
            if where.startswith("/"):
                bad.append("line %d: %s: absolute path (use a relative link)" % (n, target))
                continue
            dest = os.path.normpath(os.path.join(os.path.dirname(path), where))
            if not (dest == root or dest.startswith(root + os.sep)):
                bad.append("line %d: %s: points outside the repository" % (n, target))
                continue
            if not os.path.exists(dest):
                bad.append("line %d: %s: no such file or folder" % (n, target))
                continue
        if frag and dest.endswith(".md") and os.path.isfile(dest) and frag not in anchors(dest):
            bad.append("line %d: %s: no heading '#%s' in %s" % (n, target, frag, os.path.relpath(dest, root)))
    return bad


def main(argv):
    if len(argv) > 1:
        root = os.path.realpath(argv[1])
    else:
        root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    files = md_files(root)
    if not any(os.path.relpath(p, root) == "README.md" for p in files):
        print("[ RUN      ] links\nno README.md under %s\n[  FAILED  ] links" % root, flush=True)
        return 1
    failed = 0
    for path in files:
        name = "links: " + os.path.relpath(path, root)
        print("[ RUN      ] %s" % name)
        bad = check_file(root, path)
        for b in bad:
            print("    " + b)
        print("[  FAILED  ] %s" % name if bad else "[       OK ] %s" % name, flush=True)
        failed += bool(bad)
    print("%d file(s), %d with broken links" % (len(files), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
