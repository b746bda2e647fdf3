"""The committed Avro-style schema files match the record models, field by field."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from libs.records import avro
from libs.topics import CATALOGUE

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PRIMS = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def topic_models():
    out = {}
    for spec in CATALOGUE:
        for m in spec.schemas:
            out[m.schema_id()] = m
    return list(out.values())


def test_committed_files_equal_generated():
    problems = avro.diff(SCHEMAS)
    assert problems == [], "run `python -m libs.records.avro`: " + "; ".join(problems)


def test_check_cli_exit_codes(tmp_path):
    assert avro.main(["--dir", str(tmp_path), "--check"]) == 1  # nothing there yet
    assert avro.main(["--dir", str(tmp_path)]) == 0
    assert avro.main(["--dir", str(tmp_path), "--check"]) == 0
    f = next(tmp_path.glob("*.avsc"))
    f.write_text(f.read_text().replace('"record"', '"record" ', 1))
    assert avro.main(["--dir", str(tmp_path), "--check"]) == 1


def test_one_file_per_topic_record_version():
    """A file for the version each model writes and for every older one it still reads."""
    names = {p.name for p in SCHEMAS.glob("xget.*.avsc")}
    assert names == {
        f"{m.schema_name}.v{v}.avsc"
        for m in topic_models()
        for v in (m.schema_version, *m.read_versions)
    }
    assert {"xget.Post.v1.avsc", "xget.Post.v2.avsc"} <= names


def test_body_field_documented_where_it_travels_as_a_header():
    """v1 of a post carries raw_data inside the JSON value, v2 in the xget-body header."""

    def raw_data_doc(version: int) -> str:
        s = json.loads((SCHEMAS / f"xget.Post.v{version}.avsc").read_text())
        return next(f["doc"] for f in s["fields"] if f["name"] == "raw_data")

    assert "xget-body" not in raw_data_doc(1)
    assert "xget-body" in raw_data_doc(2)


def _records(schema, found):
    """Every record definition inside a schema, by name."""
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            found[schema["name"]] = schema
            for f in schema["fields"]:
                _records(f["type"], found)
        elif schema.get("type") == "array":
            _records(schema["items"], found)
        elif schema.get("type") == "map":
            _records(schema["values"], found)
    elif isinstance(schema, list):
        for s in schema:
            _records(s, found)
    return found


def _nested_models(model, acc):
    acc[model.__name__] = model
    for info in model.model_fields.values():
        for t in _flat_types(info.annotation):
            if isinstance(t, type) and issubclass(t, BaseModel) and t.__name__ not in acc:
                _nested_models(t, acc)
    return acc


def _flat_types(ann):
    from typing import get_args

    args = get_args(ann)
    if not args:
        return [ann]
    return [x for a in args for x in _flat_types(a)]


@pytest.mark.parametrize("model", topic_models(), ids=lambda m: m.schema_name)
def test_every_field_with_doc_and_default(model):
    schema = json.loads((SCHEMAS / f"{model.schema_name}.v{model.schema_version}.avsc").read_text())
    assert schema["type"] == "record" and schema["namespace"] == "xget"
    assert f"xget.{schema['name']}" == model.schema_name
    if model.__doc__:
        assert schema["doc"].startswith(model.__doc__.strip())
    assert "ISO-8601" in schema["doc"]  # the JSON wire format note
    records = _records(schema, {})
    for name, m in _nested_models(model, {}).items():
        rec = records[name]
        fields = {f["name"]: f for f in rec["fields"]}
        assert list(fields) == list(m.model_fields)
        for fname, info in m.model_fields.items():
            f = fields[fname]
            if info.description:
                assert info.description in f["doc"]
            if info.default is not PydanticUndefined:
                assert f["default"] == info.default, (name, fname)
            elif info.default_factory is not None:
                assert f["default"] == info.default_factory()
            else:
                assert "default" not in f, (name, fname)
            if info.annotation is datetime:
                assert f["type"] == {"type": "long", "logicalType": "timestamp-millis"}
                assert "ISO-8601" in f["doc"]


def _check_avro(schema, defined: set[str]):
    """Minimal structural Avro validation (no Avro library in the environment)."""
    if isinstance(schema, str):
        assert schema in PRIMS or schema in defined, f"undefined type {schema}"
        return
    if isinstance(schema, list):
        assert len(schema) == len({json.dumps(s, sort_keys=True) for s in schema})
        for s in schema:
            assert not isinstance(s, list)
            _check_avro(s, defined)
        return
    t = schema["type"]
    if t == "record":
        assert NAME_RE.match(schema["name"])
        defined.add(f"{schema.get('namespace', 'xget')}.{schema['name']}")
        for f in schema["fields"]:
            assert NAME_RE.match(f["name"])
            _check_avro(f["type"], defined)
            if "default" in f and isinstance(f["type"], list):
                first = f["type"][0]
                if f["default"] is None:
                    assert first == "null", f["name"]
                else:
                    assert first != "null", f["name"]
    elif t == "enum":
        assert NAME_RE.match(schema["name"])
        assert all(NAME_RE.match(s) for s in schema["symbols"])
        full = f"{schema.get('namespace', 'xget')}.{schema['name']}"
        assert full not in defined, f"enum {full} defined twice"
        defined.add(full)
    elif t == "array":
        _check_avro(schema["items"], defined)
    elif t == "map":
        _check_avro(schema["values"], defined)
    else:
        assert t in PRIMS


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("xget.*.avsc")), ids=lambda p: p.name)
def test_files_are_structurally_valid_avro(path):
    _check_avro(json.loads(path.read_text()), set())


def test_post_schema_shape():
    s = json.loads((SCHEMAS / "xget.Post.v1.avsc").read_text())
    f = {x["name"]: x for x in s["fields"]}
    assert f["post_images"]["type"]["type"] == "array"
    assert f["post_images"]["type"]["items"]["name"] == "PostMedia"
    assert f["original_post_images"]["type"]["items"] == "xget.PostMedia"  # defined once
    assert f["view_count"]["type"] == ["null", "long"] and f["view_count"]["default"] is None
    assert f["post_type"]["type"]["symbols"] == ["text", "image", "video", "retweet", "quote"]
    assert f["is_retweet"]["type"] == "boolean" and f["is_retweet"]["default"] is False
