"""simnet errors: part of the one Bitterbot error tree.

::

    BitterbotError
    └── SimnetError              the harness itself failed (worker died, bad scenario file)
        ├── ScenarioError        a scenario file is malformed or names unknown parameters
        ├── WorkerError          a worker process crashed or answered an operation with an error
        └── NotAvailableError    the scenario needs a subsystem this build does not have yet
"""

from __future__ import annotations

from bitterbot.protocol.errors import BitterbotError


class SimnetError(BitterbotError):
    code = "simnet_error"


class ScenarioError(SimnetError):
    code = "bad_scenario"


class WorkerError(SimnetError):
    code = "simnet_worker_error"


class NotAvailableError(SimnetError):
    code = "not_available"
