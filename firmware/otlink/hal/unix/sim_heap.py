# The simulated devices stand for silicon, which allocates nothing on the agent's heap. A
# driver's heap-locked test (micropython.heap_lock) runs the driver's code locked while the
# model it talks to computes its answer (floats, lists) with the lock lifted: a model method
# starts with n = release() and ends with relock(n). Outside a locked section both are no-ops.
import micropython


def release():
    """Lift every level of heap lock now held; return how many there were."""
    n = 0
    while True:
        try:
            probe = [n]  # allocates: fails only while the heap is locked
            del probe
            return n
        except MemoryError:
            micropython.heap_unlock()
            n += 1


def relock(n):
    for _ in range(n):
        micropython.heap_lock()
