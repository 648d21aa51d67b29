"""The lines a command prints for a process that watches it (the Slicer module): progress and the
one error line.  No torch: the Slicer process parses them."""

PROGRESS_PREFIX = "[progress]"  # `--progress` lines: "[progress] FRACTION STAGE"
ERROR_PREFIX = "ceph-landmarks: error:"  # the one line a user error prints


def progress_line(fraction: float, stage: str) -> str:
    """`[progress] 0.40 stage`: the fraction done, two decimals, and what is running."""
    return f"{PROGRESS_PREFIX} {fraction:.2f} {stage}"
