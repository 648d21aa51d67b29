"""CephLandmarksLib.annotations.clinic_dataset: a clinic dataset in the generic layout, written whole or not at all."""

import csv
import os

import numpy as np
import pytest
import SimpleITK as sitk

from CephLandmarksLib.annotations import clinic_dataset as cd
from CephLandmarksLib.annotations.datasets import GENERIC_CSV, load_dataset, load_generic
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.imaging.images import read_radiograph
from CephLandmarksLib.landmarks import ISBI_LANDMARKS

ABBREVIATIONS = [lm.abbreviation for lm in ISBI_LANDMARKS]


def image(seed=0, shape=(120, 96), integer=True):
    pixels = np.random.default_rng(seed).uniform(0, 3000, size=shape)
    return (np.round(pixels) if integer else pixels).astype(np.float32)


def points(seed=0, shape=(120, 96)):
    return np.random.default_rng(100 + seed).uniform(5, min(shape) - 5, size=(19, 2))


def snapshot(folder):
    """Every file in the folder with its bytes: what 'nothing written' is checked against."""
    if not folder.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_case_round_trips_through_load_generic_and_read_radiograph(tmp_path):
    folder = tmp_path / "clinic"
    pixels, pts = image(), points()
    direction = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rotated in plane
    added = cd.add_case(folder, "Patient 7 / ceph", pixels, pts, (0.125, 0.125), ABBREVIATIONS,
                        origin_lps=(10.0, -4.0, 2.5), direction_lps=direction.ravel())
    assert added.image_path == folder / "Patient_7_ceph.nrrd" and not added.replaced and added.n_images == 1
    with open(folder / GENERIC_CSV, newline="") as f:
        header = next(csv.reader(f))
    assert header == ["image"] + [f"{a}{i}" for i in range(1, 20) for a in "xy"] + ["spacing_mm", "pixels_sha256"]
    (sample,) = load_generic(folder)  # the reader adaptation and training use
    assert sample.id == "Patient_7_ceph" and sample.spacing_mm == (0.125, 0.125)
    assert np.abs(sample.landmarks_px - pts).max() < 1e-3
    assert load_dataset(folder, "train")[0].image_path == sample.image_path  # no split column: every row
    radiograph = read_radiograph(sample.image_path)
    assert np.array_equal(radiograph.pixels, pixels)
    assert radiograph.spacing_mm == (0.125, 0.125) and radiograph.spacing_source == "file"
    assert np.allclose(radiograph.origin_lps, (10.0, -4.0, 2.5))
    assert np.allclose(np.reshape(radiograph.direction_lps, (3, 3)), direction)


def test_pixels_are_stored_losslessly_in_a_compact_type(tmp_path):
    cd.add_case(tmp_path, "int", image(1), points(1), 0.1)
    floats = image(2, integer=False)
    cd.add_case(tmp_path, "float", floats, points(2), 0.1)
    assert sitk.ReadImage(str(tmp_path / "int.nrrd")).GetPixelID() == sitk.sitkInt16
    assert sitk.ReadImage(str(tmp_path / "float.nrrd")).GetPixelID() == sitk.sitkFloat32
    assert np.array_equal(read_radiograph(tmp_path / "float.nrrd").pixels, floats)


def test_anisotropic_spacing_is_carried_by_the_image(tmp_path):
    cd.add_case(tmp_path, "aniso", image(), points(), (0.1, 0.15))
    (row,) = cd.read_cases(tmp_path)
    assert row["spacing_mm"] == ""  # one CSV number cannot hold a pair; the NRRD does
    (sample,) = load_generic(tmp_path)
    assert sample.spacing_mm is None
    assert read_radiograph(sample.image_path).spacing_mm == (0.1, 0.15)


def test_identity_is_the_pixel_content():
    pixels = image()
    assert cd.pixels_sha256(pixels) == cd.pixels_sha256(pixels.astype(np.uint16))
    changed = pixels.copy()
    changed[60, 40] += 1
    assert cd.pixels_sha256(changed) != cd.pixels_sha256(pixels)
    assert cd.pixels_sha256(pixels.reshape(96, 120)) != cd.pixels_sha256(pixels)  # the shape counts


