"""The listing commands answer without importing TensorFlow (issue 13: about a second, not 5-18 s)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = (
    "import sys, contextlib, io\n"
    "from tl_radiology.cli import main\n"
    "out = io.StringIO()\n"
    "with contextlib.redirect_stdout(out):\n"
    "    try:\n"
    "        code = main({args!r})\n"
    "    except SystemExit as exc:\n"
    "        code = exc.code\n"
    "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules, len(out.getvalue().splitlines()))\n"
)


@pytest.mark.parametrize("args", [["--help"], ["recipes"], ["recipes", "chest_xray"], ["backbones"],
                                  ["backbones", "efficientnet_lite*"], ["weights", "status"]])
def test_listing_commands_print_their_table_without_tensorflow(args):
    probe = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                           check=True, timeout=120)
    code, tensorflow, keras, lines = probe.stdout.split()[-4:]
    assert code in ("0", "None"), probe.stderr
    assert int(lines) >= 5, f"{args}: printed {lines} lines"
    assert (tensorflow, keras) == ("False", "False"), f"`tl-radiology {' '.join(args)}` imported TensorFlow"
