"""Prometheus metrics: what each process counts, and the text ``/metrics`` answers with.

Under ``credenza serve`` the workers count in prometheus_client's multiprocess mode: each writes
its figures to files in ``PROMETHEUS_MULTIPROC_DIR`` (which the server sets up before this
module is first imported, see :func:`credenza.cli.serve.prepare_metrics_dir`), and a scrape
answered by any worker sums them all. Elsewhere (an embedding app, the tests) the process
counts alone, in :data:`REGISTRY`.

Labels hold only names from the configuration (families, routes, accounts' kinds, providers),
never a caller's name or anything a client chose, so that no series multiplies without bound.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

#: where this process's metrics are registered (when not in multiprocess mode)
REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

HTTP_REQUESTS = Counter(
    "credenza_http_requests", "HTTP requests answered", ["family", "route", "method", "status"],
    registry=REGISTRY)
HTTP_DURATION = Histogram(
    "credenza_http_request_duration_seconds", "Time to answer a request, until the handler "
    "returned", ["family", "route"], registry=REGISTRY)
ISSUED = Counter(
    "credenza_credentials_issued", "Credentials handed out, by kind (aws, token, api-key, "
    "oauth...) and provider (token and oauth kinds)", ["kind", "provider"], registry=REGISTRY)
REFUSED = Counter(
    "credenza_refusals", "Requests refused by the broker: reason is identity (credentials "
    "wrong or unknown) or grant (no grant covers the request)", ["reason", "kind"],
    registry=REGISTRY)
REVOKED = Counter(
    "credenza_tokens_revoked", "Tokens revoked or reinstated", ["action"], registry=REGISTRY)
STS_CALLS = Counter(
    "credenza_sts_calls", "Calls to AWS STS (each with botocore's retries), by outcome: ok, or "
    "the error class", ["operation", "outcome"], registry=REGISTRY)
STS_DURATION = Histogram(
    "credenza_sts_call_duration_seconds", "Duration of STS calls, retries included",
    ["operation"], registry=REGISTRY)
CACHE = Counter(
    "credenza_credential_cache_lookups", "AWS credential cache lookups: memory and shared are "
    "hits of each tier, miss went to STS", ["result"], registry=REGISTRY)
LDAP_BINDS = Counter(
    "credenza_ldap_binds", "LDAP binds (users' passwords and the service account), by outcome",
    ["outcome"], registry=REGISTRY)
LDAP_DURATION = Histogram(
    "credenza_ldap_bind_duration_seconds", "Duration of LDAP binds, connection included",
    registry=REGISTRY)
STORE_DURATION = Histogram(
    "credenza_store_operation_duration_seconds", "Duration of token store operations",
    ["operation"], buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
    registry=REGISTRY)
SIGNING_KEYS = Gauge(
    "credenza_signing_keys", "Signing keys published, by algorithm and state (next, active, "
    "retiring)", ["alg", "state"], multiprocess_mode="mostrecent", registry=REGISTRY)
SIGNING_KEY_AGE = Gauge(
    "credenza_signing_key_age_seconds", "Age of the active signing key of each algorithm",
    ["alg"], multiprocess_mode="mostrecent", registry=REGISTRY)


_SERIES: dict[tuple[int, tuple[str, ...]], Any] = {}


def series(metric: Counter | Gauge | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, made once: labels() takes a lock and builds its key on
    every call, which a hot path paid several times per request."""
    key = (id(metric), labels)
    found = _SERIES.get(key)
    if found is None:
        found = _SERIES[key] = metric.labels(*labels)
    return found


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the duration of the block in ``histogram`` (failures included)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


def multiprocess_mode() -> bool:
    """Whether the figures of this process are summed with its sibling workers'."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


def exposition() -> bytes:
    """The text format of every figure: summed over the workers in multiprocess mode."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
