"""The "nothing silently ignored" rule on routes of every kind a later engineer may write:
query parameters from the signature, a dependency or a parameter model, aliases, nested body
models in lists and unions, a plain (non-strict) model, a raw body read by the endpoint."""

from __future__ import annotations

from typing import Annotated, Literal

import httpx
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from libs.strict_params import StrictModel, reject_unknown


class Inner(BaseModel):  # a plain model, as another engineer may write it
    a: int = 0


class Other(BaseModel):
    kind: Literal["other"]
    b: int = 0


class Body(StrictModel):
    name: str = Field(alias="display_name")
    items: list[Inner] = Field(default_factory=list)
    choice: Inner | Other | None = None
    tags: dict[str, Inner] = Field(default_factory=dict)


class Paging(BaseModel):
    page: int = 1
    size: int = 10


def paging(cursor: str | None = None) -> str | None:
    return cursor


def app() -> FastAPI:
    a = FastAPI(dependencies=[Depends(reject_unknown)])

    @a.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        return JSONResponse(
            {
                "detail": [
                    {"field": ".".join(map(str, x["loc"][1:])), "msg": x["msg"]} for x in e.errors()
                ]
            },
            status_code=422,
        )

    @a.get("/plain", dependencies=[Depends(paging)])
    async def plain(q: str | None = None, limit: int = Query(5, alias="max")):
        return {"q": q, "limit": limit}

    @a.get("/model")
    async def model(p: Annotated[Paging, Query()]):
        return p.model_dump()

    @a.post("/body")
    async def body(b: Body):
        return b.model_dump()

    @a.post("/nobody")
    async def nobody():
        return {}

    @a.post("/raw")
    async def raw(request: Request):
        return {"bytes": len(await request.body())}

    return a


def fields(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    return [d["field"] for d in r.json()["detail"]]


async def test_every_kind_of_route_refuses_what_it_does_not_declare():
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app()), base_url="http://t"
    ) as c:
        # declared: signature, alias, dependency; undeclared: the field's own name under an alias
        r = await c.get("/plain", params={"q": "x", "max": 2, "cursor": "c"})
        assert r.status_code == 200 and r.json() == {"q": "x", "limit": 2}
        assert fields(await c.get("/plain", params={"limit": 2, "zz": 1})) == ["limit", "zz"]
        assert (await c.get("/model", params={"page": 2, "size": 3})).status_code == 200
        assert fields(await c.get("/model", params={"page": 2, "colour": 1})) == ["colour"]

        ok = {
            "display_name": "n",
            "items": [{"a": 1}],
            "choice": {"kind": "other", "b": 2},
            "tags": {"t": {"a": 1}},
        }
        assert (await c.post("/body", json=ok)).status_code == 200
        bad = {
            "display_name": "n",
            "items": [{"a": 1}, {"a": 2, "x": 0}],
            "choice": {"kind": "other", "b": 2, "y": 0},
            "tags": {"t": {"z": 1}},
            "top": 1,
        }
        assert sorted(fields(await c.post("/body", json=bad))) == [
            "choice.y",
            "items.1.x",
            "tags.t.z",
            "top",
        ]
        assert fields(await c.post("/nobody", json={"stray": 1})) == ["stray"]
        assert (await c.post("/nobody")).status_code == 200
        # an endpoint that reads its raw body decides what it takes
        r = await c.post("/raw", json={"anything": 1})
        assert r.status_code == 200 and r.json()["bytes"] > 0
