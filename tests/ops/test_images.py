"""Every base and service image is pinned by digest, in the tag@sha256 form that keeps the
tag readable: a re-pushed tag cannot change what is built or run."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PINNED = re.compile(r"^[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$")


def test_the_dockerfile_stages_share_one_base_pinned_by_digest():
    # given
    bases = [
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    ]

    # then: both stages, the same pinned base (the venv is built for the runtime's Python)
    assert len(bases) == 2
    assert PINNED.match(bases[0]), bases[0]
    assert bases[0] == bases[1]
    assert bases[0].startswith("python:3.11.")


def test_every_compose_service_image_is_built_here_or_pinned_by_digest():
    # given
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

    # then
    images = {name: svc.get("image") for name, svc in compose["services"].items()}
    external = {name: image for name, image in images.items() if image != "eats-payments:dev"}
    assert set(external) == {"postgres", "redis"}
    for name, image in external.items():
        assert PINNED.match(image), (name, image)
