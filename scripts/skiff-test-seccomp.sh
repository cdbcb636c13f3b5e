#!/usr/bin/env bash
# What the integration tests run as `skiff` in a sanitized run: scripts/sanitize.sh
# points SKIFF_BIN here and SKIFF_SANITIZED_BIN at the sanitized binary. It gives
# `skiff run` `--seccomp $SKIFF_TEST_SECCOMP` unless the command line names a mode,
# so every place a test starts skiff (directly, through `ip netns exec` or `sh -c`)
# gets it. `exec` keeps the process id and exit status the tests look at.
# Why: TSan's runtime makes system calls (gettimeofday on a new thread) that the
# filters refuse, and its own signal handling then fails (docs/security.md).
set -euo pipefail
: "${SKIFF_SANITIZED_BIN:?set by scripts/sanitize.sh}"
if [ "${1:-}" = run ] && [ -n "${SKIFF_TEST_SECCOMP:-}" ]; then
    for a in "$@"; do
        case $a in --seccomp|--seccomp=*) exec "$SKIFF_SANITIZED_BIN" "$@" ;; esac
    done
    shift
    exec "$SKIFF_SANITIZED_BIN" run --seccomp "$SKIFF_TEST_SECCOMP" "$@"
fi
exec "$SKIFF_SANITIZED_BIN" "$@"
