#!/usr/bin/env bash
# The 32-bit Unix MicroPython the firmware tests also run on: the object model of the boards
# (4-byte pointers, 31-bit small ints, single-precision floats boxed on the heap) with the
# agent frozen in (boards/unix32/manifest.py), so its heap holds data, not bytecode.
# Its configuration is boards/unix32/mpconfigvariant.h (single-precision floats, Ctrl-C
# scheduled as on the boards).
#
# Input: the MicroPython v1.28.0 release source, ../shared/toolchain/micropython-1.28.0.tar.gz
# (override with MP_TARBALL). Extracted into build/ once; later runs only re-freeze the
# firmware and relink (a few seconds). Output: build/mp32/micropython.
# Without the tarball it says so in one line and exits 0: the 64-bit suite still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
TARBALL=${MP_TARBALL:-../shared/toolchain/micropython-1.28.0.tar.gz}
SHA256=9d56aa9765d2b33c4d742187f27ff9f44138afd002a0bfba08824b70ce7e6439
SRC=build/micropython-1.28.0
OUT=$PWD/build/mp32
if [ ! -f "$TARBALL" ]; then
  echo "otlink: SKIPPED the 32-bit build and its tests: $TARBALL is absent (64-bit suite only)"
  exit 0
fi
mkdir -p build
exec 9>build/.mp32.lock
flock 9  # one build at a time: test sessions run in parallel
if [ ! -f "$SRC/.extracted" ]; then
  echo "$SHA256  $TARBALL" | sha256sum -c --quiet - \
    || { echo "otlink: $TARBALL: sha256 mismatch" >&2; exit 1; }
  rm -rf "$SRC"
  mkdir -p build
  tar xzf "$TARBALL" -C build
  # The manifest tooling wants a micropython-lib folder (the submodule is not in the
  # tarball); the agent needs nothing from it.
  mkdir -p "$SRC/lib/micropython-lib"
  echo "empty: otlink freezes nothing from micropython-lib" > "$SRC/lib/micropython-lib/README.md"
  touch "$SRC/.extracted"
fi
bash tools/ensure_debs.sh /usr/lib/gcc/x86_64-linux-gnu/12/32/crtbegin.o:gcc-multilib
[ -f build/lib/umqtt/simple.py ] || { echo "otlink: run 'make umqtt' first" >&2; exit 1; }
J=$(nproc 2>/dev/null || echo 2)
make -s -C "$SRC/mpy-cross" -j"$J" >/dev/null
make -s -C "$SRC/ports/unix" -j"$J" VARIANT_DIR="$PWD/boards/unix32" BUILD="$OUT" \
  MICROPY_FORCE_32BIT=1 MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0 \
  MICROPY_PY_SSL=0 MICROPY_SSL_MBEDTLS=0 \
  FROZEN_MANIFEST="$PWD/boards/unix32/manifest.py" >"$OUT.log" 2>&1 \
  || { tail -30 "$OUT.log" >&2; echo "otlink: 32-bit build failed (log: $OUT.log)" >&2; exit 1; }
