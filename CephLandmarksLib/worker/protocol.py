"""The lines between the Slicer module and `ceph-landmarks worker`; no torch (Slicer's process parses them).

One job is one line in: ``{"detect": [ARGS...]}``, the arguments of ``ceph-landmarks detect``.  The
worker answers with what that command prints (``[progress] F stage`` lines, and the error line on
failure, on stderr) and then one line on stdout: ``[result] {"exit_code": N, "written": [paths]}``.
"""

import json

RESULT_PREFIX = "[result]"
DEFAULT_IDLE_TIMEOUT_S = 900.0  # a worker nobody has used for 15 minutes exits (its memory goes back)


def job_line(detect_args) -> str:
    """The line that asks the worker to run `ceph-landmarks detect ARGS...` (newline included)."""
    return json.dumps({"detect": [str(a) for a in detect_args]}, ensure_ascii=True) + "\n"


def parse_job(line: str) -> list:
    """The detect arguments of a job line; ValueError naming what is wrong."""
    try:
        job = json.loads(line)
    except json.JSONDecodeError:
        raise ValueError("a job line must be JSON") from None
    args = job.get("detect") if isinstance(job, dict) else None
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ValueError('a job line must be {"detect": [arguments of ceph-landmarks detect]}')
    return args


def result_line(exit_code: int, written) -> str:
    return f"{RESULT_PREFIX} " + json.dumps({"exit_code": int(exit_code), "written": [str(p) for p in written]})


def parse_result(line: str):
    """{"exit_code", "written"} of a result line, else None (any other line)."""
    if not line.startswith(RESULT_PREFIX):
        return None
    try:
        result = json.loads(line[len(RESULT_PREFIX):])
    except json.JSONDecodeError:
        return None
    return result if isinstance(result, dict) and isinstance(result.get("exit_code"), int) else None
