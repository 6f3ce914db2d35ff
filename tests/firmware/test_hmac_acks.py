# heapsize: 200K 32:56K
# Consumer acks under mqtt.ack_key: only a signed ack advances the queue; an unsigned,
# forged, altered or other-topic ack discards nothing and is counted (acks_forged in the
# state). Consumer-ack mode needs the key: only mqtt.insecure_unsigned_acks lets plain acks
# in (and says so: "unsigned_acks"). The birth's security posture and the state's insecure
# list, from the validated config.
import gc

import mptest
from otlink.core import auth, reading
from otlink.core.config import parse_mqtt
from otlink.core.payload import encode_ack
gc.collect()
from otlink.publisher import Publisher  # noqa: E402
from fake_clock import FakeClock  # noqa: E402
from ramqueue import RamQueue  # noqa: E402
gc.collect()

KEY_HEX = "a7" + "0f1e2d3c4b5a6978" * 3 + "8796a5b4c3d2e1"
KEY = bytes([int(KEY_HEX[i:i + 2], 16) for i in range(0, len(KEY_HEX), 2)])
T_ACK = b"otlink/s/n/ack"


class Uplink:
    def __init__(self):
        self.t_data = b"otlink/s/n/data"
        self.t_state = b"otlink/s/n/state"
        self.t_ack = T_ACK
        self.connected = True
        self.connects = 1
        self.sent = []
        self.on_ack = None
        self.on_cmd = None

    def publish(self, topic, payload, qos=1, retain=False):
        self.sent.append((topic, bytes(payload)))


BIRTH = {"node": "n", "fw": "0", "config_hash": "h", "boot": 1, "points": []}
REC = bytearray(reading.MAX_SIZE)


def make(key=KEY_HEX):
    gc.collect()
    clock = FakeClock()
    q = RamQueue(clock, capacity=256, slot=reading.SIZE)
    up = Uplink()
    c = {"host": "127.0.0.1", "ack": "consumer", "qos": 1, "batch_max": 50, "linger_ms": 0,
         "replay_rate": 0}
    if key:
        c["ack_key"] = key
    else:
        c["insecure_unsigned_acks"] = True
    p = Publisher(q, up, clock, parse_mqtt(c), BIRTH)
    p._session_start()
    for i in range(100):
        reading.pack_int(REC, 1, clock.now_ms(), i, 0)
        q.append(REC, reading.SIZE)
        clock.t += 1
    while p.step():
        pass
    return p, q, up


def plain(boot, seq):
    b = bytearray(32)
    n = encode_ack(b, boot, seq)
    return bytes(b[:n])


def signed(boot, seq, key=KEY, topic=T_ACK):
    # acktrack.sign_ack's format, built here from the core HMAC
    a = plain(boot, seq)
    tag = bytes(auth.Hmac(key).digest(topic, b"\n", a))
    return b"\xa4" + a[1:] + b"\x61m\x58\x20" + tag


def test_forged_acks_discard_nothing():
    p, q, up = make()
    mptest.eq(q.depth(), 100, "sent, not acknowledged")
    up.on_ack(plain(1, 100))  # what any client on the broker can publish
    bad = bytearray(signed(1, 100))
    bad[-1] ^= 1
    up.on_ack(bytes(bad))  # tag altered
    s = bytearray(signed(1, 50))
    s[8] = 100  # the seq changed from 50 to 100 (one-byte uint), tag kept
    up.on_ack(bytes(s))
    up.on_ack(signed(1, 100, key=b"x" * 31 + b"y"))  # another key
    up.on_ack(signed(1, 100, topic=b"otlink/s/other/ack"))  # another node's ack
    up.on_ack(signed(1, 100)[:-1])  # truncated
    up.on_ack(b"")
    mptest.eq(q.depth(), 100, "no reading discarded")
    mptest.eq((p.acks_forged, p.acks), (7, 0), "each refusal counted")
    mptest.eq(p.state_fields()["acks_forged"], 7, "in the state message")


