# MQTT session on umqtt.simple (wrapped, not forked): deadlines on every socket wait,
# TCP_NODELAY, write coalescing, TLS through otlink.hal.tls, keepalive pings, a retained
# last will carrying the death state, retained birth, subscriptions to ack and cmd, and
# reconnects with exponential backoff and jitter. See docs/uplink.md.
#
# Where umqtt.simple 1.3.4 is wrong, this wrapper does the step itself (never a fork):
#   - packet ids: umqtt increments without wrapping and packs "!H", so publish 65,536 of a
#     session carries id 0, which MQTT 3.1.1 §2.3.1 forbids: the id is wrapped to 1 here;
#   - SUBSCRIBE: umqtt writes a 1-byte remaining length (topics of 123 bytes and more fail):
#     subscribe() here writes the variable-length form (§2.2.3);
#   - incoming PUBLISH: umqtt reads topic and payload whole into new objects (a 300 KB
#     retained message on cmd means MemoryError on every connect): read_msg() here reads at
#     most max_in bytes of payload and discards anything longer in bounded chunks, still
#     acknowledging it, so the session stays up. Installed as the client's wait_msg.
#
# Errors: the session raises OSError (or TlsError / MQTTException on connect) and marks
# itself down; the Publisher (the supervisor) decides when to call connect() again, which
# honours the backoff. Nothing here waits without a deadline.
#
# Connecting is a sequence of steps, one per connect() call, the event loop turning between
# them: resolve the host (once; an IP literal costs nothing), open the TCP connection (polled,
# never waited on), the TLS handshake, CONNECT/CONNACK, SUBSCRIBE ack, SUBSCRIBE cmd, the
# retained birth, chained in one call while they come back within _CHAIN_MS (a LAN broker).
# Each blocking step waits for one broker round trip at most, under a deadline
# of op_timeout_ms (connect_timeout_ms for TCP and TLS), both below the boards' watchdog
# (8.3 s on rp2): a slow broker makes the connect slow, never the node's loop stall for the
# sum of the round trips (12 s measured at a 3 s round trip when it was one call).
#
# Time: every tick (socket deadlines, keepalive, the reconnect schedule) comes from the
# injected clock and is summed and compared with its ticks_add / ticks_diff, so a clock on the
# boards' 2**30 period (hal/clock.py Ticks, started near the wrap) drives all of it. The
# clock must move with real time: the socket waits real time against its deadlines.
import errno
import select
import socket
import time

from umqtt import simple as _mqtt

from otlink.core.compat import const

_IPPROTO_TCP = const(6)  # not exported by MicroPython's socket; same value on Linux and lwIP
_TCP_NODELAY = const(1)  # Nagle + delayed ACK cap QoS1 at ~22 msg/s on loopback (ANCHORS)
_POLLIN = const(1)
_POLLOUT = const(4)
_POLLERR = const(8)
_POLLHUP = const(16)
_MAX_IN = const(2048)  # largest ack/cmd payload taken in; longer ones are discarded
_SKIP = const(256)  # chunk used to read and drop what is refused
# Protocol error: MicroPython's errno has no EPROTO (errno.EPROTO raised AttributeError on
# every malformed packet); the value is Linux's and lwIP's. EPIPE: a write to a closed peer.
_EPROTO = const(71)
_EPIPE = const(32)
# connect() steps (header comment)
_CHAIN_MS = const(20)  # run further steps in the same call while it has taken less
_S_IDLE = const(0)
_S_OPEN = const(1)
_S_TCP = const(2)
_S_TLS = const(3)
_S_MQTT = const(4)
_S_SUB_ACK = const(5)
_S_SUB_CMD = const(6)
_S_BIRTH = const(7)
_S_READY = const(8)


