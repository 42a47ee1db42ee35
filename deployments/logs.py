"""Route the `voxserve.*` loggers of a replica into its Serve replica log.

Serve configures only its own `ray.serve` logger in replica processes; records of other loggers
would go to the worker's stderr file at the root's WARNING level, so our per-turn lines (stage
timings, cancellations) would vanish. Reusing Serve's handlers puts them in the same file, with
the replica and request ids Serve's formatter adds.
"""

from __future__ import annotations

import logging


def route_to_serve_log(level: int = logging.INFO) -> None:
    ours = logging.getLogger("voxserve")
    ours.setLevel(level)
    for handler in logging.getLogger("ray.serve").handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
    ours.propagate = False
