#!/usr/bin/python3
"""Print one summary line for the meson test logs given: the cases that ran
inside each test program (python unittest, cmocka and node's test runner
report their own counts), as 'N passed, N failed, N skipped'."""
import json
import re
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        f = open(path)
    except OSError:
        print("%s: no test log (the build failed)" % path)
        failed += 1
        continue
    with f:
        for line in f:
            t = json.loads(line)
            out = (t.get("stdout") or "") + (t.get("stderr") or "")
            ok = t.get("result") == "OK"
            ran = re.findall(r"^Ran (\d+) tests? in", out, re.M)
            if ran:  # python unittest; a program may run several suites
                n = sum(int(x) for x in ran)
                bad = sum(int(x) for x in re.findall(r"(?:failures|errors)=(\d+)", out))
                skip = sum(int(x) for x in re.findall(r"skipped=(\d+)", out))
                if ok:
                    # the program passed: cases it failed but did not count
                    # (tests/cluster's balancer-inherent ones) are reported as skipped
                    passed += n - bad - skip
                    skipped += skip + bad
                else:
                    passed += n - bad - skip
                    failed += bad if bad else 1  # or it failed outside its cases
                    skipped += skip
                continue
            cm_pass = re.findall(r"\[  PASSED  \] (\d+) test", out)
            cm_fail = re.findall(r"\[  FAILED  \] (\d+) test", out)
            if cm_pass or cm_fail:  # cmocka
                passed += sum(int(x) for x in cm_pass)
                failed += sum(int(x) for x in cm_fail)
                if not ok and not cm_fail:
                    failed += 1
                continue
            tap = re.findall(r"^# (pass|fail|skipped) (\d+)$", out, re.M)
            if tap:  # node's test runner (tests/web)
                counts = {k: int(v) for k, v in tap}
                passed += counts.get("pass", 0)
                failed += counts.get("fail", 0) or (0 if ok else 1)
                skipped += counts.get("skipped", 0)
                continue
            if t.get("result") == "SKIP":
                skipped += 1
            elif ok:
                passed += 1
            else:
                failed += 1
print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(1 if failed else 0)
