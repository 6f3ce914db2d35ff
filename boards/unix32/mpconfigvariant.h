// The 32-bit Unix build's MicroPython configuration (tools/build_mp32.sh): the standard
// Unix variant, changed where the boards (ESP32, RP2040) differ from a desktop build.
#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)

// Single-precision floats, boxed on the heap, as on the boards.
#define MICROPY_FLOAT_IMPL (MICROPY_FLOAT_IMPL_FLOAT)

#include "variants/mpconfigvariant_common.h"

// Ctrl-C (SIGINT) is scheduled, as on the boards, and raised at the next bytecode boundary.
// The desktop default raises it from the signal handler in the middle of any C function;
// one landing inside a garbage collection leaves the heap locked for good (every later
// allocation: "MemoryError: memory allocation failed, heap is locked").
#undef MICROPY_ASYNC_KBD_INTR
#define MICROPY_ASYNC_KBD_INTR (0)
