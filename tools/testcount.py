#!/usr/bin/env python3
"""Count test CASES of a `bazel test` run from its build event file and the targets' test.log files.

    python3 tools/testcount.py --bep FILE --bazel-exit RC

Every test in dfs prints cmocka-style lines: `[ RUN      ] name`, `[       OK ] name`,
`[  FAILED  ] name` (and `[  ERROR   ] name`, `[  SKIPPED ] name`). Per target, cases are unique names:
a name FAILED/ERROR in any run or shard is failed; one that RAN but never reported is failed (the
binary died inside it); otherwise OK is passed. cmocka's closing list after `[  FAILED  ] N test(s),
listed below:` repeats names, so it adds nothing. A failed target with no failed case (crash outside
a case, timeout, leak report at exit, build failure) adds one failed case named after the target; a
passing target with no case lines counts as one passed case.

The build event file (--build_event_json_file) names every test.log, including those of cached
results, and says which targets failed to build; a package whose BUILD file fails to load counts as
one failed case named after the package. Prints a per-target summary, the failed cases, and
a final line `N passed, N failed`. Exit status 1 if anything failed or bazel failed, else 0.
"""

import argparse
import json
import os
import re
import sys
import urllib.parse
import urllib.request

CASE_RE = re.compile(r"^\[ *(RUN|OK|FAILED|ERROR|SKIPPED) *\] (.*\S)\s*$")
SUMMARY_NAME_RE = re.compile(r"^\d+ test\(s\)(, listed below:|\.)?$")

# Bazel exit codes: 0 ok, 3 build ok but tests failed, 4 build ok but no tests found.
BAZEL_OK = (0, 3, 4)


def parse_log(text):
    """Return {name: "passed"|"failed"|"skipped"} for one test.log's text."""
    ran, ok, failed, skipped = [], set(), set(), set()
    for line in text.splitlines():
        m = CASE_RE.match(line.rstrip("\r"))
        if not m:
            continue
        tag, name = m.group(1), m.group(2)
        if SUMMARY_NAME_RE.match(name) or name.startswith("--- "):
            continue  # `[  FAILED  ] 2 test(s), listed below:`, `[  ERROR   ] --- message`
        if tag == "RUN":
            if name not in ran:
                ran.append(name)
        elif tag == "OK":
            ok.add(name)
        elif tag in ("FAILED", "ERROR"):
            failed.add(name)
        elif tag == "SKIPPED":
            skipped.add(name)
    cases = {}
    for name in ran + sorted((ok | failed | skipped) - set(ran)):
        if name in failed:
            cases[name] = "failed"
        elif name in ok:
            cases[name] = "passed"
        elif name in skipped:
            cases[name] = "skipped"
        else:
            cases[name] = "failed"  # ran, never finished: the binary died or hung inside it
    return cases


def merge(into, cases):
    rank = {"skipped": 0, "passed": 1, "failed": 2}
    for name, st in cases.items():
        if name not in into or rank[st] > rank[into[name]]:
            into[name] = st


def _uri_path(uri):
    if uri.startswith("file://"):
        return urllib.request.url2pathname(urllib.parse.urlparse(uri).path)
    return None


class Target:
    def __init__(self, label):
        self.label = label
        self.kind = None
        self.is_test = False
        self.logs = {}  # (run, shard) -> (attempt, path)
        self.status = None  # testSummary overallStatus
        self.build_failed = None  # reason text
        self.cached = False
        self.built_ok = None

    def final_logs(self):
        return [p for _, (_, p) in sorted(self.logs.items())]


LOADING_ERROR_RES = (
    re.compile(r"^ERROR: package contains errors: (\S+)"),
    re.compile(r"^ERROR: error loading package '([^']*)'"),
    re.compile(r"^ERROR: no such package '([^']*)'"),
)


def read_bep(path, loading_errors=None):
    """Parse the JSON build event file into {label: Target}, in first-seen order.

    loading_errors, if a dict, gets {package: first error line} for BUILD files that failed to load:
    with --keep_going their targets are silently left out of //..., so they appear nowhere else.
    """
    targets = {}

    def target(label):
        if label not in targets:
            targets[label] = Target(label)
        return targets[label]

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a truncated last line when bazel was killed
            eid = ev.get("id", {})
            if "progress" in eid and loading_errors is not None:
                for text in ev.get("progress", {}).get("stderr", "").splitlines():
                    for rx in LOADING_ERROR_RES:
                        m = rx.match(text)
                        if m:
                            loading_errors.setdefault("//" + m.group(1).lstrip("/"), text[len("ERROR: "):])
            if "targetConfigured" in eid:
                t = target(eid["targetConfigured"]["label"])
                conf = ev.get("configured", {})
                t.kind = conf.get("targetKind", t.kind)
                if (t.kind and t.kind.endswith("_test rule")) or "testSize" in conf:
                    t.is_test = True
                if "aborted" in ev:
                    t.build_failed = _abort_text(ev["aborted"])
            elif "unconfiguredLabel" in eid or "configuredLabel" in eid:
                key = "unconfiguredLabel" if "unconfiguredLabel" in eid else "configuredLabel"
                if "aborted" in ev:
                    t = target(eid[key]["label"])
                    t.build_failed = _abort_text(ev["aborted"])
            elif "targetCompleted" in eid:
                t = target(eid["targetCompleted"]["label"])
                if "aborted" in ev:
                    t.build_failed = _abort_text(ev["aborted"])
                else:
                    ok = ev.get("completed", {}).get("success", False)
                    t.built_ok = ok
                    if not ok and not t.build_failed:
                        t.build_failed = "failed to build"
            elif "testResult" in eid:
                rid = eid["testResult"]
                t = target(rid["label"])
                t.is_test = True
                res = ev.get("testResult", {})
                key = (rid.get("run", 1), rid.get("shard", 1))
                attempt = rid.get("attempt", 1)
                for out in res.get("testActionOutput", []):
                    if out.get("name") == "test.log":
                        p = _uri_path(out.get("uri", ""))
                        if p and (key not in t.logs or t.logs[key][0] <= attempt):
                            t.logs[key] = (attempt, p)
                if res.get("cachedLocally") or res.get("executionInfo", {}).get("cachedRemotely"):
                    t.cached = True
            elif "testSummary" in eid:
                t = target(eid["testSummary"]["label"])
                t.is_test = True
                t.status = ev.get("testSummary", {}).get("overallStatus", "NO_STATUS")
    return targets


