"""task-gateway HTTP API (FastAPI): the app, assembled from one router per area.

What applies to every route is set here: the unknown-name rule and the role policy (app
dependencies), the audit log (middleware), the 422 and 503 bodies, local docs and console
pages. The routes live in their areas: task creation (task_create_api), task lists and
control (tasks_api), statistics, data, cost, admin, analytics, the console's users, and the
account-manager's forwarded pool API.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from libs.kafka import Outgoing, Producer
from libs.settings import Settings
from libs.strict_params import document_rejections, reject_unknown

from . import (
    admin_api,
    analytics_api,
    console_api,
    cost_api,
    data_api,
    pool_forward,
    pricing,
    static_ui,
    statistics_api,
    task_create_api,
    task_detail_api,
    tasks_api,
    unavailable,
)
from . import alerts as alerts_api
from .api_models import (
    OPENAPI_TAGS,
    TAG_ADMIN,
    TAG_DATA,
    Rejection,
)
from .audit import AuditMiddleware
from .console_auth import Authorizer, document_roles
from .console_users import ConsoleUsers
from .kol_tasks import KolTaskView
from .limits import FieldError
from .task_requests import field_error, validation_errors
from .task_view import TaskView


def create_app(
    settings: Settings,
    producer: Producer,
    view: TaskView,
    get_store: data_api.StoreGetter | None = None,
    kol_view: KolTaskView | None = None,
    *,
    alerts: alerts_api.AlertEvaluator | None = None,
    users: ConsoleUsers | None = None,
) -> FastAPI:
    # Who may call what is decided once, for every route (console_auth): the bearer token or
    # a console session, CSRF, and the role the route needs. An empty token accepts nobody.
    # `auth` is the same callable, so routes that name it run it once per request.
    auth = Authorizer(settings, users)
    app = FastAPI(
        title="XGet task gateway",
        version="1",
        docs_url=None,  # served from local files by static_ui (works offline)
        redoc_url=None,
        # An unknown parameter or field is a 422 before anything else looks at the request.
        dependencies=[Depends(reject_unknown), Depends(auth)],
        openapi_tags=OPENAPI_TAGS,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        return JSONResponse({"status": "rejected", "detail": validation_errors(e)}, status_code=422)

    @app.exception_handler(FieldError)
    async def _out_of_bounds(_: Request, e: FieldError):
        return field_error(e.field, e.message)

    unavailable.install(app, settings)
    document_rejections(app, Rejection)

    async def publish(out: Outgoing) -> None:
        """Write one command; a broker that does not acknowledge it in time is a 503."""
        await unavailable.within(settings, "kafka", producer.send_and_wait(out))

    # Every state-changing request, done or refused, goes to the audit log (audit.py).
    app.add_middleware(AuditMiddleware, publish=publish)
    static_ui.install(app, settings)

    @app.get("/health", tags=[TAG_ADMIN])
    async def health():
        return {"status": "ok"}

    app.include_router(task_create_api.create_router(settings, publish, view, auth, kol_view))
    app.include_router(tasks_api.create_router(settings, publish, view, auth, kol_view))
    app.include_router(admin_api.create_router(settings, view, kol_view, get_store, auth))
    app.include_router(pricing.router(settings, auth))
    if alerts is not None:
        app.include_router(alerts_api.router(alerts, auth))
    if get_store is not None:
        app.include_router(statistics_api.create_router(settings, get_store, view, auth))
        app.include_router(data_api.create_router(settings, get_store, view, auth), tags=[TAG_DATA])
        app.include_router(cost_api.create_router(settings, get_store, view, auth, kol_view))
        app.include_router(analytics_api.create_router(settings, get_store, view))
        app.include_router(task_detail_api.create_router(settings, get_store, view, publish))
    if users is not None:
        app.include_router(console_api.create_router(settings, users, auth))
    app.include_router(pool_forward.create_router(settings))
    document_roles(app)
    return app
