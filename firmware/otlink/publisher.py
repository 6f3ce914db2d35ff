# The publisher task: queue -> CBOR data batches -> MQTT, and acknowledgements back into the
# queue. It is the supervisor of the uplink session (connects, counts, backs off).
#
# Delivery modes (docs/uplink.md):
#   "broker"   the queue advances when the broker's PUBACK for a batch arrives;
#   "consumer" the queue advances only when the consumer's ack message says it stored the
#              batch (highest contiguous seq per boot), so a broker crash loses nothing.
# Backlog: what is in the queue when a session starts is replayed oldest first, flagged
# historical and rate-capped (replay_rate batches/s) while live readings keep going out
# (broker mode: the queue reads from a given seq with peek_from); in consumer mode strictly
# in order.
# Untimed readings of this boot are re-timed once the clock is set.
#
# Blocking: each step does at most one MQTT operation, each bounded by the uplink's
# deadline, then yields to the other tasks.
#
# Ticks wrap (hal/clock.py): a stored tick may be compared after an idle of any length (a
# replay deadline days after the last replay, the state time after a session that started
# without publishing state), when ticks_diff's distance has wrapped. Each one is judged by the
# range it can be in: a deadline is at most its own gap ahead of now (replay gap, linger),
# a past time never ahead, so a distance outside that range means "long ago": due.
import asyncio
import struct

from otlink.core import reading
from otlink.core.compat import const
from otlink.core.payload import DataEncoder, decode_ack, encode_birth, encode_state, \
    STATE_FIELDS, BufferFull
from otlink.core.queue.fmt import sdiff, wrap  # the queue's sequence arithmetic (RFC 1982)

_IDLE_MS = const(20)  # sleep when there is nothing to send
_ACK_TIMEOUT_MS = const(10000)  # consumer mode: resend from the oldest unacked after this
_INFLIGHT_MAX = const(8)  # consumer mode: batches sent and not yet acknowledged


