"""deploy/prometheus-alerts.yml refers only to series the proxy exports."""

import re
from pathlib import Path

from proxy.metrics import METRICS_DOC

ROOT = Path(__file__).resolve().parents[2]
# series of the TLS termination (its own issue); listed in the rules ahead of time
PENDING: set[str] = set()  # series an alert may use before the proxy exports them (none now)


def test_alert_rules_use_exported_series():
    text = (ROOT / "deploy" / "prometheus-alerts.yml").read_text()
    exprs = re.findall(r"expr: \|?\n?((?:.|\n)*?)\n\s+for:", text)
    assert len(exprs) >= 8
    known = {name for name, *_ in METRICS_DOC}
    used = set()
    for e in exprs:
        for name in re.findall(r"\b([a-z_]+(?:_total|_seconds|_len|_state|_health)(?:_bucket)?)\b", e):
            used.add(name.removesuffix("_bucket"))
    assert used, exprs
    unknown = used - known - PENDING
    assert not unknown, f"alert rules use series the proxy does not export: {sorted(unknown)}"


def test_readme_documents_each_alert():
    text = (ROOT / "deploy" / "prometheus-alerts.yml").read_text()
    readme = (ROOT / "README.md").read_text()
    for alert in re.findall(r"- alert: (\w+)", text):
        assert alert in readme, f"README does not document {alert}"
