#!/bin/sh
# Build the Skiff test guests (firmware/*) into firmware/out/*.elf.
# Needs only gcc, binutils and make; idempotent (make decides what is stale).
# Usage: scripts/build-firmware.sh [guest ...]   (default: all)
set -eu
cd "$(dirname "$0")/../firmware"
jobs=$(nproc 2>/dev/null || echo 2)
if [ "$#" -gt 0 ]; then
	exec make -s -j"$jobs" OUT=out GUESTS="$*"
fi
exec make -s -j"$jobs" OUT=out