class Publisher:
    def __init__(self, queue, uplink, clock, mqtt_cfg, birth_info, state_fn=None,
                 time_sync=None, ack_timeout_ms=_ACK_TIMEOUT_MS, inflight_max=_INFLIGHT_MAX):
        # mqtt_cfg: the validated "mqtt" section (core/config.py fills in every default)
        mode = mqtt_cfg["ack"]
        if mode not in ("broker", "consumer"):
            raise ValueError("mqtt.ack %r: want 'broker' or 'consumer'" % (mode,))
        self.q = queue
        self.up = uplink
        self.clock = clock
        self.mode = mode
        self.qos = mqtt_cfg["qos"]
        self.batch_max = mqtt_cfg["batch_max"]
        self.linger_ms = mqtt_cfg["linger_ms"]
        rate = mqtt_cfg["replay_rate"]
        self.replay_gap_ms = 1000 // rate if rate else 0
        self.state_ms = mqtt_cfg["state_interval_s"] * 1000
        self.ack_timeout_ms = ack_timeout_ms
        self.inflight_max = inflight_max
        self.state_fn = state_fn
        self.time_sync = time_sync
        self.enc = DataEncoder(mqtt_cfg["batch_bytes"], self.batch_max)
        self._rec = bytearray(reading.MAX_SIZE)  # re-timed copy of an untimed record
        self._off = bytearray(8)  # clock offset (epoch - uptime ms), little endian
        self._sbuf = bytearray(512)
        # birth_info: the encoded birth message (bytes, kept by reference: the agent's one
        # copy, app.encode_birth), or a dict of its fields, encoded here (tests, tools)
        if isinstance(birth_info, dict):
            birth_info = self._encode_birth(birth_info)
        self.birth = birth_info
        n = encode_state(self._sbuf, {"online": False, "boot": queue.boot})
        self.will = bytes(self._sbuf[:n])
        uplink.on_ack = self._on_ack
        # consumer acks signed with mqtt.ack_key (docs/security.md): only the trusted
        # consumer may make the queue drop readings
        self.ack_mac = None
        if mqtt_cfg.get("ack_key"):
            from otlink.core.auth import Hmac, parse_key

            self.ack_mac = Hmac(parse_key(mqtt_cfg["ack_key"]))
            self._ack_plain = bytearray(48)  # the unsigned ack the tag covers
        # stream cursors (seqs); None: from the oldest unacknowledged
        self._next = None  # next seq of the live / single stream
        self._hist = None  # next backlog seq, None when there is no backlog
        self._hist_end = None  # last backlog seq of this session (None: it had none)
        self._live_done = None  # broker mode while replaying: live delivered up to here
        self._inflight = []  # consumer mode: [last_seq, boot, sent_ticks]
        self._hold_until = None  # live: partial batch seen, wait for linger
        self._has_backlog = False
        self._replay_ok = clock.ticks_ms()  # next backlog batch not before (at most a gap ahead)
        self._state_at = clock.ticks_ms()  # last state message (never ahead)
        self.running = True
        # counters
        self.batches = 0
        self.readings = 0
        self.hist_batches = 0
        self.acks = 0
        self.ack_timeouts = 0
        self.bad_records = 0
        self.bad_acks = 0
        self.stale_acks = 0  # consumer acks outside the queue's unacknowledged range
        self.acks_forged = 0  # unsigned or forged acks refused (ack_key configured)
        self.retimed = 0

    def _encode_birth(self, b):
        size = 1024
        while True:
            buf = bytearray(size)
            try:
                n = encode_birth(buf, b["node"], b["fw"], b["config_hash"], b["boot"],
                                 b["points"])
                return bytes(buf[:n])
            except BufferFull:
                size *= 4
                if size > 65536:
                    raise

    # --- acknowledgements and commands (called from inside MQTT reads) -------------------
    def _on_ack(self, msg):
        if self.mode != "consumer":
            return
        if self.ack_mac is not None:
            msg = self._signed_ack(msg)
            if msg is None:
                self.acks_forged += 1
                return
        try:
            boot, seq = decode_ack(msg)
        except ValueError:
            self.bad_acks += 1
            return
        # The trusted consumer says it stored everything of this boot up to seq: honour it
        # whenever seq is an unacknowledged reading of that boot in the queue, whatever the
        # in-flight list says (an ack that arrives just after an ack timeout cleared it is
        # as good as any). Below the queue (already acknowledged, a retained ack seen again),
        # past its newest reading or of another boot: ignored, counted.
        q = self.q
        ok = False
        for s, b, _r, _n in q.peek_from(seq, 1):  # clamps a seq below the queue to its first
            ok = s == seq and b == boot
        if not ok:
            self.stale_acks += 1
            return
        q.ack(seq)
        self.acks += 1
        if self._has_backlog and sdiff(seq, self._hist_end) >= 0:
            # the backlog is stored: what follows is live, wherever the cursor stands (a
            # cursor below the queue reads from its first reading)
            self._has_backlog = False
        fl = self._inflight
        popped = False
        while fl and sdiff(seq, fl[0][0]) >= 0:
            fl.pop(0)
            popped = True
        if fl and popped:
            fl[0][2] = self.clock.ticks_ms()  # the next one's wait starts now

    def _signed_ack(self, msg):
        """The unsigned ack inside a signed one, or None. A signed ack is the ack's CBOR map
        with a fourth key "m": 32 bytes of HMAC-SHA256(ack_key, ack topic || LF || the
        three-key map), as its last entry (host: acktrack.sign_ack)."""
        n = len(msg)
        plain = self._ack_plain
        if n < 40 or n - 36 > len(plain) or msg[0] != 0xA4 or msg[n - 36] != 0x61 or \
                msg[n - 35] != 0x6D or msg[n - 34] != 0x58 or msg[n - 33] != 32:
            return None
        plain[0] = 0xA3
        for i in range(1, n - 36):
            plain[i] = msg[i]
        body = memoryview(plain)[:n - 36]
        if not self.ack_mac.verify(memoryview(msg)[n - 32:], self.up.t_ack, b"\n", body):
            return None
        return body

    # --- session ----------------------------------------------------------------------
    def _session_start(self):
        """A new session: whatever is queued now is backlog (historical)."""
        q = self.q
        self._inflight = []
        self._hold_until = None
        self._live_done = None
        depth = q.depth()
        self._hist = None
        self._hist_end = None
        self._next = None
        self._has_backlog = False
        if depth:
            first = None
            for seq, _b, _r, _n in q.peek(1):
                first = seq
            if first is not None:
                self._hist_end = wrap(first + depth - 1)
                if self.mode == "broker":
                    self._hist = first
                    self._next = wrap(self._hist_end + 1)
                else:
                    self._hist = None  # single stream: the flag comes from _hist_end
                    self._next = None
                self._has_backlog = True
        self._publish_state()

    def _records(self, start, n):
        if start is None:
            return self.q.peek(n)
        return self.q.peek_from(start, n)

    def _fill(self, start, historical, stop_seq):
        """Encode one batch from `start`; stop at a boot change, at stop_seq (inclusive,
        None: no limit) or when the encoder is full. Returns (count, full)."""
        enc = self.enc
        clock = self.clock
        retime = clock.is_set()
        qboot = self.q.boot
        boot = None
        full = False
        for seq, b, rec, n in self._records(start, self.batch_max):
            if stop_seq is not None and sdiff(seq, stop_seq) > 0:
                full = True
                break
            if boot is None:
                boot = b
                enc.start(b, historical)
            elif b != boot:
                full = True
                break
            if rec[reading.OFF_FLAGS] & reading.FLAG_UNTIMED and retime and b == qboot:
                if retime is True:  # once per batch: epoch - uptime, as 8 bytes
                    struct.pack_into("<q", self._off, 0, clock.to_epoch(0))
                    retime = 1
                # copy with uptime + offset added byte by byte (an int sum would be a heap
                # object on 32-bit ports)
                r = self._rec
                off = self._off
                at = reading.OFF_T  # t: 8 bytes, then the value
                for k in range(at):
                    r[k] = rec[k]
                c = 0
                for k in range(at, at + 8):
                    c += rec[k] + off[k - at]
                    r[k] = c & 0xFF
                    c >>= 8
                for k in range(at + 8, n):
                    r[k] = rec[k]
                r[reading.OFF_FLAGS] &= ~reading.FLAG_UNTIMED
                rec = r
                self.retimed += 1
            try:
                ok = enc.add(seq, rec, n)
            except ValueError:
                if enc.count:
                    full = True
                    break
                # an unencodable record at the head: skip it rather than wedge the queue
                self.bad_records += 1
                return -1, seq
            if not ok:
                full = True
                break
        if boot is None:
            return 0, False
        if enc.count >= self.batch_max:
            full = True
        return enc.count, full

    def _send(self, historical):
        self.up.publish(self.up.t_data, self.enc.finish(), self.qos, False)
        self.batches += 1
        self.readings += self.enc.count
        if historical:
            self.hist_batches += 1

    # --- one step ---------------------------------------------------------------------
    def step(self):
        """Send at most one batch. Returns True when something was sent. Raises OSError
        when the session dropped (the uplink is then down and backing off)."""
        now = self.clock.ticks_ms()
        if self.mode == "consumer":
            fl = self._inflight
            d = self.clock.ticks_diff(now, fl[0][2]) if fl else 0
            if d > self.ack_timeout_ms or d < 0:  # d < 0: sent more than 6.2 days ago
                # The consumer did not confirm: send again from the oldest unacknowledged.
                self.ack_timeouts += 1
                self._inflight = []
                self._next = None
                # a resend that starts inside the backlog is the backlog again: flagged
                for seq, _b, _r, _n in self.q.peek(1):
                    if self._hist_end is not None and sdiff(seq, self._hist_end) <= 0:
                        self._has_backlog = True
                return False
            if len(fl) >= self.inflight_max:
                return False
        # live (or single) stream first, unless it is lingering on a partial batch
        hold = self._hold_until
        if hold is None or self._passed(now, hold, self.linger_ms):
            hist_flag = False
            stop = None
            if self._hist is None and self._has_backlog:
                # single stream still inside the backlog: flag it and split at its end
                if self._next is None or sdiff(self._next, self._hist_end) <= 0:
                    hist_flag = True
                    stop = self._hist_end
                else:
                    self._has_backlog = False
            cnt, full = self._fill(self._next, hist_flag, stop)
            if cnt < 0:  # skipped a bad record
                self._delivered(full, None)
                return True
            if cnt:
                if full or hist_flag or hold is not None or self.linger_ms == 0:
                    self._hold_until = None
                    self._send(hist_flag)
                    self._delivered(self.enc.last_seq, self.enc.boot)
                    return True
                self._hold_until = self.clock.ticks_add(now, self.linger_ms)
            else:
                self._hold_until = None
        # backlog replay, rate-capped, between live batches
        if self._hist is not None:
            if self.replay_gap_ms and not self._passed(now, self._replay_ok, self.replay_gap_ms):
                return False
            cnt, full = self._fill(self._hist, True, self._hist_end)
            if cnt < 0:
                self._hist_delivered(full)
                return True
            if cnt == 0:
                self._hist_delivered(self._hist_end)
                return False
            self._send(True)
            self._replay_ok = self.clock.ticks_add(now, self.replay_gap_ms)
            self._hist_delivered(self.enc.last_seq)
            return True
        return False

    def _passed(self, now, deadline, gap):
        """now is at or past deadline, which was set at most gap ms ahead of some earlier now:
        a distance of more than gap before it means the deadline is from long ago (its
        ticks_diff wrapped after an idle of more than 6.2 days)."""
        d = self.clock.ticks_diff(now, deadline)
        return d >= 0 or d < -gap

    def state_due(self):
        """The periodic state message is due: state_ms since the last one, or a distance that
        went negative (more than 6.2 days ago: e.g. a session that started without one)."""
        d = self.clock.ticks_diff(self.clock.ticks_ms(), self._state_at)
        return d >= self.state_ms or d < 0

    def _delivered(self, last, boot):
        """The live/single stream published up to `last`."""
        nxt = wrap(last + 1)
        if self.mode == "consumer" and boot is not None:
            self._inflight.append([last, boot, self.clock.ticks_ms()])
            self._next = nxt
            return
        if self.mode == "consumer":  # a skipped bad record: only when it is the oldest
            if not self._inflight:
                self.q.ack(last)
            self._next = nxt
            return
        if self._hist is None:
            self.q.ack(last)  # PUBACK received (or qos 0): the oldest records are out
            self._next = None
        else:
            self._live_done = last  # cannot ack past the unsent backlog yet
            self._next = nxt

    def _hist_delivered(self, last):
        self.q.ack(last)
        if sdiff(last, self._hist_end) >= 0:
            self._hist = None  # backlog done: one stream again
            self._has_backlog = False
            if self._live_done is not None:
                self.q.ack(self._live_done)
                self._live_done = None
        else:
            self._hist = wrap(last + 1)

    # --- state ------------------------------------------------------------------------
    def state_fields(self, online=True):
        st = {}
        if self.state_fn is not None:
            try:
                extra = self.state_fn()
            except Exception:  # a broken state source must not stop delivery
                extra = {}
            for k in extra:
                if k in STATE_FIELDS:
                    st[k] = extra[k]
            sl = extra.get("slaves")
            if isinstance(sl, dict):
                se = {}
                for a in sl:
                    v = sl[a]
                    if isinstance(v, dict):
                        v = v.get("errors", 0)
                    if isinstance(a, int) and isinstance(v, int):
                        se[a] = v
                st["slave_errors"] = se
        q = self.q
        qs = q.stats()
        st["online"] = online
        st["boot"] = q.boot
        st["queue_depth"] = qs.get("depth", 0)
        st["drops"] = qs.get("drops", 0)
        st["queue_corrupt"] = qs.get("corrupt_skipped", 0)
        age = qs.get("oldest_age_ms")
        if age is None and qs.get("oldest_t_ms") is not None and self.clock.is_set():
            age = self.clock.now_ms() - qs["oldest_t_ms"]
        st["oldest_unsent_s"] = (age or 0) // 1000
        st["uptime_s"] = self.clock.uptime_ms() // 1000
        st["clock_set"] = self.clock.is_set()
        if self.clock.is_set():
            st["t"] = self.clock.now_ms()
        st["mqtt_reconnects"] = self.up.connects - 1 if self.up.connects else 0
        st["msgs_refused"] = getattr(self.up, "refused_in", 0)
        if self.ack_mac is not None:
            st["acks_forged"] = self.acks_forged
        return st

    def _publish_state(self, online=True):
        st = self.state_fields(online)
        if not online:
            st["stopped"] = True  # a clean stop: the last will has neither this nor uptime
        try:
            n = encode_state(self._sbuf, st)
        except (ValueError, BufferFull):
            for k in ("point_errors", "slave_errors", "reset_cause", "sensor_errors",
                      "task_errors"):
                st.pop(k, None)
            n = encode_state(self._sbuf, st)
        self.up.publish(self.up.t_state, memoryview(self._sbuf)[:n], 1, True)
        self._state_at = self.clock.ticks_ms()

    # --- the task ---------------------------------------------------------------------
    async def run(self):
        up = self.up
        clock = self.clock
        while self.running:
            if not up.connected:
                if up.due():
                    if not clock.is_set() and self.time_sync is not None:
                        try:
                            self.time_sync()
                        except Exception:  # NTP is best effort; readings stay flagged
                            pass
                    if up.connect(self.birth, self.will):
                        try:
                            self._session_start()
                        except OSError:
                            pass
                        await asyncio.sleep_ms(0)
                        continue
                w = up.wait_ms()
                await asyncio.sleep_ms(w if 0 < w < 100 else 100 if w else _IDLE_MS)
                continue
            sent = False
            try:
                up.poll()
                sent = self.step()
                if self.state_due():
                    self._publish_state()
            except OSError:
                # the uplink dropped the session and scheduled a retry; start over then
                self._inflight = []
                continue
            await asyncio.sleep_ms(0 if sent else _IDLE_MS)

    def stop(self, death=True):
        """Publish the stopped state (online false, stopped true, the last figures: the
        broker drops the will on a clean DISCONNECT, so without it the retained state would
        say online for good) and close the session."""
        self.running = False
        if self.up.connected and death:
            try:
                self._publish_state(online=False)
            except OSError:
                pass
            except Exception:  # a state that cannot be built: the death state still goes
                try:
                    self.up.publish(self.up.t_state, self.will, 1, True)
                except OSError:
                    pass
        self.up.close()
