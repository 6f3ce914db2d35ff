"""`otlink bridge`: republish the fleet's readings for tools that cannot read otlink's CBOR.

Optional, and off unless started. It subscribes to the nodes' stream like `otlink monitor`
(same decoding, deduplication and consumer acknowledgement: acktrack.Track, docs/historian.md
"First contact") and publishes, to the same broker:

--json            one JSON object per reading (QoS 1, not retained) on
                  <out-prefix>/json/<site>/<node>/<point>, for Node-RED, Telegraf's
                  mqtt_consumer (data_format "json_v2" or "json") or any MQTT client; and
                  each node's availability, "online" or "offline" (retained), on
                  <out-prefix>/status/<site>/<node>/availability, from its state messages
                  (its last will, or a clean stop). A point name that holds / + or # has
                  them as _ in its topic level (the JSON carries the name as it is).
--homeassistant   Home Assistant MQTT discovery (implies --json): for every point of a
                  node's birth table a retained config on
                  <discovery-prefix>/<sensor|binary_sensor>/<unique id>/config naming the
                  JSON topic as its state topic, its unit, the device class the unit implies
                  and the node's availability topic. A point that leaves the birth table gets
                  an empty retained config (Home Assistant then removes the entity).

A reading counts as stored, and so may be acknowledged to the node, only once the broker has
acknowledged (PUBACK) every message republished for it: with consumer acks (the default) a
bridge that stops, or a broker that goes away, loses nothing. Run it --no-ack beside another
acknowledging consumer (a historian) of the same nodes: one acknowledging consumer per node.
A payload that is not a valid otlink message (malformed, too large) is reported on stderr,
counted and skipped; the bridge carries on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import ssl
import sys
import threading
from typing import IO

import paho.mqtt.client as mqtt

from otlink_tools.acktrack import ACK_WAIT_S, ack_key
from otlink_tools.decode import valid_prefix
from otlink_tools.monitor import Monitor, check_topic_args
from otlink_tools.monitor_formats import finite_row, make_row, plural

PUBACK_TIMEOUT_S = 10.0  # a republished batch not acknowledged by then is not stored
ROW_FIELDS = ("value", "unit", "time", "t_ms", "uptime_ms", "seq", "boot", "err", "error",
              "flag", "note", "historical", "untimed", "raw", "pid")

# unit -> (device class, unit Home Assistant expects for it, state class)
_HA_UNITS: dict[str, tuple[str, str, str]] = {
    "V": ("voltage", "V", "measurement"), "mV": ("voltage", "mV", "measurement"),
    "A": ("current", "A", "measurement"), "mA": ("current", "mA", "measurement"),
    "W": ("power", "W", "measurement"), "kW": ("power", "kW", "measurement"),
    "VA": ("apparent_power", "VA", "measurement"),
    "var": ("reactive_power", "var", "measurement"),
    "Wh": ("energy", "Wh", "total_increasing"), "kWh": ("energy", "kWh", "total_increasing"),
    "MWh": ("energy", "MWh", "total_increasing"),
    "Hz": ("frequency", "Hz", "measurement"),
    "°C": ("temperature", "°C", "measurement"), "degC": ("temperature", "°C", "measurement"),
    "°F": ("temperature", "°F", "measurement"), "degF": ("temperature", "°F", "measurement"),
    "K": ("temperature", "K", "measurement"),
    "%RH": ("humidity", "%", "measurement"),
    "Pa": ("pressure", "Pa", "measurement"), "hPa": ("pressure", "hPa", "measurement"),
    "kPa": ("pressure", "kPa", "measurement"), "bar": ("pressure", "bar", "measurement"),
    "mbar": ("pressure", "mbar", "measurement"), "psi": ("pressure", "psi", "measurement"),
    "m³": ("volume", "m³", "total_increasing"), "m3": ("volume", "m³", "total_increasing"),
    "m³/h": ("volume_flow_rate", "m³/h", "measurement"),
    "m3/h": ("volume_flow_rate", "m³/h", "measurement"),
    "L/min": ("volume_flow_rate", "L/min", "measurement"),
    "lx": ("illuminance", "lx", "measurement"),
}
_BINARY_TYPES = ("bit", "bool")


def topic_level(name: str) -> str:
    """A point name as one topic level: / + # and NUL become _, an empty name "_"."""
    out = "".join("_" if c in "/+#\0" else c for c in name)
    return out or "_"


