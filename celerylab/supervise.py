"""Run a server so that it never outlives the kit process that started it.

    python celerylab/supervise.py PARENT_PID -- COMMAND...

Runs COMMAND as a child in this process group (the caller starts us as a group leader) and
waits for it. If PARENT_PID dies first, even by SIGKILL (a killed kernel runs no cleanup), it
kills the whole group. SIGTERM to the group stops COMMAND cleanly; we exit with its status.

Run by path, not ``-m``: importing the ``celerylab`` package would add a second to every start.
"""
import os
import signal
import subprocess
import sys


def main(argv) -> int:
    parent, sep, *command = argv
    if sep != "--" or not command:
        print("usage: supervise.py PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    parent = int(parent)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the command gets it too: wait for it to end
    signal.signal(signal.SIGINT, lambda *_: None)
    child = subprocess.Popen(command)
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:  # reparented: the kit process is gone
                os.killpg(os.getpgrp(), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
