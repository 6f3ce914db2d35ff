# heapsize: 64K
# The emulated NOR flash of the Unix HAL: erased 0xFF file image that survives a restart,
# program only clears bits, 4 KiB sector erase, counters, power-cut hook, block device for
# vfs.VfsLfs2 (issue 3 item 4), the datasheet busy-time model.
import gc
import vfs

import mptest
from otlink.hal.unix.norflash import NorFlash, FlashError, PowerCut
from queue_helpers import fresh

SIZE = 64 * 1024
RAM = 8 * 1024  # RAM-cached images stay small under the 64K heap


def test_new_image_is_erased_and_persists():
    p = fresh("a.img")
    nor = NorFlash(p, SIZE)
    b = bytearray(8)
    nor.read(4096 * 3, b)
    mptest.eq(bytes(b), b"\xff" * 8, "fresh flash")
    nor.program(4096 * 3 + 2, b"\x12\x34")
    nor.close()
    nor = NorFlash(p, SIZE)  # an agent restart finds the bytes
    nor.read(4096 * 3, b)
    mptest.eq(bytes(b), b"\xff\xff\x12\x34\xff\xff\xff\xff", "after reopen")
    mptest.raises(ValueError, NorFlash, p, SIZE * 2)  # wrong size names the image
    nor.close()


def test_program_cannot_set_bits():
    gc.collect()
    nor = NorFlash(None, RAM)
    nor.program(100, b"\x0f")
    nor.program(100, b"\x0e")  # clearing more bits is fine
    e = mptest.raises(FlashError, nor.program, 100, b"\x1e")
    mptest.true("0->1" in str(e), "error names the 0->1 program: %s" % e)
    nor.erase(0)
    nor.program(100, b"\xf0")  # erased again: any value
    mptest.eq(nor.mem[100], 0xF0, "after erase")


def test_file_image_checks_bits_without_allocating():
    # the file-backed image (the agent's and the small-heap tests' mode) checks every byte
    # of a program through a fixed chunk buffer: no heap taken, a bad byte past the first
    # 256 still found and named
    gc.collect()
    p = fresh("bits.img")
    nor = NorFlash(p, SIZE, cache=False)
    data = bytearray(600)
    for i in range(600):
        data[i] = (i * 7) & 0xFF
    mptest.no_alloc(nor.program, 1000, data)
    for i in range(600):
        data[i] &= 0xF0  # clearing bits only: fine
    mptest.no_alloc(nor.program, 1000, data)
    data[400] |= 0x01  # byte 400 (third chunk) would need a 0->1
    e = mptest.raises(FlashError, nor.program, 1000, data)
    mptest.true("0x%x" % (1000 + 400) in str(e), "names the address: %s" % e)
    b = bytearray(4)
    nor.read(1400, b)
    mptest.eq(b[0], ((400 * 7) & 0xFF) & 0xF0, "refused program wrote nothing")
    nor.close()


def test_counters():
    gc.collect()
    nor = NorFlash(None, RAM)
    nor.erase(1)
    nor.erase(1)
    nor.program(1 * 4096, b"abc")
    nor.program(0, b"\x00" * 10)
    mptest.eq(nor.erases[1], 2, "erases of sector 1")
    mptest.eq(nor.erases[0], 0, "erases of sector 0")
    mptest.eq(nor.programs[1], 1, "programs of sector 1")
    mptest.eq(nor.bytes_programmed, 13, "bytes programmed")
    mptest.eq(nor.ops, 4, "ops")
    mptest.eq(nor.mem[4096 + 3], 0xFF, "only 3 bytes programmed")


def test_power_cut_hook():
    gc.collect()
    nor = NorFlash(None, RAM)
    nor.cut_after(2)
    nor.program(0, b"\x00" * 64)
    nor.erase(1)
    mptest.raises(PowerCut, nor.program, 4096, b"\x00" * 64)  # op 3: torn
    mptest.true(nor.dead, "dead after the cut")
    mptest.raises(PowerCut, nor.read, 0, bytearray(4))
    mptest.raises(PowerCut, nor.erase, 0)
    nor.power_on()
    b = bytearray(64)
    nor.read(4096, b)
    zeros = 0
    for x in b:
        if x == 0:
            zeros += 1
    mptest.true(zeros < 64, "torn program is partial (%d of 64 bytes programmed)" % zeros)
    mptest.eq(nor.ops, 2, "ops completed")
    nor.cut_after(0, tear=False)
    mptest.raises(PowerCut, nor.erase, 0)
    nor.power_on()
    nor.read(0, b)
    mptest.eq(bytes(b), b"\x00" * 64, "untorn cut leaves the sector untouched")


