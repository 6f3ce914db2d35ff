#!/usr/bin/env bash
# Make sure the mosquitto broker binary is present; tests start their own instances.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
if command -v mosquitto >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing mosquitto (Debian package)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
  # The package may try to start a system service; tests use their own ports only.
  command -v mosquitto >/dev/null && exit 0
fi
echo "otlink: mosquitto is missing: run 'sudo apt-get install mosquitto' and retry" >&2
exit 1
