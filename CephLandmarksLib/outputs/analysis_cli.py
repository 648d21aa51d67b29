"""The command line's named-analysis options (detect, report) and the `ceph-landmarks analyses` listing.

Kept out of cli.py (one concept a file): the options, their help, and turning them into a
checked cephalometry.detection_analyses.AnalysisOptions before any image is read, so an
unknown analysis or a bad norms file costs one line and exit 2, and no model is loaded.
"""

import argparse

DEFAULT_WHY = ("default: Steiner, Downs, Björk-Jarabak, McNamara and ISBI 2015: the four analyses most "
               "taught and asked for, each fully defined by the 19 points, plus the challenge's eight for "
               "comparison with published results; 'all' adds Tweed, the Ricketts and Holdaway parts, "
               "Legan-Burstone's lips and the sagittal jaw relation")
SEXES = ("male", "female")
AGE_LIMITS = (3.0, 100.0)


def _age(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not AGE_LIMITS[0] <= value <= AGE_LIMITS[1]:
        raise argparse.ArgumentTypeError(f"expected an age in years from {AGE_LIMITS[0]:g} to {AGE_LIMITS[1]:g}, "
                                         f"got {text!r}")
    return value


def add_analysis_arguments(parser) -> None:
    """--analyses, --norms, --horizontal, --age, --sex on a detect or report sub-command."""
    g = parser.add_argument_group("named analyses (docs/analyses.md)")
    g.add_argument("--analyses", metavar="NAMES|all",
                   help="comma-separated analysis keys or names (`ceph-landmarks analyses` lists them); " + DEFAULT_WHY)
    g.add_argument("--norms", metavar="FILE", help="a clinic's norms (JSON in the catalogue's schema) in place of "
                                                   "the shipped ones, by analysis and measurement key")
    g.add_argument("--horizontal", metavar="FH|constructed|ANALYSIS=...",
                   help="reference horizontal for the analyses that offer a choice: FH (Frankfort, Po-Or; default) "
                        "or constructed (S-N turned 7 deg, for a doubtful porion); per analysis as "
                        "downs=constructed,mcnamara=FH")
    g.add_argument("--age", type=_age, metavar="YEARS",
                   help="the patient's age: age-specific norms and Ricketts' yearly correction "
                        "(default: the DICOM PatientAge, if any)")
    g.add_argument("--sex", choices=SEXES, help="the patient's sex, for sex-specific norms (default: the DICOM "
                                                "PatientSex, if any)")


def analysis_options(args):
    """The checked AnalysisOptions of parsed arguments (CephError: one line naming what is wrong)."""
    from pathlib import Path

    from ..cephalometry.detection_analyses import AnalysisOptions, parse_horizontal
    from ..errors import CephError

    if args.norms and not Path(args.norms).is_file():
        raise CephError(f"--norms {args.norms}: no such file")
    return AnalysisOptions(
        args.analyses, args.norms, parse_horizontal(args.horizontal), args.age, args.sex,
        age_source="user" if args.age is not None else None, sex_source="user" if args.sex else None,
    ).check()


def _cmd_analyses(args) -> None:
    from ..cephalometry.catalogue import load_catalogue, with_norms_file
    from ..cephalometry.catalogue_listing import catalogue_markdown

    catalogue = load_catalogue()
    if args.norms:
        catalogue = with_norms_file(catalogue, args.norms)
    print(catalogue_markdown(catalogue), end="")


def add_analyses_command(subparsers) -> None:
    """`ceph-landmarks analyses [--norms FILE]`: the catalogue with norms and sources, as Markdown tables."""
    a = subparsers.add_parser("analyses", help="list the named analyses: each measurement's definition, norm and "
                                               "source (Markdown)")
    a.add_argument("--norms", metavar="FILE", help="show a clinic's norms file in place of the shipped norms")
    a.set_defaults(func=_cmd_analyses)
