"""Avro-style schema files for every record that travels on a topic, generated from the models.

    python -m libs.records.avro           # (re)write schemas/<name>.v<version>.avsc
    python -m libs.records.avro --check   # exit 1 if the committed files differ from the models

The pydantic models in libs/records are the source of truth; these files document them for
consumers in other languages (and for a schema registry, should one be added). Mapping:
str->string, int->long, float->double, bool->boolean, datetime->long/timestamp-millis,
Optional[T]->["null", T] (default null), list[T]->array, nested model->named record,
Literal->enum. Note that the wire format today is JSON (orjson), where datetimes travel as
ISO-8601 strings with a UTC offset; the Avro types say what a binary Avro encoding would use.
Every version a model still reads gets its file; a record's body field (libs.records.base)
is marked in the versions where it travels as the `xget-body` header.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from libs import generated
from libs.records.base import Record

NAMESPACE = "xget"
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
WIRE_NOTE = (
    "On the wire (JSON) every record is an object whose datetimes are ISO-8601 strings with a "
    "UTC offset; timestamp-millis is the type in a binary Avro encoding. "
    "Kafka header 'xget-schema' = '{id}'."
)
DATETIME_NOTE = "JSON wire format: ISO-8601 string (UTC)."
INTAKE_NOTE = {
    "key": "May be left out by a publisher: filled on intake with the record's Kafka key.",
    "timestamp": "May be left out by a publisher: filled on intake with the record's Kafka "
    "timestamp (its create time).",
}
BODY_NOTE = (
    "Not in the JSON value: travels as the Kafka header 'xget-body', its UTF-8 bytes verbatim."
)

_PRIMITIVES: dict[Any, str] = {str: "string", int: "long", float: "double", bool: "boolean"}


def _camel(s: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in s.split("_"))


class _Builder:
    """Builds one schema; named types are defined once, then referenced by full name."""

    def __init__(self, version: int | None = None) -> None:
        self.defined: set[str] = set()
        self.version = version  # of the top record; None = its current one

    def type_of(self, ann: Any, owner: str, field: str) -> Any:
        origin = get_origin(ann)
        if ann in _PRIMITIVES:
            return _PRIMITIVES[ann]
        if ann is datetime:
            return {"type": "long", "logicalType": "timestamp-millis"}
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(ann) if a is not type(None)]
            inner = (
                self.type_of(args[0], owner, field)
                if len(args) == 1
                else [self.type_of(a, owner, field) for a in args]
            )
            inner = inner if isinstance(inner, list) else [inner]
            return ["null", *inner] if type(None) in get_args(ann) else inner
        if origin is list or origin is typing.List:  # noqa: UP006 - a model may still annotate typing.List
            (item,) = get_args(ann) or (Any,)
            return {"type": "array", "items": self.type_of(item, owner, field)}
        if origin is dict:
            _, val = get_args(ann)
            return {"type": "map", "values": self.type_of(val, owner, field)}
        if origin is Literal:
            name = f"{owner}{_camel(field)}"
            full = f"{NAMESPACE}.{name}"
            if full in self.defined:
                return full
            self.defined.add(full)
            return {
                "type": "enum",
                "name": name,
                "namespace": NAMESPACE,
                "symbols": [str(a) for a in get_args(ann)],
            }
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return self.record(ann)
        raise TypeError(f"{owner}.{field}: no Avro mapping for {ann!r}")

    def record(self, model: type[BaseModel], top: bool = False) -> Any:
        name = model.__name__
        full = f"{NAMESPACE}.{name}"
        if full in self.defined:
            return full
        self.defined.add(full)
        fields = []
        for fname, info in model.model_fields.items():
            ftype = self.type_of(info.annotation, name, fname)
            f: dict[str, Any] = {"name": fname, "type": ftype}
            doc = info.description or ""
            if info.annotation is datetime or datetime in get_args(info.annotation):
                doc = f"{doc} {DATETIME_NOTE}".strip()
            if top and fname == getattr(model, "body_field", None) and self._body_in_header(model):
                doc = f"{doc} {BODY_NOTE}".strip()
            filled = getattr(model, "intake_filled", {}).get(fname) if top else None
            if filled:
                doc = f"{doc} {INTAKE_NOTE[filled]}".strip()
            if doc:
                f["doc"] = doc
            default = _default_of(info)
            if default is not PydanticUndefined:
                f["default"] = default
                # Avro: a union's default must match its first branch
                if isinstance(ftype, list) and default is not None and ftype[0] == "null":
                    f["type"] = [*ftype[1:], "null"]
            fields.append(f)
        out: dict[str, Any] = {"type": "record", "name": name, "namespace": NAMESPACE}
        doc = (model.__doc__ or "").strip()
        if top:
            sid = model.schema_id(self.version) if hasattr(model, "schema_id") else full
            doc = f"{doc}\n\n{WIRE_NOTE.format(id=sid)}".strip()
            filled = getattr(model, "intake_filled", {})
            if filled:  # a record clients publish themselves: what they must write
                must = [n for n, i in model.model_fields.items() if i.is_required()]
                must = [n for n in must if n not in filled]
                doc = f"{doc} A publisher must set: {', '.join(must) or 'no field'}; the rest "
                doc += "have defaults or are filled on intake."
        if doc:
            out["doc"] = doc
        out["fields"] = fields
        return out

    def _body_in_header(self, model) -> bool:
        version = model.schema_version if self.version is None else self.version
        return version >= model.body_since


def _default_of(info) -> Any:
    if info.default is not PydanticUndefined:
        d = info.default
    elif info.default_factory is not None:
        d = info.default_factory()
    else:
        return PydanticUndefined
    if isinstance(d, BaseModel):
        return d.model_dump(mode="json")
    if isinstance(d, datetime):
        return int(d.timestamp() * 1000)
    return d


def schema_for(model: type[BaseModel], version: int | None = None) -> dict:
    return _Builder(version).record(model, top=True)


def topic_models() -> list[type[Record]]:
    from libs.topics import CATALOGUE

    seen: dict[str, type[Record]] = {}
    for spec in CATALOGUE:
        for m in spec.schemas:
            seen.setdefault(m.schema_id(), m)
    return list(seen.values())


def file_name(model, version: int | None = None) -> str:
    return f"{model.schema_name}.v{model.schema_version if version is None else version}.avsc"


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> file text for every record class used on a topic."""
    return {file_name(m, v): render(schema_for(m, v)) for m in topic_models() for v in m.versions()}


def diff(directory: Path = SCHEMA_DIR) -> list[str]:
    """Human-readable differences between the files in `directory` and the models."""
    return generated.diff(generate(), directory, f"{NAMESPACE}.*.avsc", "the model")


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    return generated.write(generate(), directory)


def main(argv: list[str] | None = None) -> int:
    return generated.main(
        argv,
        prog="python -m libs.records.avro",
        doc=__doc__,
        default_dir=SCHEMA_DIR,
        generate=generate,
        check=diff,
    )


if __name__ == "__main__":
    sys.exit(main())
