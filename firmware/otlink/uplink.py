# MQTT session on umqtt.simple (wrapped, not forked): deadlines on every socket wait,
# TCP_NODELAY, write coalescing, TLS through otlink.hal.tls, keepalive pings, a retained
# last will carrying the death state, retained birth, subscriptions to ack and cmd, and
# reconnects with exponential backoff and jitter. See docs/uplink.md.
#
# Errors: the session raises OSError (or TlsError / MQTTException on connect) and marks
# itself down; the Publisher (the supervisor) decides when to call connect() again, which
# honours the backoff. Nothing here waits without a deadline.
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


class DeadlineSocket:
    """The socket umqtt.simple sees. Every read/write waits with select.poll against one
    deadline armed by the Uplink before each MQTT operation; past it, OSError(ETIMEDOUT).
    Writes are gathered in a preallocated buffer and sent as one segment before the next
    read, on flush() or when full (umqtt writes a packet in 4-6 small pieces). write() into
    the buffer allocates nothing (tests/firmware/test_uplink.py checks it under heap_lock)."""

    def __init__(self, out, timeout_ms):
        self.raw = socket.socket()
        self._io = self.raw
        self._poll = select.poll()
        self._poll.register(self.raw, _POLLIN)
        self._polled = self.raw
        self._deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        self._peek = False  # umqtt.check_msg(): the first read returns None when idle
        self._out = out  # the Uplink's buffer, allocated once (no 2 KiB per reconnect)
        self._outmv = memoryview(out)
        self._nout = 0
        self.nodelay = False
        self.last_rx = time.ticks_ms()
        self.last_tx = self.last_rx
        self.tls = None

    def arm(self, timeout_ms):
        self._deadline = time.ticks_add(time.ticks_ms(), timeout_ms)

    def left_ms(self):
        d = time.ticks_diff(self._deadline, time.ticks_ms())
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

    def connect(self, addr):
        self.raw.setblocking(False)
        try:
            self.raw.connect(addr)
        except OSError as e:
            if e.args[0] != errno.EINPROGRESS:
                raise
        self._poll.modify(self.raw, _POLLOUT)
        for _obj, got in self._poll.ipoll(self.left_ms()):
            if got & (_POLLERR | _POLLHUP):
                raise OSError(errno.ECONNREFUSED)
            break
        else:
            raise OSError(errno.ETIMEDOUT)
        try:
            self.raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
            self.nodelay = True
        except (OSError, AttributeError):
            pass  # port without it: correct, only slower

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
        if self._nout:
            self.flush()
        buf = bytearray(n)
        mv = memoryview(buf)
        got = 0
        while got < n:
            try:
                r = self._io.readinto(mv[got:])
            except OSError as e:
                if e.args[0] != errno.EAGAIN:
                    raise
                r = None
            if r is None:
                if self._peek and got == 0:
                    return None
                self._wait(_POLLIN)
                continue
            if r == 0:
                raise OSError(errno.ECONNRESET)  # the broker closed the connection
            got += r
        self.last_rx = time.ticks_ms()
        return bytes(buf)

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
        self.last_tx = time.ticks_ms()

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
    # Stands in for umqtt.simple's `socket` module global so its connect() builds a
    # DeadlineSocket; getaddrinfo stays the platform's (use an IP literal to avoid DNS waits).
    def __init__(self):
        self.owner = None

    def socket(self, *args):
        return self.owner._new_socket()

    def getaddrinfo(self, host, port, *args):
        return socket.getaddrinfo(host, port)


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
    on_ack(msg) / on_cmd(msg) are called from inside MQTT reads (keep them short).
    rand: a function returning an int in [0, n) for backoff jitter (random.getrandbits based
    by default)."""

    def __init__(self, mqtt_cfg, node_cfg, clock, on_ack=None, on_cmd=None, rand=None,
                 out_size=2048, op_timeout_ms=5000, connect_timeout_ms=5000):
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
        self.birth = None
        self.will = None

    # --- connection --------------------------------------------------------------------
    def _new_socket(self):
        s = DeadlineSocket(self._out, self.connect_timeout_ms)
        self.sock = s
        return s

    def due(self):
        """True when a (re)connect attempt is allowed now by the backoff schedule."""
        return time.ticks_diff(self.clock.ticks_ms(), self._next_try) >= 0

    def wait_ms(self):
        """ms until the next attempt is allowed (0 when due)."""
        d = time.ticks_diff(self._next_try, self.clock.ticks_ms())
        return d if d > 0 else 0

    def connect(self, birth=None, will=None):
        """One bounded attempt (at most connect_timeout_ms plus the TLS handshake). Returns
        True when connected. Never raises for network, broker or TLS trouble: records
        last_error, counts the failure and schedules the next try (backoff with jitter)."""
        if self.connected:
            return True
        if not self.due():
            return False
        if birth is not None:
            self.birth = bytes(birth)
        if will is not None:
            self.will = bytes(will)
        cfg = self.cfg
        client_id = _b(cfg["client_id"])
        user = _b(cfg["user"])
        pw = _b(cfg["password"]) if user is not None else None
        c = _mqtt.MQTTClient(client_id, self.host, self.port, user=user,
                             password=pw if pw is not None else (b"" if user else None),
                             keepalive=self.keepalive_s, ssl=self.tls is not None,
                             ssl_params={"tls": self.tls} if self.tls else {})
        if self.will is not None:
            c.set_last_will(self.t_state, self.will, retain=True, qos=1)
        c.set_callback(self._dispatch)
        self.client = c
        _transport.owner = self
        try:
            c.connect(clean_session=True)  # the deadline socket bounds every wait in it
            s = self.sock
            s.arm(self.op_timeout_ms)
            c.subscribe(self.t_ack, 1)
            s.arm(self.op_timeout_ms)
            c.subscribe(self.t_cmd, 1)
            if self.birth is not None:
                s.arm(self.op_timeout_ms)
                c.publish(self.t_birth, self.birth, True, 1)
        except Exception as e:  # OSError, TlsError, MQTTException, bad CONNACK
            self._failed(e)
            return False
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
        self._next_try = time.ticks_add(self.clock.ticks_ms(), half + self._rand(half + 1))

    def _drop(self):
        if self.connected:
            self.disconnects += 1
        self.connected = False
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def lost(self, e):
        """The caller saw an operation fail: drop the session and back off."""
        self._failed(e)

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
        try:
            self.client.publish(topic, payload, retain, qos)
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
            now = time.ticks_ms()
            ka = self.keepalive_s * 1000
            if ka:
                if time.ticks_diff(now, s.last_rx) > ka + ka // 2:
                    raise OSError(errno.ETIMEDOUT)  # no PINGRESP: half-open connection
                if time.ticks_diff(now, s.last_tx) > ka // 2:
                    s.arm(self.op_timeout_ms)
                    self.client.ping()
                    s.flush()
        except Exception as e:
            self._failed(e)
            raise OSError(errno.ECONNRESET)

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
                errno.ECONNRESET: "connection reset"}.get(code, "errno %s" % code)
        return "MQTT: " + name
    return "MQTT: %s %s" % (type(e).__name__, e)


def _rand(n):
    if n <= 1:
        return 0
    try:
        import random
        return random.getrandbits(24) % n
    except ImportError:
        return time.ticks_ms() % n
