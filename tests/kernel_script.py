"""Run a piece of lesson code in a fresh Python process, as a fresh kernel would, and read back `out`.

Each script starts its own embedded broker (CELERYLAB_BROKER_URL is removed), logs to the test's
tmp folder, and ends with ``celerylab.cleanup()``; it prints ``RESULT <json of out>``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def run_script(body: str, tmp_path, header: str, timeout: float = 60) -> dict:
    script = (textwrap.dedent("""
        import json, time
        import celerylab
        out = {}
    """) + textwrap.dedent(header) + textwrap.dedent(body)
              + "\nprint('RESULT ' + json.dumps(out))\ncelerylab.cleanup()\n")
    env = {k: v for k, v in os.environ.items() if k != "CELERYLAB_BROKER_URL"}
    env["CELERYLAB_LOG_DIR"] = str(tmp_path / "logs")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT "):])
