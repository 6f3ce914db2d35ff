"""The ack key of the test nodes (`mqtt.ack_key`, required with consumer acks) and of the
consumers that acknowledge them: random per test run, never a fixed default."""

import secrets

ACK_KEY_HEX = secrets.token_hex(32)
ACK_KEY = bytes.fromhex(ACK_KEY_HEX)
