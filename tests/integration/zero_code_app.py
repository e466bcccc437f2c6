"""Run by test_zero_code.py: a Flask app that may also call difytrace.configure(), makes one
request through the test client and exits (spans are flushed at exit)."""

from __future__ import annotations

import os

from flask import Flask

import difytrace

app = Flask(__name__)


@app.get("/ping")
def ping() -> str:
    return "pong"


if os.environ.get("ZERO_CODE_CALL_CONFIGURE") == "1":
    print("configure() ->", difytrace.configure())
with app.test_client() as client:
    assert client.get("/ping").status_code == 200
