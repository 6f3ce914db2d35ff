"""docs/field-guide.md works as written: its ```sh blocks run in order in one bash (the
rehearsal on the Unix port), and its ```board commands parse. Two substitutions only: the
test's own broker on a free port instead of `mosquitto -p 1883 -d`, and a private path for
the console's fixed name (tests may run side by side)."""

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "field-guide.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", GUIDE.read_text(), re.S | re.M)


def test_board_commands_parse():
    from otlink_tools.cli import build_parser

    lines = [x for b in blocks("board") for x in b.splitlines() if x.startswith("otlink ")]
    assert len(lines) >= 3
    for line in lines:
        args = build_parser().parse_args(shlex.split(line)[1:])
        assert callable(args.func), line


def test_rehearsal_runs_as_written(broker, tmp_path):
    script = "\n".join(blocks("sh"))
    assert "mosquitto -p 1883 -d" in script and script.count("otlink ") >= 15
    script = script.replace("mosquitto -p 1883 -d", ": broker started by the test")
    script = script.replace("1883", str(broker.port))
    script = script.replace("/tmp/otlink-console", str(tmp_path / "console"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OTLINK_HOME": str(ROOT)}
    proc = subprocess.Popen(["bash", "-e", "-x", "-c", script], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError("the guide's commands did not finish in 90 s:\n" + out) from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the guide left running
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out
    # what each step must have shown
    assert "slave ids answering: 1" in out or "slave 1" in out, out
    assert "node.json: ok" in out
    assert "config: ok" in out and "uplink: connected" in out
    assert 'points[0].unit: "V" -> "kV"' in out
    assert "ok (staged config)" in out and "committed config" in out
    # status --json after the commit: on trial until its first poll or publish, then ok
    assert re.search(r'"config": "(trial|ok)', out)
    pulled = (tmp_path / "pulled.json").read_text()
    assert '"unit": "kV"' in pulled and '"scale": 0.001' in pulled  # the committed change
    assert re.search(r"staged 2 changes\n.*ok \(staged config\)\n.*committed config", out, re.S)
    assert out.count("confirmed: a poll or publish succeeded") >= 1
    assert '"values": [' in out or "values:" in out  # modbus read through the node
    assert "otlink monitor: 4 readings written" in out and "kV" in out
