"""The metric table of `docs/operations.md`, read back so tests hold the docs and code together."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

OPERATIONS_DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
SERVICES = ("media_service", "message_service", "transcode_worker", "gateway")
EVERY_SERVICE = "every service"

_ROW = re.compile(
    r"^\|\s*`(ferry_[a-z0-9_]+)`\s*\|\s*(counter|gauge|histogram)\s*\|([^|]*)\|([^|]+)\|"
)


@dataclass(frozen=True, kw_only=True)
class DocumentedMetric:
    name: str  # as exposed: counters end in `_total`; histograms are the base name
    kind: str  # counter, gauge, histogram
    labels: frozenset[str]
    services: frozenset[str]


def documented_metrics(path: Path = OPERATIONS_DOC) -> list[DocumentedMetric]:
    metrics = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        name, kind, labels, services = match.groups()
        where = services.strip()
        metrics.append(
            DocumentedMetric(
                name=name,
                kind=kind,
                # "`media_type`, `kind` (single, multipart, dedup)": the names in backticks.
                labels=frozenset(re.findall(r"`([a-z_]+)`", labels)),
                services=frozenset(
                    SERVICES
                    if where == EVERY_SERVICE
                    else (part.strip() for part in where.split(","))
                ),
            )
        )
    return metrics


def documented_for(service: str) -> dict[str, DocumentedMetric]:
    return {metric.name: metric for metric in documented_metrics() if service in metric.services}


def registered(registry: CollectorRegistry) -> dict[str, tuple[str, frozenset[str]]]:
    """name (as documented) → (type, label names) of every metric in `registry`."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        found[name] = (family.type, frozenset(labels))
    return found
