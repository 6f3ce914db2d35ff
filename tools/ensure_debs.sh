#!/usr/bin/env bash
# Make sure the Debian packages the tests need are present: each named as "command:package"
# (the command that proves it is there, the package that brings it).
#   tools/ensure_debs.sh mosquitto:mosquitto
# Tests start their own instances of every server on free loopback ports.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin:/usr/lib/postgresql/15/bin"
missing=()
for spec in "$@"; do
  probe=${spec%%:*}
  pkg=${spec#*:}
  case "$probe" in
    /*) [ -e "$probe" ] || missing+=("$pkg") ;;
    *) command -v "$probe" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq >/dev/null
  # A package may try to start a system service; tests use their own ports and folders.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "otlink: missing Debian packages: run 'sudo apt-get install ${missing[*]}' and retry" >&2
exit 1
