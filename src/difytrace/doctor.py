"""``difytrace doctor``: why don't my traces arrive? A pass/fail report of the effective
settings, the gevent patch order, the instrumentations, and every configured destination,
broker and queue, each checked with a harmless request. Exit status 1 when a check fails.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from difytrace import cli_doctor_ops
from difytrace.cli_appcheck import AppReport, check_app
from difytrace.cli_probes import Check, otlp, tcp
from difytrace.exceptions import ConfigurationError
from difytrace.settings import SETTINGS, Settings, load_settings, masked_url

_MARKS = {
    "pass": ("✓", "green"),
    "fail": ("✗", "bold red"),
    "warn": ("!", "yellow"),
    "skip": ("-", "dim"),
}


def settings_table(settings: Settings) -> Table:
    """Every setting: its effective value (secrets masked) and where it came from."""
    table = Table("setting", "value", "from", title="effective settings", title_justify="left")
    shown = settings.masked()
    for setting in SETTINGS:
        source = settings.sources.get(setting.name, "default")
        table.add_row(
            setting.name,
            shown[setting.name],
            Text(source, style="dim" if source == "default" else "cyan"),
        )
    return table


def gevent_checks(app: AppReport | None, modules: Sequence[str]) -> list[Check]:
    """The patch order as the app does it (needs ``--import``)."""
    if app is None:
        return [
            Check(
                "gevent",
                "patch order",
                "skip",
                "pass --import <your app module> to check it as your app does it",
            )
        ]
    name = f"patch order ({', '.join(modules)})"
    if app.problems:
        return [Check("gevent", name, "fail", problem) for problem in app.problems]
    if not app.gevent_patched:
        return [Check("gevent", name, "pass", "gevent not patched by the app (no gevent)")]
    return [Check("gevent", name, "pass", "gevent → grpc → psycogreen order is right")]


def instrumentation_checks(settings: Settings, app: AppReport | None) -> list[Check]:
    """difytrace's instrumentors (installed, enabled, active in the app) and the others."""
    from difytrace.instrumentation import INSTRUMENTORS

    found: list[Check] = []
    disabled = set(settings.disabled_instrumentations)
    for name, (library, target) in INSTRUMENTORS.items():
        if importlib.util.find_spec(library) is None:
            found.append(Check("instrumentation", name, "skip", f"{library} not installed"))
        elif name in disabled or library in disabled:
            found.append(
                Check(
                    "instrumentation",
                    name,
                    "warn",
                    "disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
                )
            )
        elif app is not None and app.configured_by and not app.instrumented.get(name):
            found.append(
                Check(
                    "instrumentation",
                    name,
                    "fail",
                    f"the app was set up by {app.configured_by} but {library} is not instrumented",
                )
            )
        else:
            found.append(_importable(name, target, app))
    return [*found, *_contrib_checks(settings)]


def _contrib_checks(settings: Settings) -> list[Check]:
    from difytrace.distro import REPLACED_CONTRIB
    from difytrace.instrumentation import INSTRUMENTORS

    names = sorted(
        {
            ep.name
            for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor")
            if ep.name not in INSTRUMENTORS
        }
    )
    found = []
    replaced = [n for n in names if n in REPLACED_CONTRIB]
    if replaced:
        found.append(
            Check(
                "instrumentation",
                "contrib " + ", ".join(replaced),
                "pass",
                "installed; turned off under opentelemetry-instrument (difytrace's "
                "own instrumentors replace them)",
            )
        )
    others = [
        n
        for n in names
        if n not in REPLACED_CONTRIB and n not in settings.disabled_instrumentations
    ]
    if others:
        found.append(
            Check(
                "instrumentation",
                "contrib " + ", ".join(others),
                "pass",
                "loaded too by opentelemetry-instrument",
            )
        )
    return found


