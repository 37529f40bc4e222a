#!/usr/bin/env python3
"""Times short commands interleaved: round after round, each command once per round.

Why not hyperfine alone: hyperfine runs all of one command's runs, then all of the next
one's. On a shared 2-core VM the machine's speed drifts by 10-40% within a minute (other
work, ext4's recently-deleted scans, writeback), so a drift lands on one command and not the
other and moves a ratio of two ~2.5 ms start-ups by more than the difference being measured.
Interleaving gives every command the same machine, run by run.

A pause after every run (--gap, milliseconds) lets what a command leaves to the kernel after
it exits (a mount namespace torn down, a FUSE server reaped) finish before the next command
starts, so that no command's deferred work is timed as part of another's.

Usage: interleave.py [--runs N] [--warmup N] [--gap MS] [--json FILE] NAME=COMMAND ...
Each COMMAND is split like a shell would (no shell is started: `posix_spawn` + `waitpid`,
the time between them is what is measured, as `hyperfine -N` does). Standard output and
error go to /dev/null. A command that fails stops the benchmark. Prints, and writes as JSON,
each command's median, mean, min and standard deviation in seconds.
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time


def spawn_and_wait(argv, actions):
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter_ns() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"interleave: {shlex.join(argv)} exited with {code}")
    return elapsed / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--gap", type=float, default=20.0)
    parser.add_argument("--json")
    parser.add_argument("commands", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args()
    commands = []
    for spec in args.commands:
        name, sep, command = spec.partition("=")
        if not sep or not command:
            sys.exit(f"interleave: '{spec}' is not NAME=COMMAND")
        argv = shlex.split(command)
        path = shutil.which(argv[0])
        if path is None:
            sys.exit(f"interleave: {argv[0]}: not found")
        commands.append((name, [path] + argv[1:]))
    actions = [
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    times = {name: [] for name, _ in commands}
    for round_ in range(args.warmup + args.runs):
        for name, argv in commands:
            t = spawn_and_wait(argv, actions)
            time.sleep(args.gap / 1e3)
            if round_ >= args.warmup:
                times[name].append(t)
    results = [
        {
            "command": name,
            "median": statistics.median(ts),
            "mean": statistics.fmean(ts),
            "min": min(ts),
            "stddev": statistics.stdev(ts) if len(ts) > 1 else 0.0,
        }
        for name, ts in times.items()
    ]
    for r in results:
        print(f"{r['command']:12} median {r['median'] * 1e3:8.3f} ms  mean "
              f"{r['mean'] * 1e3:8.3f} ms  min {r['min'] * 1e3:8.3f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results}, f)


if __name__ == "__main__":
    main()
