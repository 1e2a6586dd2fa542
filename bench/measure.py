"""Run a command, then append its wall time and peak RSS as a JSON line to a log.

    python -m bench.measure LOG NAME -- COMMAND ...

bench/run.py prefixes every dvc.yaml command of its throwaway clone with this, so that each
stage is measured inside a real `dvc repro`.  Peak RSS is the largest of the command and its
descendants (getrusage semantics), in MB.
"""
import json
import os
import subprocess
import sys
import time


def main():
    log, name, separator, *command = sys.argv[1:]
    assert separator == "--", __doc__
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"stage": name, "seconds": round(seconds, 3),
                            "peak_rss_mb": round(usage.ru_maxrss / 1024), "exit": code}) + "\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
