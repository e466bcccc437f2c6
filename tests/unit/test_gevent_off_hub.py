"""CPU-heavy work of difytrace's own "threads" runs off gevent's hub when threading is patched."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from gevent import monkey
monkey.patch_all()
import datetime
from difytrace.ops_trace import budget, outbox
from difytrace.ops_trace.config import Runtime
from difytrace.ops_trace.records import MessageRecord
from difytrace.settings import load_settings

real_ident = monkey.get_original("threading", "get_ident")
fitted_on = []
fit = budget.fit
def spy(doc, limit):
    fitted_on.append(real_ident())
    return fit(doc, limit)
budget.fit = spy
box = outbox.Outbox(Runtime(load_settings({"DIFYTRACE_OPS_TRACE_MAX_RECORD_BYTES": "100000"})))
now = datetime.datetime.now(datetime.timezone.utc)
record = MessageRecord(record_id="m", tenant_id="t", start_time=now, outputs="x" * 300_000)
payload = box._serialise(record)
print(len(payload) <= 100_000, len(fitted_on), fitted_on[0] != real_ident())
"""


def test_cutting_a_large_record_does_not_run_on_the_hub() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["True", "1", "True"], done.stderr
