"""Nothing silently ignored: on every route of an XGet HTTP API (the gateway, the
account-manager's admin API) an unknown query parameter or body field is a 422 naming it.

One app-level dependency (`reject_unknown`) runs before every route's own dependencies, so a
route added later, by any router, is covered without doing anything. What a route accepts is
read from the route itself: the query parameters FastAPI collected from its signature and its
dependencies (aliases included), and the pydantic model of its body, walked through nested
models, lists and optionals. A route without a body refuses a JSON object's fields too
(unless its endpoint takes the Request and reads a raw body itself). Body
models of our own also say `extra="forbid"` (StrictModel), so the OpenAPI document shows
`additionalProperties: false`; the walk covers models that do not.
"""

from __future__ import annotations

import importlib.util
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A request body: a field it does not declare is an error, never dropped."""

    model_config = ConfigDict(extra="forbid")


def declared_query(route: APIRoute) -> set[str]:
    """The query parameter names the route reads (its own and its dependencies')."""
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dep = pending.pop()
        for f in dep.query_params:
            model = _model_of(f.field_info.annotation)
            if model is not None:  # a query parameter model: its fields are the names
                names |= _names(model)
            else:
                names.add(f.alias)
        pending.extend(dep.dependencies)
    return names


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """Every name the model reads a field under (name, alias, validation alias) -> its type."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        keys = {info.alias or name}
        if isinstance(info.validation_alias, str):
            keys.add(info.validation_alias)
        if info.alias is None or model.model_config.get("populate_by_name"):
            keys.add(name)
        out.update(dict.fromkeys(keys, info.annotation))
    return out


def _names(model: type[BaseModel]) -> set[str]:
    return set(_fields(model))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for t in _alternatives(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _alternatives(annotation: Any) -> list[Any]:
    """The types an annotation allows (Optional/Union/Annotated unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _alternatives(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [t for a in get_args(annotation) for t in _alternatives(a)]
    return [annotation]


def unknown_fields(annotation: Any, value: Any, path: str = "") -> list[str]:
    """Dotted paths of the fields in `value` (parsed JSON) that `annotation` does not declare.
    Among several models a value may be (a union), the one it fits best is taken."""
    best: list[str] | None = None
    for t in _alternatives(annotation):
        found = _unknown_in(t, value, path)
        if found is None:
            continue
        if best is None or len(found) < len(best):
            best = found
        if not found:
            break
    return best or []


def _unknown_in(t: Any, value: Any, path: str) -> list[str] | None:
    """None: `value` is not of type `t` (another alternative may be)."""
    origin = get_origin(t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        if not isinstance(value, dict):
            return None
        if t.model_config.get("extra") == "allow":
            return []
        fields = _fields(t)
        out = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key not in fields:
                out.append(where)
            else:
                out += unknown_fields(fields[key], item, where)
        return out
    if origin in (list, tuple, set, frozenset):
        if not isinstance(value, list):
            return None
        args = get_args(t)
        item_type = args[0] if args else Any
        return [
            u
            for i, item in enumerate(value)
            for u in unknown_fields(item_type, item, f"{path}.{i}")
        ]
    if origin is dict:
        if not isinstance(value, dict):
            return None
        args = get_args(t)
        item_type = args[1] if len(args) == 2 else Any
        return [
            u for k, item in value.items() for u in unknown_fields(item_type, item, f"{path}.{k}")
        ]
    if origin is Literal or t is Any:
        return []
    return [] if not isinstance(value, dict) else None


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def _form_fields(request: Request, route: APIRoute) -> dict | None:
    """A form's field names (values not needed). None when the form cannot be read here:
    python-multipart missing, or an endpoint that reads the stream itself."""
    if route.body_field is None and route.dependant.request_param_name is not None:
        return None
    if importlib.util.find_spec("python_multipart") is None:  # Starlette's form parser
        return None
    form = await request.form()  # FastAPI parsed a form body already: this is its cache
    return dict.fromkeys(form.keys())


def _error(location: str, field: str, value: Any, message: str) -> dict:
    return {
        "type": "extra_forbidden",
        "loc": (location, *field.split(".")),
        "msg": message,
        "input": value,
    }


async def reject_unknown(request: Request) -> None:
    """The app-level dependency: 422 naming every query parameter and body field the matched
    route does not declare."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return  # pages (the console, /docs) take whatever their own client-side router reads
    if (route.openapi_extra or {}).get("x-xget-forwarded"):
        return  # handed on whole: the API it is forwarded to applies this same rule
    errors = []
    allowed = declared_query(route)
    for name in dict.fromkeys(request.query_params.keys()):
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) or "no query parameters"
            errors.append(
                _error(
                    "query",
                    name,
                    request.query_params.get(name),
                    f"unknown query parameter; this route takes: {takes}",
                )
            )
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in FORM_TYPES:
        data = await _form_fields(request, route)
    else:
        # A JSON route's body FastAPI has read already (cached); a route without one: read here.
        body = await request.body()
        try:
            data = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            data = None  # FastAPI answers a malformed body itself
    if route.body_field is None:
        # An endpoint that takes the Request may read a raw body itself (an import file).
        if isinstance(data, dict) and route.dependant.request_param_name is None:
            for key, item in data.items():
                errors.append(_error("body", key, item, "unknown field: this route takes no body"))
    elif data is not None:
        for field in unknown_fields(route.body_field.field_info.annotation, data):
            errors.append(
                _error("body", field, None, "unknown field (not part of this route's body)")
            )
    if errors:
        raise RequestValidationError(errors)


def document_rejections(app: FastAPI, model: type[BaseModel]) -> None:
    """The OpenAPI document shows the 422 every operation can really answer (`model`, the
    app's rejection body, since any route refuses an unknown parameter), in place of
    FastAPI's default HTTPValidationError, which the gateway never sends."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        name = model.__name__
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        if name not in schemas:
            schemas.update(
                model.model_json_schema(ref_template="#/components/schemas/{model}").pop(
                    "$defs", {}
                )
            )
            schemas[name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas[name].pop("$defs", None)
        for ops in doc.get("paths", {}).values():
            for op in ops.values():
                op.setdefault("responses", {})["422"] = {
                    "description": "A parameter or field is invalid, out of range or unknown",
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                    },
                }
        text = orjson.dumps(doc.get("paths", {}))
        for unused in ("HTTPValidationError", "ValidationError"):
            if f'/{unused}"'.encode() not in text:
                schemas.pop(unused, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
