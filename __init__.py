import os

from fastapi import APIRouter, Depends, Request
from lnbits.task_manager import task_manager
from loguru import logger

from .crud import db
from .messages import language_from_header, set_language
from .tasks import (
    RECOVERY_INTERVAL_SECONDS,
    listener_status,
    on_invoice_paid,
    recovery_loop,
)
from .views import satmachineadmin_generic_router
from .views_api import satmachineadmin_api_router
from .views_api_alerts import satmachineadmin_alerts_router
from .views_api_lamassu import satmachineadmin_lamassu_router
from .views_api_machines import satmachineadmin_machines_router
from .views_api_statements import satmachineadmin_statements_router
from .views_api_upgrade import satmachineadmin_upgrade_router


async def read_request_language(request: Request) -> None:
    """Texts this request writes (errors, stored messages rendered again) are
    in the language the dashboard sends (LNbits' language selector), else the
    caller's Accept-Language, else English. See messages.py."""
    set_language(language_from_header(request.headers.get("accept-language")))


satmachineadmin_ext: APIRouter = APIRouter(
    prefix="/satmachineadmin",
    tags=["satmachineadmin"],
    dependencies=[Depends(read_request_language)],
)
satmachineadmin_ext.include_router(satmachineadmin_generic_router)
satmachineadmin_ext.include_router(satmachineadmin_api_router)
satmachineadmin_ext.include_router(satmachineadmin_lamassu_router)
satmachineadmin_ext.include_router(satmachineadmin_machines_router)
satmachineadmin_ext.include_router(satmachineadmin_upgrade_router)
satmachineadmin_ext.include_router(satmachineadmin_statements_router)
satmachineadmin_ext.include_router(satmachineadmin_alerts_router)

satmachineadmin_static_files = [
    {"path": "/satmachineadmin/static", "name": "satmachineadmin_static"}
]

scheduled_tasks: list = []

# Tests only: "off" (read at start) leaves the periodic recovery loop
# unscheduled, so the in-process test app runs a recovery pass only when a test
# calls one (tasks.run_recovery / recovery_loop), never in the middle of another
# test. Unset (production, and every LNbits process the tests start): the loop.
RECOVERY_LOOP_ENV = "SATMACHINE_RECOVERY_LOOP"


def recovery_loop_enabled() -> bool:
    return os.environ.get(RECOVERY_LOOP_ENV, "").strip().lower() != "off"


def satmachineadmin_stop():
    for task in scheduled_tasks:
        try:
            task_manager.cancel_task(task)
        except Exception as exc:
            logger.warning(exc)
    scheduled_tasks.clear()


def satmachineadmin_start():
    # LNbits calls this without awaiting: only schedule tasks here.
    from .models import utc_now

    listener_status["started_at"] = utc_now()
    scheduled_tasks.append(
        task_manager.register_invoice_listener(on_invoice_paid, "ext_satmachineadmin")
    )
    if not recovery_loop_enabled():
        logger.warning("satmachineadmin: recovery loop off (tests only)")
        return
    scheduled_tasks.append(
        task_manager.create_permanent_task(
            recovery_loop,
            name="ext_satmachineadmin_recovery",
            interval=RECOVERY_INTERVAL_SECONDS,
        )
    )


__all__ = [
    "db",
    "satmachineadmin_ext",
    "satmachineadmin_start",
    "satmachineadmin_static_files",
    "satmachineadmin_stop",
]
