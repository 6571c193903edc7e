"""An :class:`~din_lab.he.pool.EvaluationPool` worker: ``python -m din_lab.he._worker``, spoken to over
its standard input and output (anything else the process prints goes to standard error, so it
cannot corrupt the frames)."""

import os
import sys

from din_lab.he.pool import serve

if __name__ == "__main__":
    frames = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, frames)
