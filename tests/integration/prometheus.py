"""Reading a service's `/metrics` the way Prometheus does, for assertions on what moved."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Samples:
    """Every sample of one scrape: (sample name, its labels) → value."""

    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in self.values.items()
            if sample == name and wanted <= sample_labels
        )

    def names(self) -> set[str]:
        return {name for name, _ in self.values}

    def has(self, metric: str) -> bool:
        """Whether a metric is exposed: a counter or gauge by its name, a histogram by its
        `_count` sample."""
        names = self.names()
        return metric in names or f"{metric}_count" in names

    def labels_of(self, name: str) -> Iterable[dict[str, str]]:
        return [dict(labels) for sample, labels in self.values if sample == name]


async def scrape(http: httpx.AsyncClient, base_url: str) -> Samples:
    response = await http.get(f"{base_url}/metrics")
    assert response.status_code == 200, response.text
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Samples(values)
