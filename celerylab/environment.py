"""``check_environment()``: is everything a lesson needs here, and which broker will it use?"""
from __future__ import annotations

import importlib.metadata as md
import os
import sys

#: (distribution, why a lesson needs it)
REQUIRED = [
    ("celery", "the task framework itself"),
    ("kombu", "Celery's messaging layer"),
    ("redis", "the Redis client Celery uses"),
    ("fakeredis", "the embedded in-memory broker"),
    ("lupa", "Lua scripting in the embedded broker (kombu needs it)"),
    ("ipywidgets", "live widgets"),
    ("plotly", "charts"),
    ("nbval", "grading exercises"),
]
OPTIONAL = [
    ("flower", "monitoring dashboard (lesson 07)"),
    ("prometheus-client", "metrics (lesson 07)"),
    ("msgpack", "msgpack serializer (lesson 02)"),
    ("sentry-sdk", "error reporting (lesson 07)"),
    ("gevent", "the gevent pool (lesson 08)"),
]


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_environment(verbose: bool = True) -> bool:
    """Print one line per package (version or what is missing) and the broker mode; True if ready."""
    ok = sys.version_info >= (3, 11)
    lines = [f"{'python':18} {'ok' if ok else 'too old'}  {sys.version_info.major}.{sys.version_info.minor} (3.11+ needed)"]
    for dist, why in REQUIRED + OPTIONAL:
        version = _version(dist)
        required = (dist, why) in REQUIRED
        if version is None:
            ok = ok and not required
            status = "MISSING" if required else "missing (optional)"
            lines.append(f"{dist:18} {status}  {why}: run `make lab` or `pip install -e .`")
        else:
            lines.append(f"{dist:18} ok  {version}")
    url = os.environ.get("CELERYLAB_BROKER_URL")
    lines.append(f"{'broker':18} {'external: ' + url if url else 'embedded (in-memory fakeredis in this kernel)'}")
    if verbose:
        print("\n".join(lines))
    return ok
