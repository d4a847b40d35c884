"""CaseCache on real DICOM phantoms: hits, content keys, no identifiers on disk, crash safety, the fingerprint index."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pydicom
import pytest

from tl_radiology import ImageReadError, InputError
from tl_radiology.data import CaseCache, CaseLoader, Manifest, make_nodule_phantoms, make_triphasic_phantoms
from tl_radiology.transforms import Compose, ExtractPlanes, Resize, Window

PHASES = ("native", "arterial", "delayed")
CENTER = ("center_z", "center_y", "center_x")
KEY_FILE = re.compile(r"^[0-9a-f]{64}\.npy$")


@pytest.fixture()
def triphasic(tmp_path):
    """A fresh copy per test: some tests change files."""
    path = make_triphasic_phantoms(tmp_path / "ph", num_patients=3, cases_per_patient=2, size=32, seed=5)
    return Manifest.from_csv(path, image_columns=PHASES)


def liver_loader(center=30.0):
    return CaseLoader(PHASES, per_image=Compose([Window(center, 150.0), Resize(24)]))


def entry_files(cache: CaseCache) -> list:
    base = cache.folder / "cases"
    return sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []


def brighten(path, hu=60):
    """Rewrite a DICOM file with its pixels raised by ``hu`` (same header, same size, other content)."""
    ds = pydicom.dcmread(path)
    pixels = np.clip(ds.pixel_array.astype(np.int32) + hu, 0, 4095).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)


def backdate(root, seconds=3600):
    """Give every file an old mtime, as files that have sat on disk for a while have."""
    past = time.time() - seconds
    for dirpath, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(dirpath, name), (past, past))


def test_second_pass_is_all_hits_and_returns_what_the_loader_gives(triphasic, tmp_path):
    cases, loader = triphasic.cases, liver_loader()
    cache = CaseCache(tmp_path / "cache")
    keys = cache.fill(cases, loader)
    assert (cache.hits, cache.misses) == (0, 6) and len(set(keys)) == 6
    assert len(entry_files(cache)) == 6
    assert cache.fill(cases, loader) == keys
    assert (cache.hits, cache.misses) == (6, 6)
    for i, (_, case) in enumerate(cases.iterrows()):
        np.testing.assert_array_equal(cache.get_or_load(case, loader), loader(case))
        np.testing.assert_array_equal(np.load(cache.entry_path(keys[i])), loader(case))
    assert (cache.hits, cache.misses) == (12, 6)
    # A second object on the same folder (another run, another process) finds everything.
    again = CaseCache(tmp_path / "cache")
    again.fill(cases, loader)
    assert (again.hits, again.misses) == (6, 0)
    # Footprint: 6 entries of 24 x 24 x 3 float32 plus .npy headers, the index and the tag.
    assert 6 * 24 * 24 * 3 * 4 < cache.size_bytes() < 6 * 24 * 24 * 3 * 4 + 64_000


def test_a_changed_file_changes_only_that_cases_key_and_array(triphasic, tmp_path):
    cases, loader = triphasic.cases, liver_loader()
    cache = CaseCache(tmp_path / "cache")
    keys = cache.fill(cases, loader)
    before = loader(cases.iloc[1])
    size = os.path.getsize(cases.iloc[1]["arterial"])
    brighten(cases.iloc[1]["arterial"])  # same size and name, other pixels
    assert os.path.getsize(cases.iloc[1]["arterial"]) == size
    new_keys = cache.fill(cases, loader)
    changed = [i for i, (a, b) in enumerate(zip(keys, new_keys)) if a != b]
    assert changed == [1] and cache.misses == 7
    after = cache.get_or_load(cases.iloc[1], loader)
    np.testing.assert_array_equal(after, loader(cases.iloc[1]))
    np.testing.assert_array_equal(after[..., [0, 2]], before[..., [0, 2]])
    assert after[..., 1].mean() > before[..., 1].mean() + 0.1  # 60 HU brighter in a 150 HU window


def test_a_changed_transform_parameter_changes_every_key(triphasic, tmp_path):
    cases = triphasic.cases
    cache = CaseCache(tmp_path / "cache")
    keys = cache.fill(cases, liver_loader(center=30.0))
    other = cache.fill(cases, liver_loader(center=40.0))
    assert not set(keys) & set(other) and cache.misses == 12
    assert cache.fill(cases, liver_loader(center=30.0)) == keys  # the first loader's entries are still there


def test_series_folders_are_fingerprinted_by_all_their_files(tmp_path):
    manifest = Manifest.from_csv(make_nodule_phantoms(tmp_path / "ph", num_patients=2, shape=(12, 48, 48), seed=1))
    cases = manifest.cases
    loader = CaseLoader("image", per_image=Compose([ExtractPlanes(16), Window.preset("lung")]), center_columns=CENTER)
    cache = CaseCache(tmp_path / "cache")
    keys = cache.fill(cases, loader)
    assert cache.files_hashed == 24  # 2 series of 12 slices
    # Any slice is part of the case: changing one gives a new key for that case only.
    brighten(os.path.join(cases.iloc[0]["image"], "slice_000.dcm"))
    new_keys = cache.fill(cases, loader)
    assert new_keys[0] != keys[0] and new_keys[1] == keys[1] and cache.misses == 3
    # Another centre is another case.
    moved = cases.copy()
    moved.loc[0, "center_y"] = str(float(moved.loc[0, "center_y"]) + 1)
    assert cache.key(moved.iloc[0], loader) != cache.key(cases.iloc[0], loader)


def test_unchanged_files_are_not_read_again_to_fingerprint_them(triphasic, tmp_path):
    cases, loader = triphasic.cases, liver_loader()
    backdate(triphasic.root)
    first = CaseCache(tmp_path / "cache")
    first.fill(cases, loader)
    assert first.files_hashed == 18
    first.close()
    second = CaseCache(tmp_path / "cache")
    second.fill(cases, loader)
    assert (second.files_hashed, second.hits) == (0, 6)
    # Rewriting a file gives it a new mtime: it is read again, and only it.
    path = cases.iloc[0]["native"]
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data)
    third = CaseCache(tmp_path / "cache")
    third.fill(cases, loader)
    assert (third.files_hashed, third.hits) == (1, 6)


def test_cache_files_hold_no_patient_id_or_file_name(triphasic, tmp_path):
    cases, loader = triphasic.cases, liver_loader()
    backdate(triphasic.root)  # so the fingerprint index records the files too
    cache = CaseCache(tmp_path / "cache")
    cache.fill(cases, loader)
    cache.close()
    names = [p.relative_to(cache.folder).as_posix() for p in cache.folder.rglob("*") if p.is_file()]
    assert sorted(n for n in names if n.startswith("cases/")) == sorted(
        f"cases/{k[:2]}/{k}.npy" for k in cache.fill(cases, loader))
    assert set(n for n in names if not n.startswith("cases/")) == {"CACHEDIR.TAG", "fingerprints.sqlite"}
    assert all(KEY_FILE.match(p.name) for p in entry_files(cache))
    forbidden = [b"PHANTOM", b"native", b"arterial", b"case_0", str(triphasic.root).encode()]
    for path in cache.folder.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(word in content for word in forbidden), path


def test_a_failing_case_leaves_no_partial_entry_and_the_others_are_cached(triphasic, tmp_path):
    cases, loader = triphasic.cases.copy(), liver_loader()
    cases.loc[2, "delayed"] = str(tmp_path / "missing.dcm")
    cases.loc[4, "native"] = cases.loc[0, "native"]  # another position: refused by the alignment check
    cache = CaseCache(tmp_path / "cache")
    with pytest.raises(InputError, match=rf"^2 of 6 cases could not be loaded: row {cases.loc[2, 'row']} \(column "
                                         rf"'delayed'\): .*missing\.dcm does not exist.*; row {cases.loc[4, 'row']}: "
                                         r"StackChannels: image 'arterial' is .* mm away"):
        cache.fill(cases, loader)
    assert cache.misses == 4 and len(entry_files(cache)) == 4
    for path in entry_files(cache):
        assert KEY_FILE.match(path.name)
        assert np.load(path).shape == (24, 24, 3)
    # One bad case keeps the reader's error class.
    with pytest.raises(ImageReadError, match=r"\(column 'delayed'\)"):
        cache.fill(cases.iloc[[0, 2]], loader)


def test_an_error_inside_a_transform_writes_nothing_for_that_case(triphasic, tmp_path):
    cases = triphasic.cases
    cache = CaseCache(tmp_path / "cache")
    # Resize works on the native phase but the stacked case goes through a transform that refuses 3 channels.
    from tl_radiology.transforms import GrayToRGB

    loader = CaseLoader(PHASES, per_image=Compose([Window.preset("liver"), Resize(24)]), case_transform=GrayToRGB())
    loader3 = CaseLoader(PHASES[:2], per_image=Compose([Window.preset("liver"), Resize(24)]),
                         case_transform=GrayToRGB())
    with pytest.raises(InputError, match=rf"^row {cases.iloc[0]['row']}, case_transform GrayToRGB\(\): GrayToRGB "
                                         r"expects H x W, H x W x 1 or H x W x 3\. Received shape 24x24x2"):
        cache.get_or_load(cases.iloc[0], loader3)
    assert entry_files(cache) == [] and cache.misses == 0
    assert cache.get_or_load(cases.iloc[0], loader).shape == (24, 24, 3)


SLOW_TRANSFORM = '''
import time
from tl_radiology.transforms._base import Transform, as_float_image


class SlowStep(Transform):
    """Passes pixels through, slowly: a stand-in for an expensive transform, so a kill lands mid-fill."""

    def __call__(self, x):
        time.sleep(0.15)
        return as_float_image(x, who="SlowStep").copy()

    def _params(self):
        return {}
'''


def test_a_killed_fill_leaves_only_whole_entries(triphasic, tmp_path):
    (tmp_path / "slow_transform.py").write_text(SLOW_TRANSFORM)
    sys.path.insert(0, str(tmp_path))
    try:
        from slow_transform import SlowStep

        loader = CaseLoader(PHASES, per_image=Compose([Window.preset("liver"), SlowStep(), Resize(24)]))
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import sys
                sys.path.insert(0, {str(tmp_path)!r})
                from slow_transform import SlowStep
                from tl_radiology.data import CaseCache, CaseLoader, Manifest
                from tl_radiology.transforms import Compose, Resize, Window
                cases = Manifest.from_csv({str(triphasic.source)!r}, image_columns={PHASES!r}).cases
                loader = CaseLoader({PHASES!r}, per_image=Compose([Window.preset("liver"), SlowStep(), Resize(24)]))
                CaseCache({str(tmp_path / 'cache')!r}).fill(cases, loader)
            """)],
            stderr=subprocess.DEVNULL,
        )
        cache = CaseCache(tmp_path / "cache")
        deadline = time.monotonic() + 60
        # Count whole entries only: a writer's hidden temporary is there before its entry is renamed into place.
        while (len([p for p in entry_files(cache) if KEY_FILE.match(p.name)]) < 2 and time.monotonic() < deadline
               and child.poll() is None):
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        written = [p for p in entry_files(cache) if KEY_FILE.match(p.name)]
        assert 2 <= len(written) < 6
        cases = triphasic.cases
        expected = {cache.key(case, loader): case for _, case in cases.iterrows()}
        for path in written:  # every entry under a final name is whole and right
            np.testing.assert_array_equal(np.load(path), loader(expected[path.stem]))
        leftovers = [p for p in entry_files(cache) if not KEY_FILE.match(p.name)]
        assert all(p.name.startswith(".") for p in leftovers)  # at most a hidden temporary, never read
        cache.fill(cases, loader)
        assert cache.hits == len(written) and cache.misses == 6 - len(written)
    finally:
        sys.path.remove(str(tmp_path))


