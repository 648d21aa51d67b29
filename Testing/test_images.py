import numpy as np
import pytest
import SimpleITK as sitk

from CephLandmarksLib.annotations.datasets import load_dataset, read_isbi_annotation
from CephLandmarksLib.errors import CephError
from CephLandmarksLib.imaging.images import read_radiograph


def _grad(h=40, w=30, dtype=np.uint8):
    return (np.arange(h * w).reshape(h, w) % 250).astype(dtype)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
def test_plain_formats_have_assumed_spacing(tmp_path, ext):
    p = tmp_path / f"a{ext}"
    sitk.WriteImage(sitk.GetImageFromArray(_grad()), str(p))
    r = read_radiograph(p)
    assert r.pixels.shape == (40, 30) and r.pixels.dtype == np.float32
    assert r.spacing_mm == (0.1, 0.1) and r.spacing_source == "assumed"
    assert read_radiograph(p, 0.25).spacing_mm == (0.25, 0.25)
    assert read_radiograph(p, (0.2, 0.3)).spacing_source == "user"


@pytest.mark.parametrize("ext", [".nrrd", ".mha", ".nii.gz"])
def test_physical_formats_keep_their_spacing(tmp_path, ext):
    img = sitk.GetImageFromArray(_grad(dtype=np.uint16) * 200)
    img.SetSpacing((0.15, 0.2))
    img.SetOrigin((3.0, 4.0))
    sitk.WriteImage(img, str(tmp_path / f"a{ext}"))
    r = read_radiograph(tmp_path / f"a{ext}")
    assert r.spacing_source == "file"
    np.testing.assert_allclose(r.spacing_mm, (0.15, 0.2))
    np.testing.assert_allclose(r.origin_lps[:2], (3.0, 4.0))
    assert r.pixels.max() > 255  # 16-bit values preserved


def test_rgb_becomes_grey_and_single_slice_volume_is_accepted(tmp_path):
    rgb = np.stack([_grad(), _grad(), _grad()], -1)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.png"))
    r = read_radiograph(tmp_path / "rgb.png")
    np.testing.assert_allclose(r.pixels, _grad())
    vol = sitk.GetImageFromArray(_grad()[None])
    vol.SetSpacing((0.3, 0.3, 2.0))
    sitk.WriteImage(vol, str(tmp_path / "one.nrrd"))
    r = read_radiograph(tmp_path / "one.nrrd")
    assert r.pixels.shape == (40, 30) and r.spacing_mm == (0.3, 0.3)


def test_dicom_pixel_spacing_and_monochrome1(tmp_path):
    img = sitk.GetImageFromArray(_grad(dtype=np.uint16))
    img.SetSpacing((0.125, 0.139))  # written as "0.139\\0.125" (row, column) in a spacing tag
    img.SetMetaData("0008|0060", "DX")
    img.SetMetaData("0028|0004", "MONOCHROME1")
    p = tmp_path / "x.dcm"
    sitk.WriteImage(img, str(p))
    r = read_radiograph(p)
    assert r.spacing_source in ("dicom:PixelSpacing", "dicom:ImagerPixelSpacing")
    np.testing.assert_allclose(r.spacing_mm, (0.125, 0.139))
    written = sitk.ImageFileReader()
    written.SetFileName(str(p))
    written.ReadImageInformation()
    if "MONOCHROME1" in written.GetMetaData("0028|0004"):
        np.testing.assert_allclose(r.pixels, _grad().max() - _grad())  # inverted: bone stays bright


def test_dicom_imager_pixel_spacing_fallback():
    from CephLandmarksLib.imaging.images import _dicom_spacing

    class Reader:
        def __init__(self, tags):
            self.tags = tags

        def HasMetaDataKey(self, k):
            return k in self.tags

        def GetMetaData(self, k):
            return self.tags[k]

    assert _dicom_spacing(Reader({"0018|1164": "0.139\\0.125"})) == ((0.125, 0.139), "dicom:ImagerPixelSpacing")
    assert _dicom_spacing(Reader({"0028|0030": "0.2\\0.2", "0018|1164": "0.1\\0.1"}))[1] == "dicom:PixelSpacing"
    assert _dicom_spacing(Reader({"0028|0030": "garbage"})) is None


def test_bad_images_give_clear_errors(tmp_path):
    with pytest.raises(CephError, match="not found"):
        read_radiograph(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(CephError, match="cannot read image"):
        read_radiograph(tmp_path / "junk.png")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 40, 30), np.uint8)), str(tmp_path / "vol.nrrd"))
    with pytest.raises(CephError, match="3 slices"):
        read_radiograph(tmp_path / "vol.nrrd")
    sitk.WriteImage(sitk.GetImageFromArray(_grad()), str(tmp_path / "ok.png"))
    with pytest.raises(CephError, match="positive"):
        read_radiograph(tmp_path / "ok.png", -1)


def _fake_isbi(root, n_lines=19, drop=None):
    (root / "RawImage" / "Test1Data").mkdir(parents=True)
    for doc in ("senior", "junior"):
        (root / "AnnotationsByMD" / f"400_{doc}").mkdir(parents=True)
    for i in (151, 152):
        sitk.WriteImage(sitk.GetImageFromArray(_grad()), str(root / "RawImage" / "Test1Data" / f"{i}.bmp"))
        for k, doc in enumerate(("senior", "junior")):
            if drop == (i, doc):
                continue
            lines = [f"{10 + j + 2 * k},{20 + j}" for j in range(n_lines)] + ["1", "2"]
            (root / "AnnotationsByMD" / f"400_{doc}" / f"{i}.txt").write_text("\n".join(lines))
    return root


def test_isbi_mean_of_doctors_and_extra_lines(tmp_path):
    s = load_dataset(_fake_isbi(tmp_path), "test1")
    assert [x.id for x in s] == ["151", "152"]
    np.testing.assert_allclose(s[0].landmarks_px[0], [11.0, 20.0])  # mean of 10 and 12
    np.testing.assert_allclose(load_dataset(tmp_path, "test1", "senior")[0].landmarks_px[0], [10.0, 20.0])


def test_isbi_missing_or_short_annotation(tmp_path):
    with pytest.raises(CephError, match="missing annotation file.*152.txt"):
        load_dataset(_fake_isbi(tmp_path / "a", drop=(152, "junior")), "test1")
    with pytest.raises(CephError, match="has 5 landmark lines"):
        read_isbi_annotation(_write(tmp_path / "s.txt", "\n".join(["1,2"] * 5)))
    with pytest.raises(CephError, match="line 2"):
        read_isbi_annotation(_write(tmp_path / "b.txt", "1,2\nx,y\n"))


def _write(p, text):
    p.write_text(text)
    return p


def test_generic_dataset(generic_dataset):
    train = load_dataset(generic_dataset, "train")
    test = load_dataset(generic_dataset, "test1")
    assert len(train) == 8 and len(test) == 2 and train[0].spacing_mm == (0.5, 0.5)
    with pytest.raises(CephError, match="neither an ISBI"):
        load_dataset(generic_dataset / "..", "train")


def test_real_isbi_image(isbi_root):
    r = read_radiograph(isbi_root / "RawImage" / "TrainingData" / "001.jpg")
    assert r.size == (1935, 2400) and r.spacing_source == "assumed"
    s = load_dataset(isbi_root, "train")
    assert len(s) == 150 and s[0].landmarks_px.shape == (19, 2)
    senior = read_isbi_annotation(isbi_root / "AnnotationsByMD" / "400_senior" / "001.txt")
    np.testing.assert_allclose(senior[0], [835, 996])