def _id(raw: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in raw)


def unique_id(site: str, node: str, pid: int) -> str:
    """Home Assistant unique id (and discovery topic level): [A-Za-z0-9_-] only."""
    return _id(f"otlink_{site}_{node}_{pid}")


def availability_topic(out_prefix: str, site: str, node: str) -> str:
    """Five levels under a one-level prefix, like the JSON topics: never one of the nodes'
    own <prefix>/<site>/<node>/<kind> topics."""
    return f"{out_prefix}/status/{site}/{node}/availability"


def discovery(point: dict, site: str, node: str, birth: dict, out_prefix: str
              ) -> tuple[str, dict]:
    """(component, config) of one birth point for Home Assistant MQTT discovery."""
    binary = point.get("type") in _BINARY_TYPES
    uid = unique_id(site, node, point["id"])
    cfg: dict = {
        "name": point["name"],
        "unique_id": uid,
        "object_id": uid,
        "state_topic": f"{out_prefix}/json/{site}/{node}/{topic_level(point['name'])}",
        "value_template": "{{ value_json.value }}",
        "availability_topic": availability_topic(out_prefix, site, node),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {"identifiers": [_id(f"otlink_{site}_{node}")], "name": node,
                   "manufacturer": "otlink", "model": "otlink node",
                   "sw_version": birth.get("fw", ""), "suggested_area": site},
    }
    if binary:
        cfg["payload_on"] = "1"
        cfg["payload_off"] = "0"
        return "binary_sensor", cfg
    unit = point.get("unit") or ""
    if point.get("type") == "string":
        return "sensor", cfg
    known = _HA_UNITS.get(unit)
    if known:
        cfg["device_class"], cfg["unit_of_measurement"], cfg["state_class"] = known
    else:
        if unit:
            cfg["unit_of_measurement"] = unit
        cfg["state_class"] = "measurement"
    return "sensor", cfg


