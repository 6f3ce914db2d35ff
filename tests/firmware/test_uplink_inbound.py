# heapsize: 160K 32:64K
# An incoming message the uplink takes in (ack or cmd topic, payload up to max_in) costs one
# heap block of its size, not two: read straight into one new bytearray the handler keeps.
# Found by the hostile-broker fuzzer (tools/fuzz_mqtt.py): reading a 2 KiB command
# allocated a bytearray and then a bytes copy, and on the 32-bit build's fragmented 64K heap
# the second 2 KiB block was missing now and then: MemoryError, the session dropped.
# And when even the one block is missing, the message is refused and counted (like an
# oversized one) and the session goes on in step with the broker.
# A real TCP connection on loopback carries the PUBLISH (a socket served by this test).
import gc
import socket
import time

import mptest
from mptest import eq, true

from otlink import uplink
from otlink.core.config import parse_mqtt


def _listener():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for port in range(47311, 47411):
        try:
            srv.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            srv.listen(1)
            return srv, port
        except OSError:
            pass
    raise mptest.Fail("no free loopback port")


def _publish(topic, payload, pid=9):
    body = bytes([len(topic) >> 8, len(topic) & 0xFF]) + topic + bytes([pid >> 8, pid & 0xFF])
    n = len(body) + len(payload)
    head = bytearray([0x32])
    while True:
        b = n & 0x7F
        n >>= 7
        head.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(head) + body + payload


# the agent's write buffer (app.py: batch_bytes + 160 with the default batch_bytes), smaller
# than a 2 KiB message, and the Uplink's own default, larger
AGENT_OUT = 1024 + 160


def _session(got, out_size=2048):
    cfg = parse_mqtt({"host": "127.0.0.1", "port": 1883, "ack": "broker"}, "n1", "s1")
    up = uplink.Uplink(cfg, {"id": "n1", "site": "s1"}, time, on_cmd=got.append,
                       out_size=out_size)
    srv, port = _listener()
    s = up._new_socket()
    s.begin(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    peer, _ = srv.accept()
    for _ in range(200):
        if s.tcp_up(10):
            break
    return up, srv, peer


def _one_block(out_size):
    got = []
    up, srv, peer = _session(got, out_size)
    payload = bytes(range(256)) * 8  # 2048 bytes: max_in, taken in
    msg = _publish(up.t_cmd, payload)
    peer.write(msg)
    time.sleep_ms(20)
    up.read_msg()  # warm up: the first call makes what every call reuses
    peer.write(msg)
    time.sleep_ms(20)
    gc.collect()
    gc.disable()
    try:
        free0 = gc.mem_free()
        up.read_msg()
        used = free0 - gc.mem_free()
    finally:
        gc.enable()
    eq(len(got), 2, "messages handed in")
    true(got[1] == payload, "the handler gets the payload")
    # one block (2 KiB + a header) and small objects (2.9 KB on 64-bit); two copies were
    # 4.5 KB (32-bit) and 5.0 KB (64-bit)
    true(used < 2 * 2048, "reading a 2 KiB message allocated %d bytes" % used)
    peer.close()
    srv.close()
    up._drop()


def test_a_2k_message_costs_one_block_of_its_size():
    _one_block(2048)


def test_a_2k_message_costs_one_block_with_the_agents_buffer():
    _one_block(AGENT_OUT)


def _no_block(out_size):
    got = []
    up, srv, peer = _session(got, out_size)
    big = bytes(range(256)) * 8
    peer.write(_publish(up.t_cmd, big, 5) + _publish(up.t_cmd, b'{"op":"x"}', 6))
    time.sleep_ms(20)
    # fragment the heap: fill it with 1 KiB blocks, then free every other one (holes of
    # 1 KiB: small objects fit, a 2 KiB block does not)
    gc.collect()
    keep, holes = [], []
    try:
        while True:
            keep.append(bytearray(1024))
            holes.append(bytearray(1024))
    except MemoryError:
        pass
    holes = None
    gc.collect()
    refused0 = up.refused_in
    try:
        up.read_msg()  # the 2 KiB command: no block for it
    finally:
        keep = None
        gc.collect()
    eq(up.refused_in, refused0 + 1, "refused for want of memory")
    eq(len(got), 0, "nothing handed in")
    up.read_msg()  # the next packet is read in step
    eq(got, [b'{"op":"x"}'], "the next message")
    # both were acknowledged (QoS 1): PUBACKs for ids 5 and 6
    up.sock.flush()
    time.sleep_ms(20)
    eq(peer.read(8), b"\x40\x02\x00\x05\x40\x02\x00\x06", "PUBACKs")
    peer.close()
    srv.close()
    up._drop()


def test_no_block_for_a_message_refuses_it_and_keeps_the_session():
    _no_block(2048)


def test_no_block_with_the_agents_buffer_refuses_it_and_keeps_the_session():
    _no_block(AGENT_OUT)


mptest.main(globals())