class DeadlineSocket:
    """The socket umqtt.simple sees. Every read/write waits with select.poll against one
    deadline armed by the Uplink before each MQTT operation; past it, OSError(ETIMEDOUT).
    Writes are gathered in a preallocated buffer and sent as one segment before the next
    read, on flush() or when full (umqtt writes a packet in 4-6 small pieces). write() into
    the buffer allocates nothing (tests/firmware/test_uplink.py checks it under heap_lock).
    ticks: the clock (ticks_ms, ticks_add, ticks_diff); the time module by default."""

    def __init__(self, out, timeout_ms, ticks=None):
        t = time if ticks is None else ticks
        self._ms = t.ticks_ms
        self._add = t.ticks_add
        self._diff = t.ticks_diff
        self.raw = socket.socket()
        self._io = self.raw
        self._poll = select.poll()
        self._poll.register(self.raw, _POLLIN)
        self._polled = self.raw
        self._deadline = self._add(self._ms(), timeout_ms)
        self._peek = False  # umqtt.check_msg(): the first read returns None when idle
        self._out = out  # the Uplink's buffer, allocated once (no 2 KiB per reconnect)
        self._outmv = memoryview(out)
        self._nout = 0
        self.nodelay = False
        self.last_rx = self._ms()
        self.last_tx = self.last_rx
        self.tls = None
        self.up = False  # the TCP connection is established

    def arm(self, timeout_ms):
        self._deadline = self._add(self._ms(), timeout_ms)

    def left_ms(self):
        d = self._diff(self._deadline, self._ms())
        if d <= 0:
            raise OSError(errno.ETIMEDOUT)
        return d

    def _wait(self, ev):
        self._poll.modify(self._polled, ev)
        for _obj, got in self._poll.ipoll(self.left_ms()):
            if got & (_POLLERR | _POLLHUP) and not got & _POLLIN:
                raise OSError(errno.ECONNRESET)
            return got
        raise OSError(errno.ETIMEDOUT)

    def begin(self, addr):
        """Start the TCP connection and return at once (tcp_up() polls it)."""
        self.raw.setblocking(False)
        try:
            self.raw.connect(addr)
        except OSError as e:
            if e.args[0] != errno.EINPROGRESS:
                raise

    def tcp_up(self, wait_ms=0):
        """True once the connection is established; waits at most wait_ms for it. Raises
        OSError when refused or past the deadline."""
        if self.up:
            return True
        left = self.left_ms()
        self._poll.modify(self.raw, _POLLOUT)
        for _obj, got in self._poll.ipoll(wait_ms if wait_ms < left else left):
            if got & (_POLLERR | _POLLHUP):
                raise OSError(errno.ECONNREFUSED)
            break
        else:
            self.left_ms()  # raises once the deadline has passed
            return False
        self.up = True
        try:
            self.raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
            self.nodelay = True
        except (OSError, AttributeError):
            pass  # port without it: correct, only slower
        return True

    def connect(self, addr):
        # umqtt's connect() calls this: the Uplink has connected the socket in steps already
        if not self.up:
            self.begin(addr)
            while not self.tcp_up(self.left_ms()):
                pass

    def start_tls(self, tls):
        """Called by otlink.hal.tls.wrap_socket from inside umqtt's connect()."""
        self._io = tls.wrap(self.raw, self.left_ms())
        self._poll.unregister(self._polled)
        self._poll.register(self._io, _POLLIN)
        self._polled = self._io
        self.tls = tls

    def setblocking(self, flag):
        # umqtt: check_msg() sets False before its first read(1), wait_msg() sets True after.
        self._peek = not flag

    def read(self, n):
        buf = bytearray(n)
        if not self.readinto(memoryview(buf), self._peek):
            return None  # umqtt's check_msg(): nothing waiting
        return bytes(buf)

    def readinto(self, mv, peek=False):
        """Fill mv exactly, every wait under the socket's deadline; True when filled. peek:
        return False at once when no byte is waiting (umqtt's non-blocking first read).
        Allocates nothing of its own beyond the views it reads through."""
        if self._nout:
            self.flush()
        n = len(mv)
        got = 0
        while got < n:
            try:
                r = self._io.readinto(mv[got:])
            except OSError as e:
                if e.args[0] != errno.EAGAIN:
                    raise
                r = None
            if r is None:
                if peek and got == 0:
                    return False
                self._wait(_POLLIN)
                continue
            if r == 0:
                raise OSError(errno.ECONNRESET)  # the broker closed the connection
            got += r
        self.last_rx = self._ms()
        return True

    def write(self, data, n=-1):
        if n < 0:
            n = len(data)
        if self._nout + n > len(self._out):
            self.flush()
            if n > len(self._out):
                self._send(memoryview(data)[:n])
                return n
        o = self._nout
        if n == len(data):
            self._outmv[o:o + n] = data  # a slice store allocates nothing
        elif n <= 16:
            # umqtt writes each packet header as write(buf, n): copy it byte by byte, as
            # memoryview(data)[:n] would allocate two objects per publish.
            out = self._out
            for i in range(n):
                out[o + i] = data[i]
        else:
            self._outmv[o:o + n] = memoryview(data)[:n]
        self._nout = o + n
        return n

    def flush(self):
        if self._nout:
            n = self._nout
            self._nout = 0
            self._send(self._outmv[:n])

    def _send(self, mv):
        off = 0
        end = len(mv)
        while off < end:
            try:
                r = self._io.write(mv[off:end])
            except OSError as e:
                if e.args[0] != errno.EAGAIN:
                    raise
                r = None
            if r is None:
                self._wait(_POLLOUT)
                continue
            off += r
        self.last_tx = self._ms()

    def readable(self):
        """True when data (or EOF) is waiting: lets the caller skip check_msg when idle."""
        self._poll.modify(self._polled, _POLLIN)
        for _item in self._poll.ipoll(0):
            return True
        return False

    def close(self):
        try:
            self.flush()
        except OSError:
            pass
        try:
            self._io.close()
        except OSError:
            pass


