"""The 19 landmarks of the ISBI 2015 cephalometric benchmark, in the challenge's order."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Landmark:
    index: int  # 1-based, as in the challenge
    name: str
    abbreviation: str


ISBI_LANDMARKS = tuple(
    Landmark(i + 1, name, abbr)
    for i, (name, abbr) in enumerate(
        [
            ("Sella", "S"),
            ("Nasion", "N"),
            ("Orbitale", "Or"),
            ("Porion", "Po"),
            ("Subspinale (A point)", "A"),
            ("Supramentale (B point)", "B"),
            ("Pogonion", "Pog"),
            ("Menton", "Me"),
            ("Gnathion", "Gn"),
            ("Gonion", "Go"),
            ("Lower incisal incision", "LIT"),
            ("Upper incisal incision", "UIT"),
            ("Upper lip", "UL"),
            ("Lower lip", "LL"),
            ("Subnasale", "Sn"),
            ("Soft tissue pogonion", "Pog'"),
            ("Posterior nasal spine", "PNS"),
            ("Anterior nasal spine", "ANS"),
            ("Articulare", "Ar"),
        ]
    )
)
N_LANDMARKS = len(ISBI_LANDMARKS)
