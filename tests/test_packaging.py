"""pyproject.toml and environment.yml must install the same packages with the same pins."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> tuple[str, str]:
    name, _, pin = requirement.partition("==")
    name = re.sub(r"\[.*\]", "", name).strip().lower().replace("_", "-")
    return name, pin.strip()


def pyproject_requirements() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(normalise(r) for r in data["project"]["dependencies"])


def environment_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_items = []
    in_pip = False
    for line in lines:
        stripped = line.strip()
        if stripped == "- pip:":
            in_pip = True
            continue
        if in_pip and stripped.startswith("- "):
            item = stripped[2:].strip()
            if not item.startswith("-e"):
                pip_items.append(item)
    return dict(normalise(r) for r in pip_items)


def test_environment_yml_lists_the_same_pinned_packages_as_pyproject():
    assert environment_requirements() == pyproject_requirements()


def test_every_dependency_is_pinned():
    assert all(pin for pin in pyproject_requirements().values())


def test_redis_extra_is_kept_for_kombu():
    # kombu 5.7's Redis transport imports `packaging`, which only celery[redis] brings in.
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(r.startswith("celery[redis]==") for r in data["project"]["dependencies"])
    assert "celery[redis]==" in (ROOT / "environment.yml").read_text()


def test_ci_calls_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_relative_link_in_the_notebooks_points_to_a_file():
    import json

    broken = []
    for folder in ("notebooks", "solutions", "labs"):
        for nb_path in sorted((ROOT / folder).glob("*.ipynb")):
            for cell in json.loads(nb_path.read_text())["cells"]:
                if cell["cell_type"] != "markdown":
                    continue
                for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", "".join(cell["source"])):
                    if "://" in target or target.startswith("mailto:"):
                        continue
                    if not (nb_path.parent / target).exists():
                        broken.append(f"{nb_path.relative_to(ROOT)} -> {target}")
    assert broken == []
