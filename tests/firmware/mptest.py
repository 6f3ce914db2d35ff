# Minimal test runner for firmware tests executed by the MicroPython Unix port.
# A test file defines test_* functions and ends with `mptest.main(globals())`.
# sys.argv[1], when given, is a scratch folder the test may write to.
# Exit status is non-zero when any test fails, so the pytest bridge
# (tests/test_firmware.py) reports the failure with this output.
import os
import sys
import micropython


# the test nodes' ack key (mqtt.ack_key, required with consumer acks): a test value only
ACK_KEY = "3c9e" + "51a7d20b6f84" * 5

class Fail(Exception):
    pass


def eq(got, want, what=""):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what or "value", got, want))


def true(cond, what):
    if not cond:
        raise Fail(what)


def raises(exc, fn, *args, **kw):
    """Call fn and return the exception of type exc it raised; fail otherwise."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise Fail("%s did not raise %s" % (getattr(fn, "__name__", fn), exc.__name__))


def no_alloc(fn, *args):
    """Run fn with the heap locked: any allocation raises MemoryError."""
    # Dispatch by arity: a star-call would itself allocate the argument array.
    n = len(args)
    micropython.heap_lock()
    try:
        if n == 0:
            return fn()
        if n == 1:
            return fn(args[0])
        if n == 2:
            return fn(args[0], args[1])
        if n == 3:
            return fn(args[0], args[1], args[2])
        return fn(args[0], args[1], args[2], args[3])
    finally:
        micropython.heap_unlock()


def main(globs):
    only = os.getenv("MPTEST_ONLY")  # run a subset: MPTEST_ONLY=name
    names = sorted(k for k in globs if k.startswith("test_") and callable(globs[k]))
    passed = failed = 0
    for name in names:
        if only and only not in name:
            continue
        try:
            globs[name]()
        except Exception as e:  # report every failure, keep going
            failed += 1
            print("FAIL", name)
            sys.print_exception(e)
        else:
            passed += 1
            print("ok  ", name)
    print("firmware: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
