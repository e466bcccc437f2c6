"""The ops_trace part of ``difytrace doctor``: destinations, broker, queue depth, workers and
dead letters."""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from collections.abc import Iterable
from typing import Any

from difytrace.cli_probes import Check, langfuse, langsmith, masked_url, otlp, redis_ping, tcp
from difytrace.exceptions import ConfigurationError
from difytrace.settings import Settings

_REDIS = ("redis", "rediss", "sentinel")
# kombu's Redis transport keeps priorities 3, 6 and 9 in lists next to the queue's own.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def _configs(settings: Settings) -> tuple[list[tuple[str, Any]], Check | None]:
    """(where, config) of every destination in the routing file, deduplicated by key."""
    if settings.ops_trace_resolver:
        return [], Check(
            "destination",
            "ops_trace destinations",
            "skip",
            f"resolved per tenant by {settings.ops_trace_resolver} at run time; "
            "not enumerable here",
        )
    if not settings.ops_trace_destinations:
        return [], Check(
            "destination",
            "ops_trace destinations",
            "skip",
            "none configured (DIFYTRACE_OPS_TRACE_DESTINATIONS)",
        )
    routing = importlib.import_module("difytrace.ops_trace.routing")
    try:
        resolver = routing.StaticResolver.from_file(settings.ops_trace_destinations)
    except ConfigurationError as exc:
        return [], Check("destination", "ops_trace destinations", "fail", str(exc))
    found: dict[str, tuple[str, Any]] = {}

    def add(where: str, configs: Iterable[Any]) -> None:
        for config in configs:
            found.setdefault(config.key, (where, config))

    add("default", resolver.default)
    for tenant, (tenant_wide, apps) in resolver.tenants.items():
        add(f"tenant {tenant}", tenant_wide)
        for app, configs in apps.items():
            add(f"tenant {tenant} app {app}", configs)
    return list(found.values()), None


def _probe(where: str, config: Any, timeout_s: float) -> Check:
    kind = config.kind
    if kind == "langfuse":
        return langfuse(
            f"Langfuse {config.host} ({where})",
            config.host,
            config.public_key,
            config.secret_key.get_secret_value(),
            timeout_s,
        )
    if kind == "langsmith":
        return langsmith(
            f"LangSmith {config.endpoint} ({where})",
            config.endpoint,
            config.api_key.get_secret_value(),
            timeout_s,
        )
    headers = {k: v.get_secret_value() for k, v in config.headers.items()}
    return otlp(
        "destination", f"OTLP {config.endpoint} ({where})", config.endpoint, headers, timeout_s
    )


def _in_use(settings: Settings, configs: list[tuple[str, Any]]) -> bool:
    return bool(
        configs
        or settings.ops_trace_resolver
        or settings.sources.get("ops_trace_broker_url", "default") != "default"
    )


def _redis(settings: Settings, url: str) -> Any:
    from difytrace.ops_trace.store import redis_client

    return redis_client(url, sentinel_master=settings.ops_trace_sentinel_master)


def _depth(settings: Settings, timeout_s: float) -> int:
    """Messages waiting in the ops_trace queue (Redis: the list and its priority lists)."""
    queue = settings.ops_trace_queue
    url = settings.ops_trace_broker_url
    if url.split("://", 1)[0] in _REDIS:
        client = _redis(settings, url)
        return sum(int(client.llen(queue + suffix)) for suffix in _PRIORITY_SUFFIXES)
    kombu = importlib.import_module("kombu")
    with kombu.Connection(url, connect_timeout=timeout_s) as conn:
        _, depth, _ = conn.default_channel.queue_declare(queue, passive=True)
    return int(depth)


def _consumers(settings: Settings, timeout_s: float) -> list[str]:
    """Workers whose active queues include the ops_trace queue (a broadcast ping).

    Replies are collected one by one: celery's merged reply keeps one answer per node name, so
    two workers sharing a name (same host, default ``-n``) would hide each other.
    """
    from celery import Celery

    config = importlib.import_module("difytrace.ops_trace.config")
    app = Celery("difytrace-doctor", set_as_current=False)
    app.conf.update(config.celery_config(settings))  # the broker, Sentinel's master name
    app.conf.broker_connection_max_retries = 1  # a doctor reports; it does not wait it out
    names: list[str] = []
    try:
        with warnings.catch_warnings():
            # Several workers sharing a node name is the operator's business, not ours here.
            warnings.simplefilter("ignore")
            # A broadcast can miss a busy worker: ask twice before saying nobody consumes.
            for _ in range(2):
                names = _consuming(_active_queues(app, timeout_s / 4), settings.ops_trace_queue)
                if names:
                    break
    finally:
        app.close()
    return [
        f"{name} (x{names.count(name)})" if names.count(name) > 1 else name
        for name in sorted(set(names))
    ]