def enabled_check(settings: Settings) -> Check:
    """Whether ``difytrace.configure()`` will do anything."""
    source = settings.sources.get("enabled", "default")
    if settings.enabled:
        return Check("settings", "enabled", "pass", f"configure() sets up tracing (from {source})")
    return Check(
        "settings",
        "enabled",
        "warn",
        "difytrace.configure() does nothing unless "
        "DIFYTRACE_ENABLED=true or ENABLE_OTEL=true (opentelemetry-instrument is "
        "always on)",
    )


def _importable(name: str, target: str, app: AppReport | None) -> Check:
    try:
        importlib.import_module(target.partition(":")[0])
    except Exception as exc:
        return Check("instrumentation", name, "fail", f"cannot be loaded: {exc}")
    if app is None:
        return Check("instrumentation", name, "pass", "installed and enabled")
    if app.configured_by:
        return Check("instrumentation", name, "pass", f"active (set up by {app.configured_by})")
    return Check(
        "instrumentation",
        name,
        "warn",
        "installed, but importing the app did not "
        "set difytrace up: run it under opentelemetry-instrument or call "
        "difytrace.configure()",
    )


def telemetry_checks(settings: Settings, timeout_s: float) -> list[Check]:
    """The live-telemetry OTLP endpoints, each probed with an empty export."""
    if settings.exporter != "otlp":
        return [Check("telemetry", "span exporter", "skip", f"exporter is {settings.exporter}")]
    targets = [("OTLP traces", settings.traces_endpoint)]
    if (
        settings.metrics_enabled
        and settings.metrics_exporter == "otlp"
        and settings.metrics_endpoint != settings.traces_endpoint
    ):
        targets.append(("OTLP metrics", settings.metrics_endpoint))
    found = []
    for label, endpoint in targets:
        signal = "traces" if "traces" in label else "metrics"
        source = settings.sources.get(f"{signal}_endpoint", "default")
        name = f"{label} {masked_url(endpoint)} (from {source})"
        protocol = settings.protocol if signal == "traces" else settings.metrics_protocol
        if protocol == "grpc":
            found.append(tcp("telemetry", name, endpoint, 4317, timeout_s))
        else:
            headers = settings.export_headers(signal)
            found.append(otlp("telemetry", name, endpoint, headers, timeout_s))
    return found


def report(checks: Sequence[Check], console: Console) -> int:
    """Print the checks and a summary; return the exit status (1 when one failed)."""
    table = Table("", "area", "check", "result", title="checks", title_justify="left")
    for check in checks:
        mark, style = _MARKS[check.status]
        table.add_row(
            Text(mark, style=style),
            check.area,
            check.name,
            Text(check.detail, style=style if check.status != "pass" else ""),
        )
    console.print(table)
    counts = {status: sum(c.status == status for c in checks) for status in _MARKS}
    failed = counts["fail"]
    console.print(
        Text(
            f"doctor: {counts['pass']} passed, {failed} failed, {counts['warn']} "
            f"warnings, {counts['skip']} skipped",
            style="bold red" if failed else "bold green",
        )
    )
    return 1 if failed else 0


def run(
    *, modules: Sequence[str], timeout_s: float, environ: Mapping[str, str] | None, console: Console
) -> int:
    """Run every check and print the report; return the exit status."""
    try:
        settings = load_settings(environ)
    except ConfigurationError as exc:
        return report([Check("settings", "settings", "fail", str(exc))], console)
    console.print(settings_table(settings))
    app = None
    checks: list[Check] = [enabled_check(settings)]
    if modules:
        with console.status(f"importing {', '.join(modules)} in a fresh interpreter…"):
            try:
                app = check_app(modules)
            except RuntimeError as exc:
                checks.append(Check("app", "import", "fail", str(exc)))
    checks += gevent_checks(app, modules)
    checks += instrumentation_checks(settings, app)
    with console.status("probing destinations…"):
        checks += telemetry_checks(settings, timeout_s)
        checks += cli_doctor_ops.checks(settings, timeout_s)
    return report(checks, console)
