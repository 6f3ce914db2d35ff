"""console_client's own logic: the console commands `config push` sends for a file, and the
section-by-section pull of a config too big for one reply of the node."""

import json

import pytest

from otlink_tools.console_client import LINE_MAX, fetch_config, plan_sets
from otlink_tools.errors import CommandError


def test_plan_sets_turns_one_config_into_the_other_within_the_line():
    old = {"node": {"id": "a", "site": "s"}, "mqtt": {"host": "h", "password": "******"},
           "points": [{"id": 1, "name": "v"}, {"id": 2, "name": "w"}, {"id": 3, "name": "x"}],
           "queue": {"policy": "drop_oldest"}}
    big = {"id": 9, "name": "n" * 150, "slave": 1, "table": "input", "address": 7,
           "type": "float32", "order": "ABCD", "unit": "V" * 60}
    new = {"node": {"id": "a", "site": "t"}, "mqtt": {"host": "h", "password": "******"},
           "points": [{"id": 1, "name": "v", "scale": 0.1}, big]}
    steps = plan_sets(old, new)
    assert ("set", "node.site", "t") in steps
    assert ("set", "points[0].scale", 0.1) in steps
    assert ("unset", "points[2]", None) in steps and ("unset", "queue", None) in steps
    assert not [s for s in steps if s[1].startswith("mqtt")]  # a masked secret stays as is
    for op, path, value in steps:  # every command fits the node's line
        line = f"@{op} -f {path} {json.dumps(value, separators=(',', ':'))}"
        assert len(line.encode()) < LINE_MAX, line
    # applied in order they give the new config
    cur = json.loads(json.dumps(old))
    for op, path, value in steps:
        apply(cur, path, op, value)
    assert cur == new


def apply(cfg, path, op, value):
    parts = path.replace("[", ".").replace("]", "").split(".")
    keys = [int(p) if p.isdigit() else p for p in parts]
    obj = cfg
    for k in keys[:-1]:
        obj = obj[k]
    last = keys[-1]
    if op == "unset":
        obj.pop(last) if isinstance(obj, list) else obj.pop(last)
    elif isinstance(obj, list) and last == len(obj):
        obj.append(value)
    else:
        obj[last] = value


class BigConfigNode:
    """The node's console answering as console.py does, with a reply limit standing in for
    the heap of a board that cannot hold the whole config as one reply."""

    def __init__(self, cfg, limit):
        self.cfg = cfg
        self.limit = limit
        self.asked = []

    def call(self, line):
        self.asked.append(line)
        if line == "show config":
            data = self.cfg
        else:
            path = line.split(None, 1)[1]
            key, _, idx = path.partition("[")
            if key not in self.cfg:
                raise CommandError(f"node: {path}: not set in the config")
            data = self.cfg[key]
            if idx:
                i = int(idx.rstrip("]"))
                if i >= len(data):
                    raise CommandError(f"node: {path}: no such item (list has {len(data)})")
                data = data[i]
        if len(json.dumps(data)) > self.limit:
            raise CommandError("node: out of memory writing the reply")
        return data


@pytest.mark.parametrize("limit", [10**9, 2000])
def test_pull_of_a_config_too_big_for_one_reply(limit):
    cfg = {"node": {"id": "a", "site": "s"}, "mqtt": {"host": "h"},
           "points": [{"id": i, "name": f"p{i}", "address": i * 2} for i in range(300)]}
    node = BigConfigNode(cfg, limit)
    assert fetch_config(node) == cfg
    if limit < 10**9:
        assert "get points[299]" in node.asked and "get points[300]" in node.asked
