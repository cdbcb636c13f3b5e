#!/bin/sh
# Build the Skiff test guests (firmware/*) into firmware/out/*.elf.
# Needs only gcc, binutils and make; idempotent (make decides what is stale).
# Usage: scripts/build-firmware.sh [guest ...]   (default: all)
set -eu
cd "$(dirname "$0")/../firmware"
if [ "$#" -gt 0 ]; then
	exec make -s OUT=out GUESTS="$*"
fi
exec make -s OUT=out
