#!/usr/bin/env python3
"""The CI summary's counts, read from each runner's own result lines only.

Tests print what they measure (`--nocapture`), and a printed line such as `3 passed` was
counted like a runner's result. Now each runner's count comes from the line only it writes,
where only it writes it:
- cargo test: per test binary (a `Running` or `Doc-tests` line starts one), the last
  `test result:` line whose counts add up to the binary's own `running N tests` header (printed
  before any test runs). A binary with no such line (it crashed) counts as 1 failed.
- Vitest, fuzz.sh, e2e.py: the last summary line of the output, which the runner prints last.

Usage: results.py CARGO_OUT UI_OUT FUZZ_OUT E2E_OUT   (prints "PASSED FAILED")
       results.py --self-test
"""

import re
import sys
import unittest

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SECTION = re.compile(r"^\s*(Running|Doc-tests) ")
RUNNING = re.compile(r"^running (\d+) tests?$")
RESULT = re.compile(
    r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored; (\d+) measured; "
    r"\d+ filtered out; finished in [0-9.]+s$")
VITEST = re.compile(r"^\s*Tests\s+(.*)\((\d+)\)$")
FUZZ = re.compile(r"^fuzz: (\d+) passed, (\d+) failed$")
E2E = re.compile(r"^(\d+) passed, (\d+) failed$")


def lines(text):
    return [ANSI.sub("", l).rstrip() for l in text.splitlines()]


def cargo(text):
    """(passed, failed) over every test binary in `cargo test` output."""
    sections, cur = [], None
    for l in lines(text):
        if SECTION.match(l):
            cur = {"want": None, "result": None}
            sections.append(cur)
            continue
        if cur is None:
            continue
        m = RUNNING.match(l)
        if m and cur["want"] is None:
            cur["want"] = int(m.group(1))
            continue
        m = RESULT.match(l)
        if m and cur["want"] is not None:
            p, f, i, meas = map(int, m.groups())
            if p + f + i + meas == cur["want"]:
                cur["result"] = (p, f)
    passed = failed = 0
    for s in sections:
        if s["result"] is None:
            # Started but never summed up: it crashed, or its output was cut.
            failed += 0 if s["want"] == 0 else 1
        else:
            passed, failed = passed + s["result"][0], failed + s["result"][1]
    return passed, failed


def vitest(text):
    """Vitest's closing `Tests  [F failed | ]P passed[ | S skipped] (N)` line."""
    for l in reversed(lines(text)):
        m = VITEST.match(l)
        if m:
            counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed)", m.group(1)))
            return counts.get("passed", 0), counts.get("failed", 0)
    return 0, 0


def last(pattern, text):
    for l in reversed(lines(text)):
        m = pattern.match(l)
        if m:
            return int(m.group(1)), int(m.group(2))
    return 0, 0


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Tests(unittest.TestCase):
    CARGO = """\
   Compiling ferry-core v0.1.0
     Running unittests src/lib.rs (target/debug/deps/ferry_core-1)

running 3 tests
test a ... ok
3 passed
test result: FAILED. 0 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
test b ... ok
test c ... ok

test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s

     Running tests/hostile.rs (target/debug/deps/hostile-2)

running 2 tests
test x ... FAILED
test y ... ok

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s

   Doc-tests ferry_core

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
"""

    def test_cargo_counts_the_runners_lines_only(self):
        # The first binary's tests print "3 passed" and a whole result line of their own.
        self.assertEqual(cargo(self.CARGO), (4, 1))

    def test_a_crashed_binary_counts_as_failed(self):
        text = """\
     Running tests/load.rs (target/debug/deps/load-3)

running 4 tests
test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
error: test failed, to rerun pass `--test load`
"""
        self.assertEqual(cargo(text), (0, 1))

    def test_vitest(self):
        out = "stdout | x.test.ts\n      Tests  7 passed (7)\n Test Files  1 failed | 3 passed (4)\n" \
              "      Tests  2 failed | 40 passed | 1 skipped (43)\n   Duration  1.2s\n"
        self.assertEqual(vitest(out), (40, 2))
        self.assertEqual(vitest("\x1b[2m      Tests \x1b[22m \x1b[1m\x1b[32m12 passed\x1b[39m\x1b[22m\x1b[90m (12)\x1b[39m\n"),
                         (12, 0))

    def test_fuzz_and_e2e_take_the_closing_line(self):
        self.assertEqual(last(FUZZ, "fuzz: 9 passed, 0 failed\nfuzz x: ok\nfuzz: 4 passed, 0 failed\n"), (4, 0))
        self.assertEqual(last(E2E, "ok   step (3 passed, 0 failed)\n3 passed, 0 failed\n6 passed, 1 failed\n"), (6, 1))
        self.assertEqual(last(E2E, ""), (0, 0))


def main():
    if sys.argv[1:] == ["--self-test"]:
        unittest.main(argv=[sys.argv[0]], verbosity=1)
    # Then one output per end-to-end script (e2e.py, e2e_localsend.py).
    cargo_out, ui_out, fuzz_out, *e2e_outs = sys.argv[1:]
    counts = [cargo(read(cargo_out)), vitest(read(ui_out)), last(FUZZ, read(fuzz_out))]
    counts += [last(E2E, read(out)) for out in e2e_outs]
    print(sum(p for p, _ in counts), sum(f for _, f in counts))


if __name__ == "__main__":
    main()
