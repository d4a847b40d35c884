"""The shared mechanisms every part relies on: option lookup, atomic writes, the run lock, pseudonyms, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tl_radiology import _atomic
from tl_radiology import OptionError, RunDirBusyError, RunDirError
from tl_radiology._options import listed, look_up_option
from tl_radiology._pseudonym import pseudonymize
from tl_radiology.cli import main


def test_look_up_option_suggests_close_names_and_lists_all():
    options = {"resnet50": 1, "densenet121": 2, "vgg16": 3}
    assert look_up_option("ResNet50", options, what="backbone") == 1
    with pytest.raises(OptionError, match=r"Unknown backbone 'resnet5O'\. Did you mean 'resnet50'\? "
                                          r"Available: densenet121, resnet50, vgg16\."):
        look_up_option("resnet5O", options, what="backbone")


def test_look_up_option_rejects_non_strings_with_the_type():
    with pytest.raises(OptionError, match="Received: 3 of type int"):
        look_up_option(3, ["a", "b"], what="tuner")


def test_listed_shows_a_few_and_counts_the_rest():
    assert listed([f"row {i}" for i in range(2, 9)], 3) == "row 2; row 3; row 4; and 4 more"
    assert listed(["a.dcm", "b.dcm", "c.dcm"], 2, sep=", ") == "a.dcm, b.dcm and 1 more"
    assert listed(["only"], 5) == "only"


def test_atomic_write_leaves_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "final_test.json"
    _atomic.atomic_write_json(target, {"auc": 0.9})
    with pytest.raises(RuntimeError):
        with _atomic.atomic_path(target) as tmp:
            tmp.write_text('{"auc": 0.')  # half-written
            raise RuntimeError("killed midway")
    assert json.loads(target.read_text()) == {"auc": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["final_test.json"]  # no temporary left behind


def test_atomic_directory_replaces_whole_folder(tmp_path):
    target = tmp_path / "report"
    with _atomic.atomic_directory(target) as tmp:
        (tmp / "a.png").write_bytes(b"1")
    with pytest.raises(ValueError):
        with _atomic.atomic_directory(target) as tmp:
            (tmp / "b.png").write_bytes(b"2")
            raise ValueError("failed plot")
    assert sorted(p.name for p in target.iterdir()) == ["a.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_run_lock_refuses_a_second_process(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from tl_radiology._atomic import RunLock
            with RunLock({str(tmp_path)!r}, "search"):
                print("locked", flush=True)
                time.sleep(30)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusyError, match=rf"Run directory {tmp_path} is in use by another process "
                                                  rf"\(pid {holder.pid} .*command 'search'"):
            _atomic.RunLock(tmp_path, "evaluate").acquire()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock, no stale lock file blocks the next command
        holder.wait()
    with _atomic.RunLock(tmp_path, "evaluate"):
        pass


def test_unwritable_output_folder_is_named(tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "file-not-folder"
        target.write_text("x")
        with pytest.raises(RunDirError, match=r"--out .*file-not-folder is a file, expected a folder"):
            _atomic.ensure_writable_dir(target)
    else:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(RunDirError, match=r"Cannot write to --out .*ro"):
            _atomic.ensure_writable_dir(locked / "run")


def test_pseudonyms_are_keyed_stable_and_hide_the_identifier():
    a = pseudonymize("DOE^JOHN-12345", key=b"k1")
    assert a == pseudonymize("DOE^JOHN-12345", key=b"k1")
    assert a != pseudonymize("DOE^JOHN-12345", key=b"k2")
    assert a.startswith("P-") and len(a) == 14 and "12345" not in a


def test_pseudonym_key_file_is_created_private(tmp_path, monkeypatch):
    from tl_radiology._pseudonym import pseudonym_key

    monkeypatch.delenv("TL_RADIOLOGY_PSEUDONYM_KEY")
    monkeypatch.setenv("TL_RADIOLOGY_HOME", str(tmp_path))
    key = pseudonym_key()
    assert len(key) == 64 and (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600
    assert pseudonym_key() == key


def test_cli_help_lists_commands_and_exits_zero(capsys):
    assert main([]) == 0
    assert "usage: tl-radiology" in capsys.readouterr().out


def test_cli_unknown_command_exits_2(capsys):
    assert main(["no-such-command"]) == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err


def test_atomic_results_get_normal_permissions_not_mkstemp_private(tmp_path):
    umask = os.umask(0o022)
    try:
        path = _atomic.atomic_write_text(tmp_path / "report.html", "<html></html>")
        with _atomic.atomic_directory(tmp_path / "report") as folder:
            (folder / "a.png").write_bytes(b"x")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "report").stat().st_mode & 0o777 == 0o755


def test_command_line_keeps_tensorflow_start_up_noise_off_the_terminal(tmp_path):
    # A real console-script process: TensorFlow's C++ start-up lines are dropped, the error line is kept.
    exe = os.path.join(os.path.dirname(sys.executable), "tl-radiology")
    result = subprocess.run([exe, "backbones", "resnet5O"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith("error: Unknown backbone 'resnet5O'. Did you mean 'resnet50'")
    assert not [line for line in lines if "oneDNN" in line or "cuda" in line or "absl" in line], lines
    debug = subprocess.run([exe, "--debug", "backbones", "resnet5O"], capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_run_lock_is_reentrant_within_one_process(tmp_path):
    with _atomic.RunLock(tmp_path, "run"):
        with _atomic.RunLock(tmp_path, "finalize on validation"):
            pass
        # still held after the nested release: another process is refused
        probe = subprocess.run(
            [sys.executable, "-c", f"from tl_radiology._atomic import RunLock; RunLock({str(tmp_path)!r}, 'x').acquire()"],
            capture_output=True, text=True,
        )
        assert probe.returncode != 0 and "is in use by another process" in probe.stderr and "command 'run'" in probe.stderr
    with _atomic.RunLock(tmp_path, "evaluate"):  # released for real at the outer exit
        pass
