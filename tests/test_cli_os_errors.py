"""Operating-system errors a user can meet end with one line that names the path and the fix (exit 2)."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from tl_radiology.cli import main
from tl_radiology.cli import _backbones


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left while writing /data/run/x.npy"),
                                         (errno.EDQUOT, "no space left while writing /data/run/x.npy")])
def test_a_full_disk_is_one_line_with_exit_2(monkeypatch, capsys, code, words):
    def full(args):
        raise OSError(code, "No space left on device", "/data/run/x.npy")

    monkeypatch.setattr(_backbones, "run", full)
    assert main(["backbones"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0] and "choose another --out" in err[0]


def test_a_permission_error_names_reading_or_writing(monkeypatch, capsys):
    def denied(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/study/manifest.csv")

    monkeypatch.setattr(_backbones, "run", denied)
    assert main(["backbones"]) == 2
    err = capsys.readouterr().err.strip()
    assert "/data/study/manifest.csv cannot be read or written" in err and "you can write to" not in err


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    # `tl-radiology backbones | head -1`: the pipe's reader is gone before the listing is written. A real process
    # and a real pipe whose read end is closed at once; the command must not report an "unexpected" error.
    process = subprocess.Popen([sys.executable, "-m", "tl_radiology", "backbones"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "error" not in stderr and "BrokenPipe" not in stderr, stderr
