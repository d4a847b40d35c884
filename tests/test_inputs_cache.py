"""Issue 11 items 7 (cache half) and 9: the case cache checks a CRC per entry and per stack and rebuilds what fails
it with a warning; a full disk ends with one line naming the folder and the space needed (exit status 2), with no
SIGBUS and no temporary file left behind. Real DICOM phantoms, real files, a real full tmpfs where one can be made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tl_radiology import InputError
from tl_radiology.data import CaseCache, CaseLoader, Manifest, load_arrays, make_dataset, make_triphasic_phantoms
from tl_radiology.transforms import Compose, Resize, Window

PHASES = ("native", "arterial", "delayed")


@pytest.fixture()
def triphasic(tmp_path):
    path = make_triphasic_phantoms(tmp_path / "ph", num_patients=3, cases_per_patient=2, size=32, seed=5)
    return Manifest.from_csv(path, image_columns=PHASES)


def _loader():
    return CaseLoader(PHASES, per_image=Compose([Window(30.0, 150.0), Resize(24)]))


def _zero_pixels_keep_header_and_trailer(path: Path) -> None:
    """Overwrite an entry's pixels with zeros of the right size, leaving its header and CRC trailer as they were."""
    data = bytearray(path.read_bytes())
    header_end = data.index(b"\n") + 1
    data[header_end:-12] = bytes(len(data) - 12 - header_end)
    path.write_bytes(bytes(data))


def _temporaries(folder: Path) -> list:
    return [p for p in folder.rglob("*") if p.is_file() and p.name.startswith(".") and ".tmp" in p.name]


# ---------------------------------------------------------------------------------------------- item 9: checksums
def test_an_entry_overwritten_with_zeros_is_rebuilt_with_a_warning_naming_the_case(triphasic, tmp_path):
    cases, loader = triphasic.cases, _loader()
    cache = CaseCache(tmp_path / "cache")
    keys = cache.fill(cases, loader)
    _zero_pixels_keep_header_and_trailer(cache.entry_path(keys[2]))
    assert not np.load(cache.entry_path(keys[2])).any()  # the attack: a valid .npy of the right shape
    with pytest.warns(UserWarning, match=rf"Case cache entry {keys[2]}\.npy of row 4 failed its checksum .*rebuilt "
                                         r"from the image files"):
        X, _ = load_arrays(cases, loader, cache)
    np.testing.assert_array_equal(X[2], loader(cases.iloc[2]))
    assert X[2].any()
    assert cache.read_entry(keys[2]) is not None  # rewritten whole


def test_an_entry_replaced_by_a_plain_npy_of_zeros_is_not_used(triphasic, tmp_path):
    cases, loader = triphasic.cases, _loader()
    cache = CaseCache(tmp_path / "cache")
    keys = cache.fill(cases, loader)
    np.save(cache.entry_path(keys[0]), np.zeros((24, 24, 3), np.float32))
    assert cache.read_entry(keys[0]) is None
    X, _ = load_arrays(cases, loader, cache)
    np.testing.assert_array_equal(X[0], loader(cases.iloc[0]))


def test_a_zeroed_stack_or_entry_never_reaches_a_batch(triphasic, tmp_path):
    cases, loader = triphasic.cases, _loader()
    cache = CaseCache(tmp_path / "cache")
    expected = np.stack([loader(case) for _, case in cases.iterrows()])
    keys = cache.fill(cases, loader)
    _zero_pixels_keep_header_and_trailer(cache.entry_path(keys[1]))
    with pytest.warns(UserWarning, match=r"of row 3 failed its checksum"):
        ds = make_dataset(cases, loader, cache=cache, task=None, batch_size=6)
    np.testing.assert_array_equal(next(iter(ds)).numpy(), expected)
    (stack,) = (cache.folder / "stacks").glob("*.npy")
    _zero_pixels_keep_header_and_trailer(stack)
    with pytest.warns(UserWarning, match=rf"Case cache stack {stack.name} failed its checksum"):
        ds = make_dataset(cases, loader, cache=cache, task=None, batch_size=6)
    np.testing.assert_array_equal(next(iter(ds)).numpy(), expected)


def test_large_data_sets_read_per_file_check_each_entry(triphasic, tmp_path, monkeypatch):
    from tl_radiology.data import _pipeline

    monkeypatch.setattr(_pipeline, "_MAX_STACK_BYTES", 0)  # take the per-file reader, as a >1 GiB set would
    cases, loader = triphasic.cases, _loader()
    cache = CaseCache(tmp_path / "cache")
    keys = cache.fill(cases, loader)
    _zero_pixels_keep_header_and_trailer(cache.entry_path(keys[5]))
    ds = make_dataset(cases, loader, cache=cache, task=None, batch_size=6)
    with pytest.warns(UserWarning, match=r"of row 7 failed its checksum"):
        batch = next(iter(ds)).numpy()
    np.testing.assert_array_equal(batch[5], loader(cases.iloc[5]))