def test_the_same_radiograph_under_another_name_is_refused_and_nothing_changes(tmp_path):
    cd.add_case(tmp_path, "first", image(), points(), 0.1)
    before = snapshot(tmp_path)
    with pytest.raises(cd.DuplicateCase) as e:
        cd.add_case(tmp_path, "renamed copy", image().astype(np.uint16), points(3), 0.2)
    assert e.value.image == "first.nrrd" and len(str(e.value).splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_replace_changes_the_row_in_place_and_keeps_an_unchanged_image(tmp_path):
    cd.add_case(tmp_path, "a", image(0), points(0), 0.1)
    cd.add_case(tmp_path, "b", image(1), points(1), 0.1)
    imageBytes = (tmp_path / "a.nrrd").read_bytes()
    moved = points(0)
    moved[5] += (3.25, -1.5)
    added = cd.add_case(tmp_path, "a", image(0), moved, 0.1, replace=True)
    assert added.replaced and added.row == 0 and added.n_images == 2 and added.image_path.name == "a.nrrd"
    samples = load_generic(tmp_path)
    assert [s.id for s in samples] == ["a", "b"]
    assert np.abs(samples[0].landmarks_px - moved).max() < 1e-3
    assert (tmp_path / "a.nrrd").read_bytes() == imageBytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nrrd", "b.nrrd", GENERIC_CSV]


def test_replace_with_another_spacing_rewrites_the_image_and_drops_the_old_file(tmp_path):
    cd.add_case(tmp_path, "a", image(0), points(0), 0.1)
    added = cd.add_case(tmp_path, "a", image(0), points(0), 0.2, replace=True)
    assert added.image_path.name == "a-2.nrrd"  # written beside the old one, which the CSV listed until the commit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-2.nrrd", GENERIC_CSV]
    (sample,) = load_generic(tmp_path)
    assert sample.spacing_mm == (0.2, 0.2) and read_radiograph(sample.image_path).spacing_mm == (0.2, 0.2)


def test_another_radiograph_with_the_same_name_gets_its_own_file(tmp_path):
    cd.add_case(tmp_path, "ceph", image(0), points(0), 0.1)
    (tmp_path / "ceph-2.nrrd").write_bytes(b"someone else's file")
    added = cd.add_case(tmp_path, "ceph", image(1), points(1), 0.1)
    assert added.image_path.name == "ceph-3.nrrd" and added.n_images == 2
    assert (tmp_path / "ceph-2.nrrd").read_bytes() == b"someone else's file"
    assert [s.id for s in load_generic(tmp_path)] == ["ceph", "ceph-3"]


@pytest.mark.parametrize("missing", [[7], [2, 16]])
def test_a_point_without_position_is_refused_with_one_line(tmp_path, missing):
    pts = points()
    pts[missing] = np.nan
    with pytest.raises(CephError) as e:
        cd.add_case(tmp_path / "clinic", "x", image(), pts, 0.1, ABBREVIATIONS)
    text = str(e.value)
    assert len(text.splitlines()) == 1 and "place all 19 points" in text
    assert all(ABBREVIATIONS[i] in text.split(" has ")[0].split(" have ")[0] for i in missing)
    assert not (tmp_path / "clinic").exists()


def test_a_point_outside_the_image_is_refused(tmp_path):
    pts = points()
    pts[9] = (96.5, 50.0)  # Go, beyond the right edge of a 96 px wide image
    with pytest.raises(CephError) as e:
        cd.add_case(tmp_path / "clinic", "x", image(), pts, 0.1)
    assert str(e.value).startswith("landmark Go (96.5, 50.0) lies outside the image (96 x 120 px)")
    assert not (tmp_path / "clinic").exists()
    pts[9] = (96.0, 120.0)  # on the edge: inside
    cd.add_case(tmp_path / "clinic", "x", image(), pts, 0.1)


def test_a_csv_with_another_header_is_refused_and_left_alone(tmp_path, generic_dataset):
    """A generic dataset made by hand (its own header, a split column) is not ours to append to."""
    before = snapshot(generic_dataset)
    with pytest.raises(CephError) as e:
        cd.add_case(generic_dataset, "x", image(), points(), 0.1)
    assert "choose another folder" in str(e.value) and len(str(e.value).splitlines()) == 1
    assert snapshot(generic_dataset) == before


def test_other_landmarks_or_a_bad_spacing_or_image_are_refused(tmp_path):
    folder = tmp_path / "clinic"
    swapped = ABBREVIATIONS[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(CephError, match="19 ISBI landmarks in their order"):
        cd.add_case(folder, "x", image(), points(), 0.1, swapped)
    with pytest.raises(CephError, match="positive millimetres"):
        cd.add_case(folder, "x", image(), points(), 0.0)
    with pytest.raises(CephError, match="2D grey image"):
        cd.add_case(folder, "x", np.zeros((3, 40, 40)), points(), 0.1)
    bad = image()
    bad[3, 3] = np.inf
    with pytest.raises(CephError, match="NaN or infinite"):
        cd.add_case(folder, "x", bad, points(), 0.1)
    with pytest.raises(CephError, match="19 points"):
        cd.add_case(folder, "x", image(), points()[:18], 0.1)
    assert not folder.exists()


def test_a_failed_csv_write_removes_the_new_image(tmp_path, monkeypatch):
    cd.add_case(tmp_path, "a", image(0), points(0), 0.1)
    before = snapshot(tmp_path)
    real = cd.atomic_write

    def failing(path, write_fn):
        if os.path.basename(path) == GENERIC_CSV:
            raise OSError(28, "No space left on device")
        return real(path, write_fn)

    monkeypatch.setattr(cd, "atomic_write", failing)
    with pytest.raises(OSError):
        cd.add_case(tmp_path, "b", image(1), points(1), 0.1)
    assert snapshot(tmp_path) == before  # no b.nrrd, no temporary file, the CSV as it was


def test_a_failed_image_write_leaves_nothing(tmp_path, monkeypatch):
    cd.add_case(tmp_path, "a", image(0), points(0), 0.1)
    before = snapshot(tmp_path)

    def broken(self, *args):
        raise RuntimeError("disk error")

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", broken)
    with pytest.raises(RuntimeError):
        cd.add_case(tmp_path, "b", image(1), points(1), 0.1)
    assert snapshot(tmp_path) == before


def test_case_count_and_find_case(tmp_path):
    assert cd.case_count(tmp_path) == 0 and cd.find_case(tmp_path, image(0)) is None
    cd.add_case(tmp_path, "a", image(0), points(0), 0.1)
    cd.add_case(tmp_path, "b", image(1), points(1), 0.1)
    assert cd.case_count(tmp_path) == 2 and cd.find_case(tmp_path, image(1))["image"] == "b.nrrd"
