"""Where a run's work runs: ``local`` (this process, the default) or ``ray`` (a Ray cluster).

The executor is chosen once, where the run is planned (:func:`resolve_executor`): the
``--executor`` option, else ``MIGRATE_EVAL_EXECUTOR``, else the suite's ``executor:``, else
``local``. Ray is the optional extra ``migrate-eval[ray]``: it is imported only when a run asks
for it (:func:`import_ray`), and a missing extra is a usage error with the install line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from migrate_eval.core.errors import ConfigError, MissingExtraError

Executor = Literal["local", "ray"]
EXECUTORS: tuple[Executor, ...] = ("local", "ray")
#: The environment variable that picks the executor when ``--executor`` is not given.
ENV_EXECUTOR = "MIGRATE_EVAL_EXECUTOR"


def resolve_executor(option: str | None, suite_value: str | None = None) -> Executor:
    """The executor of a run: ``option``, else the environment variable, else the suite's."""
    for value, where in (
        (option, "--executor"),
        (os.environ.get(ENV_EXECUTOR) or None, ENV_EXECUTOR),
        (suite_value, "the suite's executor"),
    ):
        if value is None:
            continue
        if value not in EXECUTORS:
            raise ConfigError(f"{where}: {value!r} is not an executor (local or ray)")
        return value
    return "local"


def import_ray() -> Any:
    """The ``ray`` module, or :class:`MissingExtraError` with the ``pip install`` line."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray", "--executor ray") from None
    return ray


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """Connect to Ray once per process and return the module.

    ``address``: ``auto`` (the cluster this machine belongs to), ``ray://host:10001`` (Ray
    Client) or None: ``RAY_ADDRESS`` when set, else a local cluster started here for the run
    (its workers import this copy of migrate-eval). An already connected process (a Ray job's
    driver, a test) is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        ray.init(address=address, **options)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(**options)
    else:  # a local cluster: its workers import the package this driver runs
        source = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
        ray.init(
            num_cpus=num_cpus,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
            **options,
        )
    return ray
