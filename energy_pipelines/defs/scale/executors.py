"""Which executor runs the units job: in process (the default), or Dagster's Celery executor on
a broker that workers started with the same settings consume (`celery -A
energy_pipelines.celery_app worker`, docs/scaling.md).

Read from the environment, by the run's process and by every worker alike:
ENERGY_EXECUTOR (in_process | celery | k8s), ENERGY_CELERY_BROKER (amqp://guest:guest@127.0.0.1:5672//),
ENERGY_CELERY_BACKEND (rpc://) and ENERGY_CELERY_QUEUE (dagster).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import dagster as dg

EXECUTOR_ENV = "ENERGY_EXECUTOR"
# k8s: each step a Kubernetes Job (dagster-k8s, the `k8s` extra; deploy/k8s/).
EXECUTORS = ("in_process", "celery", "k8s")
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def executor_choice() -> str:
    raw = (os.environ.get(EXECUTOR_ENV) or EXECUTORS[0]).strip().lower().replace("-", "_")
    if raw not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={raw!r} must be one of: {', '.join(EXECUTORS)}")
    return raw


@dataclass(frozen=True)
class CelerySettings:
    broker: str
    backend: str
    queue: str

    @classmethod
    def from_env(cls) -> CelerySettings:
        return cls(
            broker=os.environ.get("ENERGY_CELERY_BROKER") or DEFAULT_BROKER,
            backend=os.environ.get("ENERGY_CELERY_BACKEND") or "rpc://",
            queue=os.environ.get("ENERGY_CELERY_QUEUE") or "dagster",
        )

    def config_source(self) -> dict[str, Any]:
        """Celery settings shared by the run's process (which sends the steps) and the workers
        (which take them): only together do they give a redelivery on a worker's death."""
        return {
            # Acknowledged when the step ends, not when it starts: the message of a worker that
            # dies mid-unit (kill -9, a lost machine) goes back to the queue and another worker
            # takes it. The unit's files load once whichever copy runs (units.py).
            "task_acks_late": True,
            # A pool process that dies mid-task: its message goes back to the queue too.
            "task_reject_on_worker_lost": True,
            # One message at a time per worker process: a step waiting in a busy worker's
            # prefetch would wait for that worker instead of going to an idle one.
            "worker_prefetch_multiplier": 1,
            "task_default_queue": self.queue,
            "broker_connection_retry_on_startup": True,
            # A run started while the broker is down fails after these few tries, instead of
            # waiting for it (the run says why; nothing was loaded).
            "broker_transport_options": {
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.5,
                "interval_max": 1,
            },
            "broker_connection_timeout": 4,
        }

    def executor_config(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "backend": self.backend,
            "config_source": self.config_source(),
        }


def units_executor() -> dg.ExecutorDefinition:
    """The executor ENERGY_EXECUTOR names, configured from the environment."""
    choice = executor_choice()
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor  # configured by the run (deploy/k8s/run-config.yaml)
    from dagster_celery import celery_executor

    return celery_executor.configured(CelerySettings.from_env().executor_config())
