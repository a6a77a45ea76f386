"""The configuration shipped in deploy/kubernetes.yaml is one edgeproxy accepts."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

from proxy.config import parse_config

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes.yaml"


def configmap_toml() -> str:
    text = MANIFEST.read_text()
    start = text.index("edgeproxy.toml: |\n") + len("edgeproxy.toml: |\n")
    lines = []
    for line in text[start:].splitlines():
        if line.strip() and not line.startswith("    "):
            break  # the next key of the manifest
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_kubernetes_configmap_is_a_valid_config():
    cfg = parse_config(tomllib.loads(configmap_toml()), str(MANIFEST))
    assert cfg.server.workers == 2  # equal to the container's CPU limit
    assert cfg.admin.readyz_upstreams is False  # an upstream outage must not empty the Service
    assert cfg.admin.address.port == 9901  # where the probes point