class Bridge(Monitor):
    """A Monitor whose output is MQTT: rows become JSON messages (and discovery configs),
    published through a second client so that PUBACKs can be awaited from the first
    client's message callback. Tests: start(); wait(...); stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, *, json_out: bool = True,
                 homeassistant: bool = False, out_prefix: str = "otlink",
                 discovery_prefix: str = "homeassistant", err: IO[str] | None = None,
                 puback_timeout: float = PUBACK_TIMEOUT_S, out_host: str | None = None,
                 out_port: int | None = None, **kw) -> None:
        if not (json_out or homeassistant):
            raise ValueError("nothing to republish: give --json and/or --homeassistant")
        for opt, v in (("--out-prefix", out_prefix), ("--discovery-prefix", discovery_prefix)):
            if not valid_prefix(v):
                raise ValueError(f"{opt} {v!r}: topic levels joined by / wanted, none empty, "
                                 "without + # or NUL, not starting with $")
        super().__init__(host, port, fmt="jsonl", out=open(os.devnull, "w"), err=err,
                         live=False, **kw)
        self.ha = homeassistant
        self.out_prefix = out_prefix
        self.discovery_prefix = discovery_prefix
        self.puback_timeout = puback_timeout
        self.out_host = out_host or host  # where to republish: the same broker by default
        self.out_port = out_port or port
        cid = kw.get("client_id") or ""
        self.pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                               client_id=f"{cid}-out" if cid else "", protocol=mqtt.MQTTv311)
        self._pub_up = threading.Event()
        self.pub.on_connect = lambda c, u, f, rc, p: (not rc.is_failure) and self._pub_up.set()
        self.pub.on_disconnect = lambda c, u, f, rc, p: self._pub_up.clear()
        self.published = 0
        self.announced: dict[tuple[str, str], dict[str, str]] = {}  # uid -> config topic
        self._announced_birth: dict[tuple[str, str], dict] = {}
        self.available: dict[tuple[str, str], str] = {}

    def start(self, timeout: float = 10.0) -> Bridge:
        p = self.pub
        if self.user is not None:
            p.username_pw_set(self.user, self.password)
        if self.cafile or self.cert:
            p.tls_set_context(self._tls_context())
        try:
            p.connect(self.out_host, self.out_port, self.keepalive)
        except (OSError, ssl.SSLError) as e:
            raise ConnectionError(f"cannot connect to {self.out_host}:{self.out_port}: "
                                  f"{e}") from None
        p.loop_start()
        if not self._pub_up.wait(timeout):
            p.loop_stop()
            raise ConnectionError(f"no CONNACK from {self.out_host}:{self.out_port} in "
                                  f"{timeout} s for the bridge's publishing client")
        try:
            super().start(timeout)
        except Exception:
            p.disconnect()
            p.loop_stop()
            raise
        return self

    def stop(self) -> None:
        super().stop()
        self.pub.disconnect()
        self.pub.loop_stop()
        self.out.close()

    # --- publishing ------------------------------------------------------------------------
    def _publish_all(self, msgs: list[tuple[str, bytes, bool]]) -> None:
        """Publish (topic, payload, retain) at QoS 1 and wait for every PUBACK; OSError when
        one is not acknowledged in time (the caller then counts nothing as stored)."""
        infos = [self.pub.publish(t, p, qos=1, retain=r) for t, p, r in msgs]
        for (t, _, _), info in zip(msgs, infos):
            try:
                info.wait_for_publish(self.puback_timeout)
            except (RuntimeError, ValueError) as e:  # not connected, queue full
                raise OSError(f"republishing to {t}: {e}") from None
            if not info.is_published():
                raise OSError(f"republishing to {t}: no PUBACK in {self.puback_timeout:g} s")
        self.published += len(msgs)

    def _write(self, key: tuple[str, str], m: dict, readings: list[dict]) -> None:
        """Republish the readings of data message m: called by Monitor._data before it
        counts them stored (and so before any ack covers them)."""
        birth = self.births.get(key)
        msgs = []
        for r in readings:
            row = finite_row(make_row(key, m, r, birth))
            body = {k: row[k] for k in ROW_FIELDS}
            body["point"] = row["point"]
            t = f"{self.out_prefix}/json/{key[0]}/{key[1]}/{topic_level(str(row['point']))}"
            msgs.append((t, json.dumps(body, allow_nan=False).encode(), False))
        self._publish_all(msgs)
        self.written += len(readings)

    def handle(self, topic: str, payload: bytes, retain: bool = False) -> None:
        super().handle(topic, payload, retain)
        kind = topic.rsplit("/", 1)[-1]
        parts = topic.split("/")
        if len(parts) < 4 or kind not in ("birth", "state"):
            return
        key = (parts[-3], parts[-2])
        with self.cond:
            try:
                if kind == "state" and key in self.states:
                    self._availability(key, self.states[key])
                elif kind == "birth" and self.ha and key in self.births \
                        and self._announced_birth.get(key) is not self.births[key]:
                    self._announce(key, self.births[key])
                    self._announced_birth[key] = self.births[key]
            except OSError as e:
                self.bad += 1
                self._note(f"republishing for {key[1]}: {e}")

    def _availability(self, key: tuple[str, str], st: dict) -> None:
        word = "online" if st.get("online") else "offline"
        if self.available.get(key) == word:
            return
        self._publish_all([(availability_topic(self.out_prefix, *key), word.encode(), True)])
        self.available[key] = word

    def _announce(self, key: tuple[str, str], birth: dict) -> None:
        """Discovery configs for the birth's points; empty ones for points it dropped."""
        msgs = []
        now: dict[str, str] = {}
        for p in birth["points"]:
            comp, cfg = discovery(p, key[0], key[1], birth, self.out_prefix)
            t = f"{self.discovery_prefix}/{comp}/{cfg['unique_id']}/config"
            now[cfg["unique_id"]] = t
            msgs.append((t, json.dumps(cfg).encode(), True))
        for uid, t in self.announced.get(key, {}).items():
            if uid not in now or now[uid] != t:
                msgs.append((t, b"", True))  # removed: Home Assistant drops the entity
        self._publish_all(msgs)
        self.announced[key] = now