class _Transport:
    # Stands in for umqtt.simple's `socket` module global so its connect() uses the Uplink's
    # DeadlineSocket, already connected, and the address already resolved.
    def __init__(self):
        self.owner = None

    def socket(self, *args):
        return self.owner.sock  # opened and connected by the Uplink's earlier steps

    def getaddrinfo(self, host, port, *args):
        return ((0, 0, 0, "", self.owner._addr),)  # resolved once by the Uplink


_transport = _Transport()
_mqtt.socket = _transport
_tls = None  # otlink.hal.tls, imported when a session uses TLS (ssl costs ~8 KiB of heap)


def _tls_module():
    global _tls
    if _tls is None:
        from otlink.hal import tls

        tls.install()
        _tls = tls
    return _tls


def _b(s):
    if s is None or isinstance(s, bytes):
        return s
    return str(s).encode()


class Uplink:
    """One MQTT session. mqtt_cfg: the validated "mqtt" section (core/config.py, every field
    filled in); node_cfg: {"id", "site"}.
    on_ack(msg) / on_cmd(msg) are called from inside MQTT reads (keep them short); msg is
    a fresh bytearray the handler may keep.
    rand: a function returning an int in [0, n) for backoff jitter (random.getrandbits based
    by default)."""

    def __init__(self, mqtt_cfg, node_cfg, clock, on_ack=None, on_cmd=None, rand=None,
                 out_size=2048, op_timeout_ms=5000, connect_timeout_ms=5000,
                 max_in=_MAX_IN, resolver=None):
        self.cfg = mqtt_cfg
        self.clock = clock
        self.node = node_cfg["id"]
        base = "%s/%s/%s/" % (mqtt_cfg["prefix"], node_cfg["site"], self.node)
        self.t_birth = (base + "birth").encode()
        self.t_data = (base + "data").encode()
        self.t_state = (base + "state").encode()
        self.t_ack = (base + "ack").encode()
        self.t_cmd = (base + "cmd").encode()
        self.host = mqtt_cfg["host"]
        self.port = mqtt_cfg["port"]
        self.keepalive_s = mqtt_cfg["keepalive_s"]
        self.op_timeout_ms = op_timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        bo = mqtt_cfg["backoff_ms"]
        self.backoff_min = bo[0]
        self.backoff_max = bo[1]
        self.on_ack = on_ack
        self.on_cmd = on_cmd
        self._rand = rand or _rand
        self._out = bytearray(out_size)  # write coalescing buffer, shared by all sessions
        self.max_in = max_in
        # Scratch for the bytes of incoming packets that are parsed or discarded: the write
        # buffer itself, as every read first sends what it holds (DeadlineSocket.read*)
        self._skip = memoryview(self._out if out_size >= _SKIP else bytearray(_SKIP))
        self._hdr = bytearray(8)  # SUBSCRIBE / PUBACK packet heads
        self.tls = None
        tls_cfg = mqtt_cfg["tls"]
        if tls_cfg:
            self.tls = _tls_module().Tls(tls_cfg, self.host)  # raises TlsError on a bad section
        self.client = None
        self.sock = None
        self.connected = False
        self.ever_connected = False
        self._backoff = 0
        self._next_try = clock.ticks_ms()
        self._ping_sent = None
        # counters for the state message and tests
        self.connects = 0
        self.failures = 0
        self.disconnects = 0
        self.last_error = None
        self.retained = False  # the message being dispatched came from the retained store
        self.refused_in = 0  # incoming messages discarded: too long or on an unknown topic
        # (counted across sessions: the state message's msgs_refused)
        self.birth = None
        self.will = None
        self._step = _S_IDLE  # connect() step in progress
        self._addr = None  # the broker's resolved address, kept across sessions
        # resolver(host) -> IPv4 string within a deadline (the board's, dns.py); None: the
        # platform's getaddrinfo (the Unix port's resolver answers from the host)
        self._resolver = resolver
        self.longest_step_ms = 0  # the longest connect() step so far (tests, state)

    # --- connection --------------------------------------------------------------------
    def _new_socket(self):
        s = DeadlineSocket(self._out, self.connect_timeout_ms, self.clock)
        self.sock = s
        return s

    def due(self):
        """True when a (re)connect attempt is allowed now by the backoff schedule. _next_try
        is set at most backoff_max ahead and may be read days later (after close(), or an
        initial time never re-armed): a distance of more than backoff_max before it means its
        ticks_diff wrapped (more than 6.2 days ago), so it is due."""
        return self.wait_ms() == 0

    def wait_ms(self):
        """ms until the next attempt is allowed (0 when due, and while connecting)."""
        if self._step:
            return 0
        d = self.clock.ticks_diff(self._next_try, self.clock.ticks_ms())
        return d if 0 < d <= self.backoff_max else 0

    def connect(self, birth=None, will=None):
        """One step of a (re)connect (header comment): each waits one broker round trip at
        most, under its deadline. True when connected; False while steps remain (due() stays
        True: call again after the event loop has turned) or after a failure. Never raises
        for network, broker or TLS trouble: records last_error, counts the failure and
        schedules the next try (backoff with jitter)."""
        if self.connected:
            return True
        if not self.due():
            return False
        # kept by reference, not copied: the caller's bytes (the birth is KiBs) must not change
        if birth is not None:
            self.birth = birth
        if will is not None:
            self.will = will
        clock = self.clock
        t0 = clock.ticks_ms()
        done = False
        try:
            # steps that come back quickly are chained (a broker on the LAN connects in one
            # call); once this call has taken _CHAIN_MS the loop gets its turn
            while True:
                used = clock.ticks_diff(clock.ticks_ms(), t0)
                if used >= _CHAIN_MS:
                    break
                st = self._step
                done = self._connect_step(_CHAIN_MS - used)
                if done or self._step == st:
                    break  # connected, or waiting for the TCP connection
        except Exception as e:  # OSError, TlsError, MQTTException, bad CONNACK
            self._failed(e)
            done = False
        d = clock.ticks_diff(clock.ticks_ms(), t0)
        if d > self.longest_step_ms:
            self.longest_step_ms = d
        return done

    def _connect_step(self, wait_ms):
        st = self._step
        if st == _S_IDLE:
            if self._addr is None:
                # DNS once per address (an IP literal is parsed, not looked up); on a board
                # the resolver waits at most its own deadline (lwIP's does not)
                host = self.host
                if self._resolver is not None:
                    host = self._resolver(host)
                self._addr = socket.getaddrinfo(host, self.port)[0][-1]
            self._step = _S_OPEN
            return False
        s = self.sock
        if st == _S_OPEN:
            s = self._new_socket()
            s.begin(self._addr)
            self._step = _S_TCP
            return False
        if st == _S_TCP:
            if s.tcp_up(wait_ms):
                self._step = _S_TLS if self.tls is not None else _S_MQTT
            return False
        if st == _S_TLS:
            s.arm(self.connect_timeout_ms)
            s.start_tls(self.tls)  # the handshake: its own deadline (hal/tls.py)
            self._step = _S_MQTT
            return False
        c = self.client
        if st == _S_MQTT:
            cfg = self.cfg
            client_id = _b(cfg["client_id"])
            user = _b(cfg["user"])
            pw = _b(cfg["password"]) if user is not None else None
            # ssl=False: the socket is already TLS when configured (step above)
            c = _mqtt.MQTTClient(client_id, self.host, self.port, user=user,
                                 password=pw if pw is not None else (b"" if user else None),
                                 keepalive=self.keepalive_s)
            if self.will is not None:
                c.set_last_will(self.t_state, self.will, retain=True, qos=1)
            c.set_callback(self._dispatch)
            c.wait_msg = self.read_msg  # bounded reads of incoming messages (header comment)
            self.client = c
            _transport.owner = self
            s.arm(self.op_timeout_ms)
            c.connect(clean_session=True)  # CONNECT / CONNACK: one round trip
            self._step = _S_SUB_ACK
            return False
        if st == _S_SUB_ACK:
            self.subscribe(self.t_ack, 1)
            self._step = _S_SUB_CMD
            return False
        if st == _S_SUB_CMD:
            if self.on_cmd is not None:  # no cmd subscription unless commands are configured
                self.subscribe(self.t_cmd, 1)
            self._step = _S_BIRTH if self.birth is not None else _S_READY
            return False
        if st == _S_BIRTH:
            s.arm(self.op_timeout_ms)
            c.publish(self.t_birth, self.birth, True, 1)
            # connected from the next call: what the caller sends first (the publisher's
            # state) waits its own round trip in a later turn of the loop
            self._step = _S_READY
            return False
        self._step = _S_IDLE
        self.connected = True
        self.ever_connected = True
        self.connects += 1
        self._backoff = 0
        self._ping_sent = None
        self.last_error = None
        return True

    def _failed(self, e):
        self.failures += 1
        self.last_error = _describe(e)
        self._drop()
        # exponential backoff with full jitter over the upper half: [b/2, b)
        b = self._backoff * 2 if self._backoff else self.backoff_min
        if b > self.backoff_max:
            b = self.backoff_max
        self._backoff = b
        half = b // 2
        self._next_try = self.clock.ticks_add(self.clock.ticks_ms(), half + self._rand(half + 1))

    def _drop(self):
        if self.connected:
            self.disconnects += 1
        self.connected = False
        if self._step == _S_TCP:
            self._addr = None  # unreachable: resolve again next time (the address may move)
        self._step = _S_IDLE
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def close(self, clean=True):
        """Orderly DISCONNECT (the broker then drops the will: publish death first)."""
        if self.connected and clean:
            try:
                self.sock.arm(self.op_timeout_ms)
                self.client.disconnect()
            except OSError:
                pass
        self._drop()
        self.disconnects += 0

    # --- traffic -----------------------------------------------------------------------
    def publish(self, topic, payload, qos=1, retain=False):
        """Publish; for qos 1 returns after the PUBACK. Raises OSError (session dropped)."""
        if not self.connected:
            raise OSError(errno.ENOTCONN)
        s = self.sock
        s.arm(self.op_timeout_ms)
        c = self.client
        if qos and c.pid >= 0xFFFF:
            c.pid = 0  # umqtt adds 1 first: the next id is 1, never 0 (header comment)
        try:
            c.publish(topic, payload, retain, qos)
            if qos == 0:
                s.flush()
        except Exception as e:
            self._failed(e)
            raise OSError(errno.ECONNRESET)

    def poll(self):
        """Handle whatever the broker sent (ack/cmd messages, PINGRESP) and keep the
        session alive. Bounded: reads only what is waiting. Raises OSError when the
        session died (and drops it)."""
        if not self.connected:
            return
        s = self.sock
        try:
            n = 0
            while n < 8 and s.readable():
                s.arm(self.op_timeout_ms)
                self.client.check_msg()
                n += 1
            clock = self.clock
            now = clock.ticks_ms()
            ka = self.keepalive_s * 1000  # at most 98 Ms with the grace: < 2**29
            if ka:
                # a negative distance: the last byte is more than 6.2 days old (wrapped)
                d = clock.ticks_diff(now, s.last_rx)
                if d > ka + ka // 2 or d < 0:
                    raise OSError(errno.ETIMEDOUT)  # no PINGRESP: half-open connection
                d = clock.ticks_diff(now, s.last_tx)
                if d > ka // 2 or d < 0:
                    s.arm(self.op_timeout_ms)
                    self.client.ping()
                    s.flush()
        except Exception as e:
            self._failed(e)
            raise OSError(errno.ECONNRESET)

    def _next_pid(self):
        c = self.client
        c.pid = 1 if c.pid >= 0xFFFF else c.pid + 1
        return c.pid

    def subscribe(self, topic, qos=1):
        """SUBSCRIBE with a variable-length remaining length (MQTT 3.1.1 §3.8), then wait for
        the SUBACK (handling what arrives meanwhile). Raises OSError / MQTTException."""
        s = self.sock
        s.arm(self.op_timeout_ms)
        pid = self._next_pid()
        h = self._hdr
        h[0] = 0x82
        n = 2 + 2 + len(topic) + 1  # packet id, topic length, topic, requested QoS
        i = 1
        while n > 0x7F:
            h[i] = (n & 0x7F) | 0x80
            n >>= 7
            i += 1
        h[i] = n
        h[i + 1] = pid >> 8
        h[i + 2] = pid & 0xFF
        h[i + 3] = len(topic) >> 8
        h[i + 4] = len(topic) & 0xFF
        s.write(h, i + 5)
        s.write(topic)
        h[0] = qos
        s.write(h, 1)
        while True:
            op = self.read_msg()
            if op == 0x90:
                r = s.read(4)  # remaining length 3, packet id, return code
                if r[0] != 3 or (r[1] << 8 | r[2]) != pid:
                    raise OSError(_EPROTO)
                if r[3] == 0x80:
                    raise _mqtt.MQTTException(0x80)
                return
            if op is not None:
                raise OSError(_EPROTO)  # nothing else is due before the SUBACK

    def _varlen(self):
        s = self._skip
        n = 0
        sh = 0
        while sh < 28:  # at most 4 bytes (§2.2.3)
            self.sock.readinto(s[0:1])
            b = s[0]
            n |= (b & 0x7F) << sh
            if not b & 0x80:
                return n
            sh += 7
        raise OSError(_EPROTO)

    def _drop_bytes(self, n):
        s = self.sock
        sk = self._skip
        while n > 0:
            k = n if n < _SKIP else _SKIP
            s.arm(self.op_timeout_ms)  # a deadline per chunk: progress keeps it going
            s.readinto(sk[0:k])
            n -= k

    def read_msg(self):
        """umqtt's wait_msg with bounded memory: the first byte of a packet (None when idle
        in check_msg); a PUBLISH is handled here (dispatched, or discarded when its payload
        is over max_in or its topic is not ack/cmd) and acknowledged; any other packet's
        type is returned with its body unread, as umqtt's callers expect."""
        s = self.sock
        res = s.read(1)
        s.setblocking(True)
        if res is None:
            return None
        op = res[0]
        if op == 0xD0:  # PINGRESP
            if self._varlen():
                raise OSError(_EPROTO)
            return None
        if op & 0xF0 != 0x30:
            return op
        qos = (op >> 1) & 3
        if qos == 3:
            raise OSError(_EPROTO)
        sz = self._varlen()
        sk = self._skip
        s.readinto(sk[0:2])
        tl = sk[0] << 8 | sk[1]
        sz -= tl + 2
        topic = None
        if tl <= len(self.t_cmd) or tl <= len(self.t_ack):
            topic = s.read(tl)
        else:
            self._drop_bytes(tl)
        pid = 0
        if qos:
            s.readinto(sk[0:2])
            pid = sk[0] << 8 | sk[1]
            sz -= 2
        if sz < 0:
            raise OSError(_EPROTO)
        if topic is None or sz > self.max_in or (topic != self.t_ack and topic != self.t_cmd):
            self.refused_in += 1
            self._drop_bytes(sz)
        else:
            # RETAIN set: from the broker's retained store, not sent now (§3.3.1.3)
            self.retained = op & 1 == 1
            # One heap block of its size per message, a fresh object the handler may keep:
            # s.read() would allocate twice (a bytearray, then bytes), and on a fragmented
            # 64K heap the second 2 KiB block was not there (MemoryError dropped the
            # session; fuzz). No block at all: refused and counted like an oversized
            # message; the session goes on, in step with the broker.
            try:
                msg = bytearray(sz)
            except MemoryError:
                msg = None
                self._drop_bytes(sz)
            if msg is not None:
                s.readinto(memoryview(msg))
            if msg is None:
                self.refused_in += 1
            else:
                try:
                    self._dispatch(topic, msg)
                except MemoryError:  # its handler found no room to keep it: the same
                    self.refused_in += 1
        if qos:
            # PUBACK (QoS 1); QoS 2 is never granted (subscriptions ask for 1) but a PUBREC
            # keeps a broker that sends one in step.
            h = self._hdr
            h[0] = 0x40 if qos == 1 else 0x50
            h[1] = 2
            h[2] = pid >> 8
            h[3] = pid & 0xFF
            s.write(h, 4)
            s.flush()  # now, not at the next read: an idle node would hold it until its ping
        return None

    def _dispatch(self, topic, msg):
        if topic == self.t_ack:
            if self.on_ack is not None:
                self.on_ack(msg)
        elif topic == self.t_cmd:
            if self.on_cmd is not None:
                self.on_cmd(msg)


def _describe(e):
    if _tls is not None and isinstance(e, _tls.TlsError):
        return e.args[0]
    if isinstance(e, _mqtt.MQTTException):
        code = e.args[0] if e.args else 0
        why = {1: "protocol version refused", 2: "client id rejected", 3: "server unavailable",
               4: "bad user name or password", 5: "not authorised"}.get(code, "code %s" % code)
        return "MQTT: connection refused by broker: " + why
    if isinstance(e, OSError):
        code = e.args[0] if e.args else 0
        name = {errno.ETIMEDOUT: "timed out", errno.ECONNREFUSED: "connection refused",
                errno.ECONNRESET: "connection reset", _EPIPE: "connection closed by the broker",
                _EPROTO: _MALFORMED}.get(code, "errno %s" % code)
        return "MQTT: " + name
    if isinstance(e, AssertionError):  # umqtt.simple checks what it reads with assert
        return "MQTT: " + _MALFORMED
    return "MQTT: %s %s" % (type(e).__name__, e)


_MALFORMED = "protocol error (malformed or unexpected packet from the broker)"


def _rand(n):
    if n <= 1:
        return 0
    try:
        import random
        return random.getrandbits(24) % n
    except ImportError:
        return time.ticks_ms() % n
