"""`otlink store --nats`: the historian's data path through a NATS cluster with JetStream.

Nodes publish to the MQTT gateway of any NATS server (MQTT 3.1.1, unchanged firmware). The
gateway turns each topic into a subject (`/` becomes `.`, a `.` inside a level becomes `//`):
`otlink/plant1/m7/data` is `otlink.plant1.m7.data`. A JetStream stream (default `OTLINK`,
replicated on 3 servers, work-queue retention) captures the data subjects; every sink of the
group pulls from ONE durable consumer named after `--group`, so each batch goes to one sink
at a time, and a sink acknowledges a message to JetStream only after the database COMMIT
that holds it. A message not acknowledged within the consumer's ack wait (a sink killed, a
stream leader lost with the ack) is delivered again, to any member; the primary key of the
readings table makes that harmless.

JetStreamFeed runs nats-py in a thread of its own (an asyncio loop) and hands messages to
the Store as (topic, payload, ack, gen, retain) items, the shape MQTT messages have there:
one writer, one transaction rule, one acknowledgement rule for both transports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

__all__ = ["JetStreamFeed", "STREAM", "subject_to_topic", "topic_to_subject"]

STREAM = "OTLINK"
ACK_WAIT_S = 30.0  # JetStream redelivers what a sink has not acknowledged in this time
MAX_ACK_PENDING = 4096  # messages out at the group's sinks, not yet acknowledged
BACKLOG_MAX = 4  # fetch no more while this many fetches wait in the Store's queue


def topic_to_subject(topic: str) -> str:
    """The NATS subject the MQTT gateway gives a topic (or a filter: + is *, # is >)."""
    out = []
    for level in topic.split("/"):
        level = level.replace(".", "//")
        out.append({"+": "*", "#": ">"}.get(level, level))
    return ".".join(out)


def subject_to_topic(subject: str) -> str:
    """The MQTT topic of a subject the gateway made (inverse of topic_to_subject)."""
    return "/".join(t.replace("\x00", ".") for t in
                    subject.replace("//", "\x00").split("."))


class FeedError(ConnectionError):
    """The NATS side cannot be used (no server reachable, the stream cannot be made)."""


class JetStreamFeed:
    """Data messages of one durable JetStream pull consumer shared by a group of sinks.

    servers: NATS URLs (nats://host:port, tls://...); the client fails over between them.
    subject: the data subjects (e.g. otlink.*.*.data); the stream is made to capture them
    when it does not exist yet. user/password/tls: the NATS account (the one the MQTT side
    uses: one account serves both)."""

    def __init__(self, servers: list[str], group: str, subject: str, stream: str = STREAM,
                 replicas: int = 3, ack_wait: float = ACK_WAIT_S, fetch_max: int = 64,
                 user: str | None = None, password: str | None = None, tls=None,
                 extra_subjects: tuple[str, ...] = (), held: bool = False) -> None:
        if not servers:
            raise ValueError("--nats: one or more NATS server URLs wanted")
        for u in servers:
            if "://" not in u:
                raise ValueError(f"--nats {u!r}: a URL wanted, e.g. nats://host:4222")
        self.servers, self.group, self.subject = servers, group, subject
        self.stream, self.replicas, self.ack_wait = stream, replicas, ack_wait
        self.fetch_max, self.user, self.password, self.tls = fetch_max, user, password, tls
        self.extra_subjects = extra_subjects  # births, states, acks: every sink gets them
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.held = held  # connected but not fetching until release() (a benchmark's start)
        self.nc = None
        self.js = None
        self.sub = None
        self.put = None  # Store's queue put
        self.note = print
        self.pending = None  # callable: items waiting in the Store's queue
        self.fetched = self.acks = self.fetch_errors = 0
        self.replicas_made: int | None = None

    # --- life cycle (called from the Store's threads) -------------------------------------
    def start(self, put, note, pending, timeout: float = 10.0) -> None:
        self.put, self.note, self.pending = put, note, pending
        self._thread = threading.Thread(target=self.loop.run_forever, name="otlink-nats",
                                        daemon=True)
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._setup(timeout), self.loop)
        try:
            fut.result(timeout + 5)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            self.stop()
            raise FeedError(f"NATS {', '.join(self.servers)}: not ready within "
                            f"{timeout:g} s") from None
        except BaseException:
            self.stop()
            raise
        self.loop.call_soon_threadsafe(self._start_pull)

    def _start_pull(self) -> None:
        self._pull_task = self.loop.create_task(self._pull())

    def stop(self) -> None:
        self._stopping = True
        if self._thread is None:
            return
        if self.nc is not None:
            fut = asyncio.run_coroutine_threadsafe(self._close(), self.loop)
            try:
                fut.result(5)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self._thread = None

    def release(self) -> None:
        self.held = False

    def pause(self) -> None:
        """Fetch no more (the Store is stopping; what it holds is still written and
        acknowledged)."""
        self._stopping = True

    def ack(self, msg) -> None:
        """Acknowledge one message to JetStream (after its COMMIT). Lost acks (a server
        going away) only mean a redelivery, which the primary key absorbs."""
        self.loop.call_soon_threadsafe(self._ack_soon, msg)

    def publish(self, subject: str, payload: bytes) -> None:
        """Publish on a core NATS subject (a node's ack: the MQTT gateway hands it to the
        node's subscription, on whichever server the node is connected to)."""
        self.loop.call_soon_threadsafe(self._publish_soon, subject, payload)

    # --- inside the loop --------------------------------------------------------------------
    def _ack_soon(self, msg) -> None:
        self.loop.create_task(self._ack(msg))

    async def _ack(self, msg) -> None:
        try:
            await msg.ack()
            self.acks += 1
        except Exception:
            pass  # delivered again after ack_wait; stored once all the same

    def _publish_soon(self, subject: str, payload: bytes) -> None:
        self.loop.create_task(self._publish(subject, payload))

    async def _publish(self, subject: str, payload: bytes) -> None:
        try:
            await self.nc.publish(subject, payload)
        except Exception as e:
            self.note(f"NATS: cannot publish on {subject}: {e}")

    async def _close(self) -> None:
        task = getattr(self, "_pull_task", None)
        if task is not None:
            task.cancel()
            try:
                await task
            except BaseException:
                pass
        try:
            await self.nc.flush(2)
        except Exception:
            pass
        try:
            await self.nc.close()
        except Exception:
            pass

    async def _setup(self, timeout: float) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, \
            StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        async def said(what, e=None):
            if not self._stopping:
                self.note(f"NATS: {what}" + (f": {e}" if e else ""))

        last = {"error": None, "said": 0.0}

        async def on_error(e):
            # before the first connection: kept for start()'s message; after: said, at
            # most every 5 s (a server down is retried every half second)
            text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            last["error"] = text
            if self.nc is not None and time.monotonic() - last["said"] > 5:
                last["said"] = time.monotonic()
                await said("error", text)

        async def on_disconnect():
            await said("disconnected; reconnecting to another server of the cluster")

        async def on_reconnect():
            await said(f"reconnected to {self.nc.connected_url.netloc}")

        deadline = time.monotonic() + timeout
        try:
            # reconnects go on forever once connected; the first connection has `timeout`
            self.nc = await asyncio.wait_for(nats.connect(
                self.servers, name="otlink-store", user=self.user, password=self.password,
                tls=self.tls, connect_timeout=2, reconnect_time_wait=0.5,
                max_reconnect_attempts=-1, error_cb=on_error, disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect), timeout)
        except asyncio.TimeoutError:
            raise FeedError(f"NATS {', '.join(self.servers)}: cannot connect within "
                            f"{timeout:g} s: {last['error'] or 'no answer'}") from None
        except Exception as e:
            raise FeedError(f"NATS {', '.join(self.servers)}: cannot connect: "
                            f"{type(e).__name__}: {e}") from None
        self.js = self.nc.jetstream(timeout=5)
        # the stream: made when missing (a cluster of fewer servers than --replicas: as
        # many replicas as it has; a single server: one, said loudly)
        while True:
            try:
                info = await self.js.stream_info(self.stream)
                have = info.config.subjects or []
                if self.subject not in have:
                    await said(f"stream {self.stream} exists with subjects {have}; "
                               f"{self.subject} is not among them: this sink may get "
                               "nothing (see the quiet-group warning)")
                self.replicas_made = info.config.num_replicas
                break
            except NotFoundError:
                pass
            except Exception as e:  # no JetStream leader yet (a cluster just started)
                if time.monotonic() > deadline:
                    raise FeedError(f"NATS: stream {self.stream}: {e}") from None
                await asyncio.sleep(0.25)
                continue
            cfg = StreamConfig(name=self.stream, subjects=[self.subject],
                               retention=RetentionPolicy.WORK_QUEUE,
                               storage=StorageType.FILE, num_replicas=self.replicas)
            try:
                await self.js.add_stream(cfg)
                self.replicas_made = self.replicas
                break
            except Exception as e:
                text = str(e)
                if self.replicas > 1 and ("non-clustered" in text or "replicas" in text
                                          or "insufficient" in text):
                    await said(f"stream {self.stream}: {self.replicas} replicas refused "
                               f"({text.strip()}); made with 1: no failover")
                    self.replicas = 1
                    continue
                if time.monotonic() > deadline:
                    raise FeedError(f"NATS: cannot make stream {self.stream}: {e}") from None
                await asyncio.sleep(0.25)
        cc = ConsumerConfig(durable_name=self.group, ack_policy=AckPolicy.EXPLICIT,
                            deliver_policy=DeliverPolicy.ALL, ack_wait=self.ack_wait,
                            max_ack_pending=MAX_ACK_PENDING, max_deliver=-1,
                            filter_subject=self.subject)
        while True:
            try:
                self.sub = await self.js.pull_subscribe(self.subject, durable=self.group,
                                                        stream=self.stream, config=cc)
                break
            except Exception as e:
                if time.monotonic() > deadline:
                    raise FeedError(f"NATS: cannot join consumer {self.group} of stream "
                                    f"{self.stream}: {e}") from None
                await asyncio.sleep(0.25)
        for subj in self.extra_subjects:
            await self.nc.subscribe(subj, cb=self._on_core)

    async def _on_core(self, msg) -> None:
        self.put((subject_to_topic(msg.subject), bytes(msg.data), None, 0, False))

    async def _pull(self) -> None:
        import nats.errors
        from nats.js.errors import FetchTimeoutError
        said_at = 0.0
        while not self._stopping:
            if self.held or self.pending() > BACKLOG_MAX * self.fetch_max:  # writer behind
                await asyncio.sleep(0.02)
                continue
            try:
                msgs = await self.sub.fetch(self.fetch_max, timeout=1)
            except (FetchTimeoutError, asyncio.TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as e:  # a leader election, a server gone: retry
                self.fetch_errors += 1
                if time.monotonic() - said_at > 5 and not self._stopping:
                    self.note(f"NATS: fetch from {self.stream}/{self.group}: "
                              f"{type(e).__name__}: {e}; retrying")
                    said_at = time.monotonic()
                await asyncio.sleep(0.2)
                continue
            for m in msgs:
                self.fetched += 1
                self.put((subject_to_topic(m.subject), bytes(m.data),
                          _Acker(self, m), 0, False))


class _Acker:
    """The after-COMMIT acknowledgement of one JetStream message (called by the writer)."""

    __slots__ = ("feed", "msg")

    def __init__(self, feed: JetStreamFeed, msg) -> None:
        self.feed, self.msg = feed, msg

    def __call__(self) -> None:
        self.feed.ack(self.msg)
