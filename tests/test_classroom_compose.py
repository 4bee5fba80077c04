"""classroom/docker-compose.yml: what the class runs, checked without Docker.

(Docker is not on every machine that runs these tests; the file is checked for what would go
wrong in a classroom: an open port, Flower without a password, a worker for a missing lesson.)
"""
from __future__ import annotations

import os
import re

import pytest
import yaml

from celerylab.__main__ import lesson_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSROOM = os.path.join(ROOT, "classroom")


@pytest.fixture(scope="module")
def compose():
    with open(os.path.join(CLASSROOM, "docker-compose.yml")) as f:
        return yaml.safe_load(f)


def env_defaults(text: str) -> str:
    """Compose's ${VAR:-default} with the defaults filled in (what runs without class.env)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", text)


def test_services(compose):
    assert set(compose["services"]) == {"redis", "rabbitmq", "flower", "worker"}


def test_every_port_is_on_loopback_unless_the_instructor_opens_it(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host = env_defaults(port).split(":")[0]
            assert host == "127.0.0.1", f"{name} publishes {port} beyond this machine by default"


def test_passwords_are_required_not_defaulted(compose):
    services = compose["services"]
    assert "--requirepass" in services["redis"]["command"]
    assert "${REDIS_PASSWORD:?" in " ".join(services["redis"]["command"])
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"].endswith("${FLOWER_PASSWORD:?set FLOWER_PASSWORD in class.env}")
    assert "${RABBITMQ_PASSWORD:?" in services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"]
    example = open(os.path.join(CLASSROOM, "class.env.example")).read()
    assert re.search(r"^REDIS_PASSWORD=$", example, re.M)  # no shared default password
    ignored = open(os.path.join(ROOT, ".gitignore")).read().split()
    assert "classroom/class.env" in ignored


def test_durability_is_on(compose):
    services = compose["services"]
    assert services["redis"]["command"][1:3] == ["--appendonly", "yes"]
    assert services["redis"]["volumes"] and services["rabbitmq"]["volumes"]


def test_workers_and_flower_run_real_lessons_on_the_class_broker(compose):
    worker, flower = compose["services"]["worker"], compose["services"]["flower"]
    cmd = [env_defaults(c) for c in worker["command"]]
    assert cmd[:4] == ["python", "-m", "celerylab", "worker"]
    assert lesson_module(cmd[cmd.index("--lesson") + 1]).startswith("celerylab.lessons.l00_")
    flower_module = env_defaults(flower["command"][4])
    assert __import__("importlib").util.find_spec(flower_module) is not None
    for service in (worker, flower):
        assert service["environment"]["CELERYLAB_BROKER_URL"].startswith("redis://:${REDIS_PASSWORD}@redis:6379")
        assert service["build"] == {"context": "..", "dockerfile": "classroom/Dockerfile"}


def test_the_image_installs_the_kit_and_runs_as_a_user():
    dockerfile = open(os.path.join(CLASSROOM, "Dockerfile")).read()
    for line in ("COPY pyproject.toml README.md ./", "COPY celerylab ./celerylab", "RUN pip install --no-cache-dir .",
                 "USER learner"):
        assert line in dockerfile
    for path in ("pyproject.toml", "README.md", "celerylab"):
        assert os.path.exists(os.path.join(ROOT, path))
