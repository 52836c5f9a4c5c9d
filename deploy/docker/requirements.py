"""Print the pip requirements of one Ferry image, one per line, from pyproject.toml.

    python deploy/docker/requirements.py SERVICE [PYPROJECT]

Every image gets the base dependencies; only the Transcode Worker adds its extra (Pillow,
pillow-heif, PyAV, NumPy, blurhash). Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

# The images the Dockerfile builds, and the pyproject extras each adds to the base dependencies.
SERVICE_EXTRAS: dict[str, tuple[str, ...]] = {
    "gateway": (),
    "media_service": (),
    "message_service": (),
    "transcode_worker": ("worker",),
    "devstack": (),  # the one-shot `python -m devstack.bootstrap`: no emulator, no decoders
}


def requirements(service: str, pyproject: dict[str, object]) -> list[str]:
    if service not in SERVICE_EXTRAS:
        known = ", ".join(sorted(SERVICE_EXTRAS))
        raise ValueError(f"unknown service {service!r} (one of: {known})")
    project = pyproject["project"]
    if not isinstance(project, dict):
        raise ValueError("pyproject.toml has no [project] table")
    wanted = list(project["dependencies"])
    extras = project.get("optional-dependencies", {})
    for extra in SERVICE_EXTRAS[service]:
        wanted += extras[extra]
    name = str(project["name"]).lower()
    for requirement in wanted:
        if requirement.lower().startswith((f"{name}[", f"{name} ", f"{name}=")):
            raise ValueError(f"{requirement!r} refers to the project itself: list it directly")
    return [str(requirement) for requirement in wanted]


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[1] if len(argv) == 2 else "pyproject.toml")
    with path.open("rb") as handle:
        pyproject = tomllib.load(handle)
    try:
        lines = requirements(argv[0], pyproject)
    except ValueError as error:
        print(f"requirements.py: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
