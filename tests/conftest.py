"""Shared test setup: pytester for the plugin tests (tests/testing/)."""

pytest_plugins = ["pytester"]