def test_signed_ack_advances():
    p, q, up = make()
    up.on_ack(signed(1, 50))
    mptest.eq((q.depth(), q.first_seq, p.acks), (50, 51, 1), "signed ack honoured")
    up.on_ack(signed(1, 70000 - 69900))  # seq 100, a 1-byte-wider uint path too
    mptest.eq(q.depth(), 0, "all confirmed")
    mptest.eq(p.acks_forged, 0, "nothing refused")


def test_consumer_acks_need_the_key_or_the_insecure_flag():
    from otlink.core.errors import ConfigError

    def errors(**m):
        c = {"host": "127.0.0.1"}
        c.update(m)
        try:
            parse_mqtt(c)
        except ConfigError as e:
            return str(e)
        return ""

    mptest.true("mqtt.ack_key: missing" in errors(), "default (consumer acks) without a key")
    mptest.true("insecure_unsigned_acks" in errors(), "the way out is named")
    mptest.eq(errors(ack_key=KEY_HEX), "", "with the key")
    mptest.eq(errors(insecure_unsigned_acks=True), "", "unsigned, said out loud")
    mptest.eq(errors(ack="broker"), "", "broker acks need no key")
    mptest.true("contradicts" in errors(ack_key=KEY_HEX, insecure_unsigned_acks=True),
                "key and flag together")
    mptest.true("only with ack 'consumer'" in errors(ack="broker",
                                                     insecure_unsigned_acks=True),
                "the flag in broker mode")
    mptest.true("must be true or false" in errors(insecure_unsigned_acks="yes"), "a bool")
    mptest.true(KEY_HEX not in errors(ack_key=KEY_HEX, insecure_unsigned_acks=True),
                "the key is never echoed")


def test_without_key_plain_acks_work():
    # the control is the key: without it (insecure_unsigned_acks) a plain ack advances
    p, q, up = make(key=None)
    up.on_ack(plain(1, 100))
    mptest.eq(q.depth(), 0, "plain ack honoured without ack_key")
    mptest.true("acks_forged" not in p.state_fields(), "no counter without a key")


def test_posture_and_insecure_list():
    from otlink import posture
    from otlink.core import config

    base = {"node": {"id": "n1", "site": "s1"}, "mqtt": {"host": "127.0.0.1"},
            "sensors": [{"driver": "sht3x", "bus": "i2c0", "group": "g",
                         "points": [{"id": 20, "name": "t", "channel": "temperature"}]}],
            "groups": {"g": {"interval_ms": 1000}}}
    base["mqtt"]["insecure_unsigned_acks"] = True
    cfg = config.validate(base)
    sec = posture.posture(cfg, "cafe", "f00d")
    mptest.eq((sec["tls"], sec["auth"], sec["plaintext_auth"], sec["cmd"], sec["ack"],
               sec["console_lock"], sec["fw"], sec["cfg"]),
              (False, "none", False, "off", "unsigned", False, "f00d", "cafe"), "unsigned")
    mptest.eq(posture.insecure(cfg), "unsigned_acks", "plain consumer acks named")
    del base["mqtt"]["insecure_unsigned_acks"]
    base["mqtt"].update({"user": "node1", "password": "Zq8-unique-pw",
                         "insecure_plaintext_auth": True, "ack_key": KEY_HEX})
    cfg = config.validate(base)
    sec = posture.posture(cfg, "cafe", "f00d")
    mptest.eq((sec["auth"], sec["plaintext_auth"], sec["ack"]),
              ("password", True, "signed"), "password in clear, reported")
    mptest.eq(posture.insecure(cfg), "plaintext_auth", "the insecure flag in the state")
    mptest.true("Zq8-unique-pw" not in repr(sec), "no secret in the posture")
    base["mqtt"]["tls"] = {"ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "k.pem"}
    del base["mqtt"]["insecure_plaintext_auth"]
    sec = posture.posture(config.validate(base), "cafe", "f00d")
    mptest.eq((sec["tls"], sec["tls_verify"], sec["auth"], sec["plaintext_auth"]),
              (True, True, "cert+password", False), "TLS, verified, client certificate")


def test_firmware_hash_is_over_the_files():
    from otlink import posture

    h = posture.firmware_hash()
    mptest.true(h == "frozen" or (len(h) == 64 and int(h[:8], 16) >= 0), h)
    mptest.eq(posture.firmware_hash(), h, "stable")


mptest.main(globals())
