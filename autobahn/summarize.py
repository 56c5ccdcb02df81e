#!/usr/bin/env python3
"""Summarize an Autobahn testsuite (wstest) report index.

wstest writes <outdir>/index.json shaped like

    {agent: {case_id: {"behavior": ..., "behaviorClose": ...,
                       "duration": ..., "reportfile": ...}}}

This prints per-behavior counts, lists every case that is not clean and
ends with one machine-readable line:

    autobahn: N passed, M failed

A case passes when both "behavior" and "behaviorClose" are OK or
INFORMATIONAL; anything else (NON-STRICT, FAILED, UNIMPLEMENTED, WRONG CODE,
a missing value, ...) is a failure. With --expect-cases N, cases missing
from the index (the peer crashed or stopped early) also count as failed.
The exit status is 1 if any case failed,
and also when the index is missing, unreadable or holds no case for the
agent: an empty run is never a pass (the final line then reads
"autobahn: 0 passed, 1 failed").

Standard library only.
"""

import argparse
import json
import os
import sys
from collections import Counter

PASSING = ("OK", "INFORMATIONAL")
# Display order for the behavior table; unknown values are appended.
ORDER = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "WRONG CODE",
         "FAILED", "FAILED BY CLIENT", "MISSING")
DEFAULT_AGENT = "chito"
MAX_PLAUSIBLE_MS = 24 * 3600 * 1000


def case_sort_key(case_id):
    """Sort "1.1.10" after "1.1.9": numeric parts compare as numbers."""
    key = []
    for part in str(case_id).split("."):
        if part.isdigit():
            key.append((0, int(part), ""))
        else:
            key.append((1, 0, part))
    return key


def behavior_order(value):
    return (ORDER.index(value), value) if value in ORDER else (len(ORDER), value)


def print_table(title, counter, total):
    print("%s:" % title)
    width = max([len(k) for k in counter] + [8])
    for value in sorted(counter, key=behavior_order):
        count = counter[value]
        print("  %-*s %5d  (%5.1f%%)" % (width, value, count, 100.0 * count / total))
    print()


def fail_run(message):
    """A run that cannot be judged counts as one failure."""
    print("ERROR: %s" % message)
    print("autobahn: 0 passed, 1 failed")
    return 1


def pick_agent(index, wanted):
    agents = sorted(index)
    if wanted is not None:
        return wanted, agents
    if len(agents) == 1:
        return agents[0], agents
    return DEFAULT_AGENT, agents


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Summarize a wstest index.json and fail on any non-clean case.")
    parser.add_argument("index", help="path to the wstest index.json "
                        "(e.g. reports/servers/index.json)")
    parser.add_argument("--agent", default=None,
                        help="agent to summarize (default: the only agent in "
                        "the index, else %r)" % DEFAULT_AGENT)
    parser.add_argument("--expect-cases", type=int, default=None, metavar="N",
                        help="number of cases the run should have produced; "
                        "each missing case counts as a failure (catches a "
                        "peer that crashed or stopped early)")
    args = parser.parse_args(argv)

    try:
        with open(args.index, "r", encoding="utf-8") as f:
            index = json.load(f)
    except FileNotFoundError:
        return fail_run("%s does not exist (wstest produced no report)" % args.index)
    except (OSError, ValueError) as e:
        return fail_run("cannot read %s: %s" % (args.index, e))
    if not isinstance(index, dict):
        return fail_run("%s is not a wstest index (expected a JSON object)" % args.index)

    agent, agents = pick_agent(index, args.agent)
    cases = index.get(agent)
    print("Autobahn report: %s" % args.index)
    print("Agent: %s%s" % (agent, "" if agents == [agent] else
                           "   (agents in index: %s)" % (", ".join(agents) or "none")))
    if not isinstance(cases, dict) or not cases:
        return fail_run("no test cases recorded for agent %r in %s" % (agent, args.index))

    behaviors = Counter()
    closes = Counter()
    problems = []
    total_ms = 0
    bogus_durations = 0
    for case_id in sorted(cases, key=case_sort_key):
        result = cases[case_id] if isinstance(cases[case_id], dict) else {}
        behavior = result.get("behavior") or "MISSING"
        close = result.get("behaviorClose") or "MISSING"
        behaviors[behavior] += 1
        closes[close] += 1
        duration = result.get("duration")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool):
            # wstest reports "now - 0" for a case whose handshake never
            # completed; leave such nonsense out of the total.
            if 0 <= duration <= MAX_PLAUSIBLE_MS:
                total_ms += duration
            else:
                bogus_durations += 1
        if behavior not in PASSING or close not in PASSING:
            problems.append((case_id, behavior, close, result.get("reportfile") or ""))

    total = len(cases)
    print("Cases: %d" % total)
    print()
    print_table("Behavior", behaviors, total)
    print_table("Close behavior", closes, total)

    if problems:
        print("Cases not OK/INFORMATIONAL (%d):" % len(problems))
        id_w = max(len("case"), max(len(str(p[0])) for p in problems))
        b_w = max(len("behavior"), max(len(p[1]) for p in problems))
        c_w = max(len("behaviorClose"), max(len(p[2]) for p in problems))
        print("  %-*s  %-*s  %-*s  %s" % (id_w, "case", b_w, "behavior",
                                          c_w, "behaviorClose", "report"))
        report_dir = os.path.dirname(args.index)
        for case_id, behavior, close, reportfile in problems:
            path = os.path.join(report_dir, reportfile) if reportfile else ""
            print("  %-*s  %-*s  %-*s  %s" % (id_w, case_id, b_w, behavior, c_w, close, path))
        print()
    else:
        print("All cases OK/INFORMATIONAL.")
        print()

    missing = 0
    if args.expect_cases is not None and total < args.expect_cases:
        missing = args.expect_cases - total
        print("MISSING: %d case(s) expected but only %d reported; the %d "
              "missing case(s) count as failed" % (args.expect_cases, total, missing))
        print()

    print("Total duration: %d ms (%.1f s)%s" % (
        total_ms, total_ms / 1000.0,
        "" if not bogus_durations else
        "  [%d case(s) with an implausible duration not counted]" % bogus_durations))
    passed = total - len(problems)
    failed = len(problems) + missing
    print("autobahn: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
