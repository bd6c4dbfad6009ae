from http import HTTPStatus

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from lnbits.core.models import User
from lnbits.decorators import check_user_exists
from lnbits.helpers import template_renderer
from lnbits.settings import settings

satmachineadmin_generic_router = APIRouter()


def satmachineadmin_renderer():
    return template_renderer(["satmachineadmin/templates"])


@satmachineadmin_generic_router.get("/", response_class=HTMLResponse)
async def index(request: Request, user: User = Depends(check_user_exists)):
    if not settings.is_admin_user(user.id):
        raise HTTPException(
            HTTPStatus.FORBIDDEN,
            "The DCA admin is for the LNbits super user or admins.",
        )
    return satmachineadmin_renderer().TemplateResponse(
        "satmachineadmin/index.html", {"request": request, "user": user.json()}
    )