# --- CLI --------------------------------------------------------------------------------------

def build_parser(p: argparse.ArgumentParser) -> None:
    """republish readings as plain JSON and Home Assistant discovery (MQTT)"""
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--json", action="store_true", help="JSON per reading (see above)")
    p.add_argument("--homeassistant", action="store_true",
                   help="Home Assistant MQTT discovery configs (implies --json)")
    p.add_argument("--out-prefix", default="otlink",
                   help="prefix of the JSON and availability topics (default otlink)")
    p.add_argument("--discovery-prefix", default="homeassistant",
                   help="Home Assistant's discovery prefix (default homeassistant)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default 1883, 8883 with TLS")
    p.add_argument("--out-host", help="republish to this broker (default --host; same "
                                      "TLS and user)")
    p.add_argument("--out-port", type=int, help="its port (default --port)")
    p.add_argument("--prefix", default="otlink", help="the nodes' topic prefix")
    p.add_argument("--site", default="+", help="site to follow (default all)")
    p.add_argument("--node", default="+", help="node to follow (default all)")
    p.add_argument("--ack", action=argparse.BooleanOptionalAction, default=True,
                   help="consumer acknowledgement (default on): ack to the node what the "
                        "broker has taken; --no-ack beside another acknowledging consumer")
    p.add_argument("--ack-wait", type=float, default=ACK_WAIT_S, metavar="S",
                   help="first contact with a node and boot: wait S seconds for the node's "
                        "resends before the first ack (default 15)")
    p.add_argument("--ack-key-file", help="sign acks with this key (hex; or set "
                   "OTLINK_ACK_KEY): the node's mqtt.ack_key (docs/security.md)")
    p.add_argument("--cafile", help="CA certificate to verify the broker (enables TLS)")
    p.add_argument("--cert", help="client certificate (with --key)")
    p.add_argument("--key", help="client private key")
    p.add_argument("--user")
    p.add_argument("--password", help="or set OTLINK_MQTT_PASSWORD (preferred)")
    p.add_argument("--client-id", default="")
    p.add_argument("--seconds", type=float, help="exit after S seconds")


def run(args) -> int:
    from otlink_tools.errors import CommandError

    try:
        check_topic_args(args.prefix, args.site, args.node)
    except ValueError as e:
        raise CommandError(str(e)) from None
    for opt, v in (("--port", args.port), ("--out-port", args.out_port)):
        if v is not None and not 1 <= v <= 65535:
            raise CommandError(f"{opt} {v}: out of range, 1..65535 wanted")
    for opt, v in (("--seconds", args.seconds), ("--ack-wait", args.ack_wait)):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise CommandError(f"{opt} {v:g}: a number of seconds >= 0 wanted")
    port = args.port or (8883 if (args.cafile or args.cert) else 1883)
    password = args.password or os.environ.get("OTLINK_MQTT_PASSWORD")
    try:
        br = Bridge(args.host, port, json_out=args.json or args.homeassistant,
                    homeassistant=args.homeassistant, out_prefix=args.out_prefix,
                    discovery_prefix=args.discovery_prefix, prefix=args.prefix,
                    site=args.site, node=args.node, ack=args.ack, ack_wait=args.ack_wait,
                    cafile=args.cafile, cert=args.cert, key=args.key, user=args.user,
                    password=password, client_id=args.client_id, out_host=args.out_host,
                    out_port=args.out_port,
                    ack_key=ack_key(getattr(args, "ack_key_file", None)))
        br.start()
    except (ValueError, ConnectionError) as e:
        raise CommandError(str(e)) from None
    except (OSError, ssl.SSLError) as e:
        raise CommandError(f"cannot start the bridge on {args.host}:{port}: {e}") from None
    try:
        br.wait(seconds=args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        br.stop()
        print(f"otlink bridge: {plural(br.written, 'reading')} republished, "
              f"{plural(br.duplicates, 'duplicate')} dropped, "
              f"{plural(br.bad, 'bad message')}", file=sys.stderr)
    return 0
