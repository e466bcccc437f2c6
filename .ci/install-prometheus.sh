#!/usr/bin/env bash
# Installs Debian's `prometheus` package (prometheus + promtool) for the dashboard/alert tests.
# Idempotent: does nothing when both binaries are already on PATH. Needs root (CI runs as root).
# The package's init script is kept from starting a system-wide server: the tests start their
# own Prometheus on 127.0.0.1 with a temporary storage directory.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  echo "prometheus already installed: $(prometheus --version 2>&1 | head -1)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  # exit 101 = "action forbidden": invoke-rc.d then skips starting the service.
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends prometheus
prometheus --version 2>&1 | head -1
promtool --version 2>&1 | head -1