# ---------------------------------------------------------------------------------------------- item 7: disk full
def test_no_free_space_is_one_line_naming_the_folder_and_the_space_needed(triphasic, tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=50_000))
    cache = CaseCache(tmp_path / "cache")
    # 6 entries of 24x24x3 float32 with their headers (42.3 KB) and the 64 KiB kept free
    with pytest.raises(InputError, match=rf"^Not enough free space for the case cache in {tmp_path / 'cache'}: "
                                         r"writing it needs about 107\.8 KB free, the disk has 50\.0 KB\. Free space "
                                         r"on that disk, or give --out .* nothing was half-written\.$") as caught:
        cache.fill(triphasic.cases, _loader())
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert not list((tmp_path / "cache").rglob("*.npy")) and not _temporaries(tmp_path / "cache")


def test_a_write_that_fails_for_real_removes_its_temporary(triphasic, tmp_path):
    # A file size limit makes the kernel refuse the stack's writes (EFBIG, the same path as ENOSPC) while the
    # free-space check passes: the write error itself must end as the one-line error, with nothing left behind.
    script = textwrap.dedent(f"""
        import resource, signal
        from tl_radiology import TLRadiologyError
        from tl_radiology.data import CaseCache, CaseLoader, Manifest, make_dataset
        from tl_radiology.transforms import Compose, Resize, Window
        cases = Manifest.from_csv({str(triphasic.source)!r}, image_columns={PHASES!r}).cases
        loader = CaseLoader({PHASES!r}, per_image=Compose([Window(30.0, 150.0), Resize(24)]))
        cache = CaseCache({str(tmp_path / 'cache')!r})
        cache.fill(cases, loader)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        try:
            make_dataset(cases, loader, cache=cache, task=None)
        except TLRadiologyError as exc:
            print(type(exc).__name__, exc.exit_code, exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"_CacheWriteError 2 Not enough free space for the case cache in {tmp_path / 'cache'}")
    assert not _temporaries(tmp_path / "cache") and not list((tmp_path / "cache" / "stacks").glob("*.npy"))


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    done = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                          capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.mark.slow  # two fresh processes that import TensorFlow (~20 s)
@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux user namespaces to mount a small tmpfs")
def test_a_really_full_disk_gives_exit_2_not_sigbus_and_a_rerun_is_clean(triphasic, tmp_path):
    if not _can_mount_tmpfs():
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare -rm)")
    # 6 entries of 24x24x3 float32 (6.9 KB each) fit in 160 KB; their stack (41.6 KB + 64 KiB kept free) does not.
    script = textwrap.dedent(f"""
        import sys
        from tl_radiology import TLRadiologyError
        from tl_radiology.data import CaseCache, CaseLoader, Manifest, make_dataset
        from tl_radiology.transforms import Compose, Resize, Window
        cases = Manifest.from_csv({str(triphasic.source)!r}, image_columns={PHASES!r}).cases
        loader = CaseLoader({PHASES!r}, per_image=Compose([Window(30.0, 150.0), Resize(24)]))
        try:
            make_dataset(cases, loader, cache=CaseCache(sys.argv[1]), task=None)
        except TLRadiologyError as exc:
            print("error:", exc, file=sys.stderr)
            sys.exit(exc.exit_code)
    """)
    (tmp_path / "fill.py").write_text(script)
    mnt = tmp_path / "disk"
    mnt.mkdir()
    shell = (f"mount -t tmpfs -o size=160k tmpfs {mnt} && for i in 1 2; do {sys.executable} {tmp_path / 'fill.py'} "
             f"{mnt / 'cache'}; echo rc=$?; find {mnt} -name '.*tmp*' | wc -l; done")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.stdout.split() == ["rc=2", "0", "rc=2", "0"], (done.stdout, done.stderr[-2000:])
    assert len(errors) == 2 and all(f"Not enough free space for the case cache in {mnt / 'cache'}" in e
                                    for e in errors)
    assert all("writing it needs about 107.1 KB free" in e for e in errors), errors[0][-200:]  # the stack


def test_a_temporary_left_by_a_killed_writer_is_removed_on_the_next_fill(triphasic, tmp_path):
    from tl_radiology.data._cache_files import _HOST

    cache = CaseCache(tmp_path / "cache")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / "cache" / "stacks" / f".abc.npy.{_HOST}.{dead.pid}.0123abcd.tmp"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"\0" * 1000)
    alive = left.with_name(f".abc.npy.{_HOST}.{os.getppid()}.0123abcd.tmp")
    alive.write_bytes(b"\0" * 10)
    cache.fill(triphasic.cases, _loader())
    assert not left.exists() and alive.exists()
