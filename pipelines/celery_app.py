"""The Celery app of the optional Celery run launcher (`SHOPPULSE_RUN_LAUNCHER=celery`, docs/scaling.md).

Workers: `python -m celery -A pipelines.celery_app worker --pool prefork --concurrency 1 -Q dagster`
(the stack and docker-compose's `celery` profile start them). The app is configured exactly like the
`CeleryRunLauncher` in DAGSTER_HOME/dagster.yaml (same broker, backend, queue), from the settings.
"""

from dagster_celery.config import DEFAULT_CONFIG
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task

from shoppulse.settings import get_settings
from shoppulse.stack.celery import celery_app_args

_args = celery_app_args(get_settings())
app = make_app(app_args={**_args, "config_source": {**DEFAULT_CONFIG, **_args["config_source"]}})
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
