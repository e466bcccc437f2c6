"""The internal-error guard: difytrace never breaks the host app.

Every hook that difytrace installs in someone else's code path runs its own logic under
:func:`internal_errors`. An exception raised by difytrace itself is logged once per site and
swallowed so the host's original behaviour continues; under the pytest plugin (``STRICT``) it is
re-raised so our own bugs surface in tests. Exceptions of the user's code are never caught here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("difytrace")

#: Re-raise internal errors instead of logging them (set by the pytest plugin and by
#: ``DIFYTRACE_STRICT=1`` in child processes started by tests).
STRICT = os.environ.get("DIFYTRACE_STRICT", "") == "1"

_reported: set[str] = set()


def report_internal_error(site: str, exc: BaseException) -> None:
    """Log an internal error once per ``site``, or re-raise it in strict mode."""
    if STRICT:
        raise exc
    if site not in _reported:
        _reported.add(site)
        logger.warning(
            "difytrace internal error in %s (further ones not logged)", site, exc_info=exc
        )


@contextmanager
def internal_errors(site: str) -> Iterator[None]:
    """Run difytrace's own code; log and swallow what it raises (re-raise when strict)."""
    try:
        yield
    except Exception as exc:
        report_internal_error(site, exc)
