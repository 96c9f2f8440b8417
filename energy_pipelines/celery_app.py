"""The Celery app a worker runs: Dagster's step task, with the project's broker and settings.

    celery -A energy_pipelines.celery_app worker --queues dagster --pool solo

The worker reads the same environment as the run's process (defs/scale/executors.py:
ENERGY_CELERY_BROKER, ENERGY_CELERY_BACKEND, ENERGY_CELERY_QUEUE) and the project's own
(DATABASE_URL, ENERGY_LANDING_DIR, ...): a step's database and landing root are the worker's.
Before it takes any task it checks that it reaches PostgreSQL, and refuses to start when not:
a worker that cannot load would only fail the units it takes.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import signals
from dagster_celery.config import dict_wrapper
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task
from kombu import Queue

from energy_pipelines.defs.scale.executors import CelerySettings

_settings = CelerySettings.from_env()

app = make_app(
    {
        "broker": _settings.broker,
        "backend": _settings.backend,
        "include": [],
        "config_source": dict_wrapper(_settings.config_source()),
    }
)
# make_app declares Dagster's fixed queue; the queue of this deployment replaces it.
app.conf.task_queues = [
    Queue(
        _settings.queue, routing_key=f"{_settings.queue}.#", queue_arguments={"x-max-priority": 10}
    )
]
execute_plan = create_task(app)


@signals.worker_init.connect
def _check_database(**_: Any) -> None:
    from energy_pipelines.load.database import connect, redact_url, resolve_database_url
    from energy_pipelines.settings import Settings

    url = resolve_database_url(Settings.from_env())
    try:
        with connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    except Exception as error:
        print(
            f"energy-pipelines worker: PostgreSQL at {redact_url(url)} is not reachable "
            f"({str(error).splitlines()[0]}): not starting",
            file=sys.stderr,
        )
        sys.exit(3)
