"""difytrace's exceptions.

Hierarchy::

    DifytraceError
     ├── ConfigurationError      a setting or configure() argument is invalid (raised at start)
     └── RecordError             an ops_trace record cannot be validated or serialised
"""

from __future__ import annotations


class DifytraceError(Exception):
    """Base class of every error difytrace raises on purpose."""


class ConfigurationError(DifytraceError, ValueError):
    """A setting is invalid; the message names the variable and the accepted values."""


class RecordError(DifytraceError, ValueError):
    """An ops_trace record is invalid; the message names the field and the problem."""
