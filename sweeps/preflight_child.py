"""The preflight's model checks in a child process, started before the spec is even read.

``lottery run``'s driver needs no torch (its trials import it in their workers), but the
preflight builds every model (``sweeps.preflight_models``), and importing torch is 2-3 s of a
start on 2 cores. ``ModelCheck`` starts a child Python that imports torch and the model zoo
while the driver loads the spec and imports Ray and Tune (together about 2 s), then waits for
the child's answer before anything starts. Standard library only, so starting it costs
nothing.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec's module imports pydantic, which the child start must not wait for
    from sweeps.spec import SweepSpec

# How the child starts (after ``sys.executable``; the directory holding this package follows,
# first on the child's path, so the child runs this very code whatever its working directory
# holds). It answers on stdout (``sweeps.preflight_models.main``).
CHILD_ARGS = ("-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "from sweeps.preflight_models import main; main()")

log = logging.getLogger(__name__)


class ModelCheck:
    """The model checks (``sweeps.preflight_models.model_problems``), started now, asked later.

    In a process that has not imported torch, a child Python process imports torch and the
    model zoo at once and then waits for a spec: ``problems(spec)`` sends it one and waits for
    the answer. A process that already holds torch (a notebook, the tests) gains nothing from
    a child and runs the checks itself when asked. A child that fails to start, fails or
    answers nonsense is not trusted: the checks then run in this process, so that their error
    is raised as it would have been without a child. A context manager: leaving it stops a
    child whose answer went unread.
    """

    def __init__(self, child: bool | None = None) -> None:
        """``child``: None starts one only when this process has not imported torch."""
        self._proc: subprocess.Popen[str] | None = None
        if child if child is not None else "torch" not in sys.modules:
            package_parent = str(Path(__file__).resolve().parents[1])
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, *CHILD_ARGS, package_parent], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            except OSError as err:  # no interpreter to start: check here when asked
                log.debug("model preflight child not started: %s", err)

    def problems(self, spec: SweepSpec) -> list[tuple[str, str]]:
        """``spec``'s model problems as (field, reason) pairs (waits for the child; once).

        Raises:
            Exception: what building a model raises besides ValueError, TypeError and
                RuntimeError (which are problems), as ``model_problems`` raises it.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            # The child reads the spec only after its imports, so this never delays them.
            out, err = proc.communicate(json.dumps(spec.to_json()))
            try:
                if proc.returncode == 0:
                    return [(field, reason) for field, reason in json.loads(out)]
            except (ValueError, TypeError):  # not a list of pairs: not trusted either
                pass
            log.debug("model preflight child exited %s: %s %s", proc.returncode, out[-500:],
                      err[-2000:])
        from sweeps import preflight_models  # torch

        return preflight_models.model_problems(spec)

    def close(self) -> None:
        """Stop a child whose answer is no longer wanted (nothing when there is none)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.communicate()

    def __enter__(self) -> ModelCheck:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
