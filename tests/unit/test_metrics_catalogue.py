"""Every service's metrics are the ones `docs/operations.md` lists: names, types, labels.

Building an app connects nowhere, so each service's registry can be read here as it is at
start: every documented metric must be on it (with its label values created in advance where
they are bounded), and nothing undocumented.
"""

from __future__ import annotations

import importlib

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from tests.metric_catalogue import SERVICES, documented_for, documented_metrics, registered


def _app(service: str) -> FastAPI:
    module = importlib.import_module(f"{service}.app")
    settings = importlib.import_module(f"{service}.settings").Settings()
    app: FastAPI = module.create_app(settings)
    return app


async def _registry_after_a_request(service: str) -> CollectorRegistry:
    app = _app(service)
    # One request, so the per-route HTTP series exist too (they are labelled by route).
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        assert (await client.get("/healthz")).status_code == 200
    registry: CollectorRegistry = app.state.registry
    return registry


def test_the_catalogue_parses_and_names_every_service() -> None:
    metrics = documented_metrics()
    assert len(metrics) >= 30
    assert len({metric.name for metric in metrics}) == len(metrics)
    for metric in metrics:
        assert metric.services <= set(SERVICES), metric
        assert metric.name.startswith("ferry_")
        assert metric.name.endswith("_total") == (metric.kind == "counter"), metric


@pytest.mark.parametrize("service", SERVICES)
async def test_every_documented_metric_is_registered_at_start(service: str) -> None:
    found = registered(await _registry_after_a_request(service))
    documented = documented_for(service)
    assert set(found) == set(documented), (
        f"undocumented: {sorted(set(found) - set(documented))}; "
        f"documented but missing: {sorted(set(documented) - set(found))}"
    )
    for name, metric in documented.items():
        kind, labels = found[name]
        assert kind == metric.kind, name
        assert labels == metric.labels, name


@pytest.mark.parametrize("service", SERVICES)
async def test_no_label_carries_an_id(service: str) -> None:
    for family in (await _registry_after_a_request(service)).collect():
        for sample in family.samples:
            assert not any(name.endswith("_id") for name in sample.labels), sample
