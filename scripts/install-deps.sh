#!/usr/bin/env bash
# Installs the Debian 12 packages Skiff's build, tests and guests need.
# Idempotent and quick when everything is already there. Needs root (or sudo).
#
# Package lists: scripts/base-deps.txt (VMM build and tests),
# scripts/guest-deps.txt (guest kernel + initramfs), scripts/test-deps.txt.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=$(cat "$repo"/scripts/base-deps.txt "$repo"/scripts/guest-deps.txt "$repo"/scripts/test-deps.txt 2>/dev/null \
    | sed 's/#.*//' | tr -s ' \n' '\n' | sed '/^$/d' | sort -u)

missing=()
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