def test_clear_empties_the_cache(triphasic, tmp_path):
    cases, loader = triphasic.cases, liver_loader()
    cache = CaseCache(tmp_path / "cache")
    cache.fill(cases, loader)
    assert cache.size_bytes() > 6 * 24 * 24 * 3 * 4
    cache.clear()
    assert cache.size_bytes() == 0 and (tmp_path / "cache").is_dir()
    cache.fill(cases, loader)
    assert cache.misses == 6


def test_a_file_in_place_of_the_cache_folder_is_refused(tmp_path):
    (tmp_path / "cache").write_text("x")
    with pytest.raises(InputError, match=r"Cache folder .*cache is a file, expected a folder"):
        CaseCache(tmp_path / "cache")


def test_a_cache_folder_that_cannot_be_written_is_named_once(triphasic, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "cases").write_text("a file where the cache keeps its entries")
    with pytest.raises(InputError, match=r"^Cannot write to the cache folder .*cache: .*\. Expected a folder you "
                                         r"can write to with free space; choose another cache folder"):
        CaseCache(folder).fill(triphasic.cases, liver_loader())


def test_two_processes_can_fill_one_cache_at_once(triphasic, tmp_path):
    backdate(triphasic.root)
    script = textwrap.dedent(f"""
        from tl_radiology.data import CaseCache, CaseLoader, Manifest
        from tl_radiology.transforms import Compose, Resize, Window
        cases = Manifest.from_csv({str(triphasic.source)!r}, image_columns={PHASES!r}).cases
        loader = CaseLoader({PHASES!r}, per_image=Compose([Window(30.0, 150.0), Resize(24)]))
        cache = CaseCache({str(tmp_path / 'cache')!r})
        cache.fill(cases, loader)
        print(cache.hits + cache.misses)
    """)
    children = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    results = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], results
    assert [out.strip() for out, _ in results] == ["6", "6"]
    cache = CaseCache(tmp_path / "cache")
    cases, loader = triphasic.cases, liver_loader()
    keys = cache.fill(cases, loader)
    assert (cache.hits, cache.misses, cache.files_hashed) == (6, 0, 0)  # entries and fingerprints were shared
    for key, (_, case) in zip(keys, cases.iterrows()):
        np.testing.assert_array_equal(np.load(cache.entry_path(key)), loader(case))