def _active_queues(app: Any, timeout_s: float) -> list[tuple[str, Any]]:
    """Every (node name, active queues) reply to one broadcast, duplicates kept."""
    replies: list[tuple[str, Any]] = []
    app.control.inspect(
        timeout=timeout_s, callback=lambda r: replies.extend(r.items())
    ).active_queues()
    return replies


def _consuming(replies: list[tuple[str, Any]], queue: str) -> list[str]:
    return [
        worker
        for worker, items in replies
        if isinstance(items, list) and any(q.get("name") == queue for q in items)
    ]


def _queue_depth(settings: Settings, timeout_s: float) -> tuple[int, list[str]]:
    return _depth(settings, timeout_s), _consumers(settings, timeout_s)


def _queue_checks(settings: Settings, timeout_s: float) -> list[Check]:
    name = f"queue {settings.ops_trace_queue}"
    try:
        depth, consumers = _queue_depth(settings, timeout_s)
    except Exception as exc:
        if "NOT_FOUND" in str(exc) or "404" in str(exc):
            return [
                Check(
                    "ops_trace",
                    name,
                    "warn",
                    "queue not declared yet: no worker has started on it (run: difytrace worker)",
                )
            ]
        return [Check("ops_trace", name, "fail", f"cannot read the queue ({exc})")]
    depth_check = Check("ops_trace", name, "pass", f"{depth} message(s) waiting")
    if consumers:
        worker = Check(
            "ops_trace", f"workers on {settings.ops_trace_queue}", "pass", ", ".join(consumers)
        )
    else:
        worker = Check(
            "ops_trace",
            f"workers on {settings.ops_trace_queue}",
            "fail" if depth else "warn",
            "no worker consumes it (start one: difytrace worker)"
            + (f"; {depth} message(s) are piling up" if depth else ""),
        )
    return [depth_check, worker]


def _outbox_checks(settings: Settings) -> list[Check]:
    config = importlib.import_module("difytrace.ops_trace.config")
    store_mod = importlib.import_module("difytrace.ops_trace.store")
    dlq = importlib.import_module("difytrace.ops_trace.dlq")
    url = config.outbox_url(settings)
    client = _redis(settings, url)
    if url != settings.ops_trace_broker_url:
        ping = redis_ping(client, "ops_trace", f"outbox {masked_url(url)}")
        if ping.status != "pass":
            return [ping]
    store = store_mod.OutboxStore(client, config.store_prefix(settings))
    counts = store.counts()
    dead = int(dlq.DeadLetters(store).count())
    checks = [
        Check("ops_trace", "outbox", "pass", ", ".join(f"{v} {k}" for k, v in counts.items()))
    ]
    checks.append(
        Check(
            "ops_trace",
            "dead letters",
            "warn" if dead else "pass",
            f"{dead} dead letter(s)" + (" (see: difytrace dlq list)" if dead else ""),
        )
    )
    return checks


def checks(settings: Settings, timeout_s: float) -> list[Check]:
    """Every ops_trace check; the broker's only when ops_trace is configured."""
    if importlib.util.find_spec("difytrace.ops_trace") is None:
        return [Check("ops_trace", "ops_trace", "skip", "not installed in this build")]
    configs, note = _configs(settings)
    found = [note] if note else []
    found += [_probe(where, config, timeout_s) for where, config in configs]
    if not _in_use(settings, configs):
        return [
            *found,
            Check(
                "broker",
                "ops_trace broker",
                "skip",
                "ops_trace not configured (no destinations, resolver or broker URL)",
            ),
        ]
    url = settings.ops_trace_broker_url
    source = settings.sources.get("ops_trace_broker_url", "default")
    name = f"broker {masked_url(url)} (from {source})"
    if url.split("://", 1)[0] in _REDIS:
        broker = redis_ping(_redis(settings, url), "broker", name)
    else:
        broker = tcp("broker", name, url, 5672, timeout_s)
    found.append(broker)
    if broker.status == "pass":
        found += _queue_checks(settings, timeout_s)
        try:
            found += _outbox_checks(settings)
        except ConfigurationError as exc:
            found.append(Check("ops_trace", "outbox", "fail", str(exc)))
    return found
