"""The dashboard page. LNbits' dynamic frontend renders it: core's page
(`base.html`) loads `static/routes.json`, then the template `static/index.vue`,
the translations `static/i18n/<lang>.js` and the component `static/index.js`.
This route only serves a direct load of /satmachineadmin/, and keeps it for
admins; every API route checks the same on its own (auth.py), which is the
real guard: the static files hold no data."""

from http import HTTPStatus

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from lnbits.core.models import User
from lnbits.core.views.generic import index as lnbits_page
from lnbits.decorators import check_user_exists
from lnbits.settings import settings

from .messages import text

satmachineadmin_generic_router = APIRouter()


@satmachineadmin_generic_router.get("/", response_class=HTMLResponse)
async def index(request: Request, user: User = Depends(check_user_exists)):
    if not settings.is_admin_user(user.id):
        raise HTTPException(HTTPStatus.FORBIDDEN, text("auth.page_admins_only"))
    return await lnbits_page(request, user=user)
