#!/usr/bin/env bash
# Make sure a PostgreSQL server (initdb, pg_ctl, postgres) is installed, for tests/test_tune_postgres.py.
# The test starts its own throw-away server on 127.0.0.1 and removes it; this script only installs the Debian
# package when the binaries are missing (as root, with apt-get). It never starts or configures a server.
set -euo pipefail

find_bindir() {
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    # Debian keeps the server binaries off PATH, in /usr/lib/postgresql/<major>/bin
    local candidate
    candidate=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$candidate" && -x "$candidate/pg_ctl" && -x "$candidate/initdb" ]]; then
        echo "$candidate"
        return 0
    fi
    return 1
}

if bindir=$(find_bindir); then
    echo "PostgreSQL server binaries: $bindir"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "PostgreSQL server binaries not found and not root: install the 'postgresql' package" \
         "(Debian/Ubuntu: sudo apt-get install postgresql), or set SB3_DQFD_SKIP_POSTGRES=1 to skip that test" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL server binaries not found and no apt-get: install PostgreSQL with your package manager" >&2
    exit 1
fi
echo "Installing PostgreSQL (Debian package 'postgresql')..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101: the package must not start its own cluster service; the test runs a private server
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
bindir=$(find_bindir) || { echo "PostgreSQL installed but pg_ctl/initdb not found" >&2; exit 1; }
echo "PostgreSQL server binaries: $bindir"