def test_timing_model_accounts_datasheet_busy_time():
    # W25Q32JV/W25Q16JV section 9.6: tPP 0.4 ms typ / 3 ms max per page program command,
    # tSE 45 ms typ / 400 ms max per 4 KiB sector erase
    gc.collect()
    nor = NorFlash(fresh("t0.img"), RAM, cache=False)
    nor.program(0, b"\x00" * 16)
    mptest.eq(nor.busy_us, 0, "no timing model: no busy time")
    mptest.raises(ValueError, NorFlash, None, RAM, timing="fast")
    nor.close()
    nor = NorFlash(fresh("t1.img"), RAM, cache=False, timing="typ")
    nor.program(10, b"\x00" * 8)  # part of one page: one command
    mptest.eq(nor.busy_us, 400, "one page program")
    nor.program(250, b"\x00" * 12)  # crosses a page boundary: two commands
    mptest.eq(nor.busy_program_us, 1200, "a program across two pages")
    nor.erase(1)
    mptest.eq(nor.busy_erase_us, 45000, "sector erase, typical")
    mptest.eq(nor.busy_us, 46200, "total")
    nor.reset_counters()
    mptest.eq(nor.busy_us, 0, "reset")
    nor.close()
    worst = NorFlash(fresh("t2.img"), RAM, cache=False, timing="max")
    worst.program(0, b"\x00" * 256)
    worst.erase(0)
    mptest.eq((worst.busy_program_us, worst.busy_erase_us), (3000, 400000), "max corner")
    # a cut operation completes nothing, so no one waits for it
    worst.cut_after(0)
    mptest.raises(PowerCut, worst.erase, 1)
    mptest.eq(worst.busy_us, 403000, "torn erase not charged")
    worst.close()


def test_timing_model_makes_the_caller_wait():
    import time

    gc.collect()
    nor = NorFlash(fresh("t3.img"), RAM, cache=False, timing="typ", sleep=True)
    t = time.ticks_us()
    nor.program(0, b"\x00" * 512)  # two page programs: 0.8 ms
    dt = time.ticks_diff(time.ticks_us(), t)
    mptest.true(dt >= 800, "program waited %d us, want >= 800" % dt)
    t = time.ticks_ms()
    nor.erase(1)
    dt = time.ticks_diff(time.ticks_ms(), t)
    mptest.true(dt >= 45, "erase waited %d ms, want >= 45" % dt)
    nor.close()


def test_littlefs_on_a_region_survives_restart():
    p = fresh("fs.img")
    nor = NorFlash(p, 2 * SIZE, cache=False)  # file-backed: no image in the 64K heap
    dev = nor.region(SIZE, SIZE)
    mptest.eq(dev.ioctl(4, 0), 16, "block count")
    mptest.eq(dev.ioctl(5, 0), 4096, "block size")
    vfs.VfsLfs2.mkfs(dev)
    fs = vfs.VfsLfs2(dev)
    with fs.open("/cfg.txt", "w") as f:
        f.write("hello flash")
    mptest.true(sum(nor.erases) > 0, "littlefs erased through ioctl 6")
    fs.umount() if hasattr(fs, "umount") else None
    nor.close()
    nor = NorFlash(p, 2 * SIZE, cache=False)
    fs = vfs.VfsLfs2(nor.region(SIZE, SIZE))
    with fs.open("/cfg.txt", "r") as f:
        mptest.eq(f.read(), "hello flash", "file after restart")
    b = bytearray(16)
    nor.read(0, b)
    mptest.eq(bytes(b), b"\xff" * 16, "region 0 untouched")
    mptest.raises(ValueError, nor.region, 100, 4096)
    nor.close()


mptest.main(globals())