def _abort_text(aborted):
    reason = aborted.get("reason", "ABORTED")
    desc = aborted.get("description", "").strip().splitlines()
    return reason.lower().replace("_", " ") + (": " + desc[0] if desc else "")


def count(targets, bazel_exit, out=sys.stdout, loading_errors=None):
    """Print the summary; return (passed, failed, failed_cases)."""
    passed = failed = 0
    failed_cases = []
    rows = []
    for pkg, text in (loading_errors or {}).items():
        failed += 1
        failed_cases.append((pkg, "(loading) " + text))
        rows.append((pkg, "LOADING_FAILED", "1 failed"))
    for label, t in targets.items():
        skipped_reason = t.build_failed and t.build_failed.startswith("skipped")
        if not t.is_test:
            # A library or binary that failed to build fails the suite too.
            if t.build_failed and not skipped_reason:
                failed += 1
                failed_cases.append((label, "(build) " + t.build_failed))
                rows.append((label, "FAILED_TO_BUILD", "1 failed"))
            continue
        status = t.status
        if status is None:
            if t.build_failed and not skipped_reason:
                status = "FAILED_TO_BUILD"
            elif bazel_exit in BAZEL_OK or skipped_reason:
                rows.append((label, "NOT_RUN", "not run (filtered or skipped)"))
                continue
            else:
                status = "NO_STATUS"
        cases = {}
        missing = []
        for p in t.final_logs():
            try:
                with open(p, encoding="utf-8", errors="replace") as f:
                    merge(cases, parse_log(f.read()))
            except OSError:
                missing.append(p)
        target_ok = status in ("PASSED", "FLAKY")
        n_pass = sum(1 for s in cases.values() if s == "passed")
        n_fail = sum(1 for s in cases.values() if s == "failed")
        n_skip = sum(1 for s in cases.values() if s == "skipped")
        for name, s in cases.items():
            if s == "failed":
                failed_cases.append((label, name))
        if not target_ok and n_fail == 0:
            why = status.lower().replace("_", " ")
            if t.build_failed and status == "FAILED_TO_BUILD":
                why = t.build_failed
            elif cases:
                why += " (outside any case: crash at exit, leak report, or timeout)"
            failed_cases.append((label, "(target) " + why))
            n_fail = 1
        if target_ok and not cases:
            n_pass = 1
        passed += n_pass
        failed += n_fail
        detail = "%d passed, %d failed" % (n_pass, n_fail)
        if n_skip:
            detail += ", %d skipped" % n_skip
        if t.cached:
            detail += " (cached)"
        if missing:
            detail += " (log missing: %s)" % ", ".join(missing)
        rows.append((label, status, detail))

    if bazel_exit not in BAZEL_OK and failed == 0:
        failed = 1
        failed_cases.append(("bazel", "bazel test exited with status %d before any test failed "
                                      "(see its errors above)" % bazel_exit))
        rows.append(("bazel", "ERROR", "exit status %d" % bazel_exit))

    if rows:
        width = min(max(len(r[0]) for r in rows), 60)
        print("", file=out)
        print("Test cases per target:", file=out)
        for label, status, detail in rows:
            print("  %-*s  %-15s %s" % (width, label, status, detail), file=out)
    if failed_cases:
        print("", file=out)
        print("Failed cases:", file=out)
        for label, name in failed_cases:
            print("  %s  %s" % (label, name), file=out)
    print("", file=out)
    print("%d passed, %d failed" % (passed, failed), file=out)
    return passed, failed, failed_cases


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bep", required=True, help="the file from bazel --build_event_json_file")
    ap.add_argument("--bazel-exit", type=int, required=True, help="bazel's exit status")
    args = ap.parse_args(argv)
    loading_errors = {}
    if os.path.exists(args.bep):
        targets = read_bep(args.bep, loading_errors)
    else:
        print("testcount: no build event file %s" % args.bep, file=sys.stderr)
        targets = {}
    _, failed, _ = count(targets, args.bazel_exit, loading_errors=loading_errors)
    # Without the build events nothing was counted: bazel's own status is all there is (3: a test
    # failed), and it must not read as success.
    if not os.path.exists(args.bep) and args.bazel_exit != 0:
        return 1
    return 1 if failed or args.bazel_exit not in BAZEL_OK else 0


if __name__ == "__main__":
    sys.exit(main())
