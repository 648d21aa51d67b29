"""The patient's age and sex from a DICOM header (PatientAge 0010|1010, PatientSex 0010|0040), when present.

They choose age- and sex-specific norms for the named analyses. Only the header is read
(SimpleITK's ReadImageInformation), and anything unreadable or odd gives None: these tags
are a convenience, never a reason to refuse an image.
"""

import re
from pathlib import Path

AGE_TAG = "0010|1010"
SEX_TAG = "0010|0040"
AGE_UNITS_PER_YEAR = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}  # DICOM AS: nnnD, nnnW, nnnM, nnnY
SEXES = {"M": "male", "F": "female"}


def age_years_from_dicom(text: str | None) -> float | None:
    """A DICOM Age String ('014Y', '030M') in years; None when absent or malformed."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", text or "")
    return int(m[1]) / AGE_UNITS_PER_YEAR[m[2]] if m else None


def sex_from_dicom(text: str | None) -> str | None:
    """'M'/'F' -> 'male'/'female'; 'O', empty or anything else -> None."""
    return SEXES.get((text or "").strip().upper())


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def dicom_patient(path) -> tuple:
    """(age in years or None, sex or None) from a DICOM file's header; (None, None) for any other file."""
    path = Path(path)
    if not path.is_file() or not _is_dicom(path):
        return None, None
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        tags = {k: reader.GetMetaData(k) for k in (AGE_TAG, SEX_TAG) if reader.HasMetaDataKey(k)}
    except RuntimeError:
        return None, None
    return age_years_from_dicom(tags.get(AGE_TAG)), sex_from_dicom(tags.get(SEX_TAG))
