"""Followings pages → twitter_kol_all fields, both REST shapes and X's Following."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from starlette.testclient import TestClient

from infra.xsim.app import create_app
from libs.parsing.followings import parse_api_followings, parse_api_lookup, parse_x_following
from libs.parsing.x import PageParseError
from services.kol.sources import classify_api
from services.kol.store import kol_key


@pytest.fixture(scope="module")
def sim():
    c = TestClient(create_app(seed=3))
    c.post("/_sim/config", json={"following_pool": 40, "users_per_list": 25})
    return c


def _api(sim, style: str, cursor=None):
    sim.post("/_sim/config", json={"api_user_style": style})
    params = {"userName": "somekol", "pageSize": 20, **({"cursor": cursor} if cursor else {})}
    return sim.get("/twitter/user/followings", params=params, headers={"X-API-Key": "k"}).text


def test_both_rest_shapes_and_x_give_the_same_users(sim):
    v1, prof = parse_api_followings(_api(sim, "v1")), parse_api_followings(_api(sim, "profile"))
    assert v1.users == prof.users and len(v1.users) == 20 and not v1.final and v1.cursor_out
    last = parse_api_followings(_api(sim, "v1", v1.cursor_out))
    assert len(last.users) == 5 and last.final
    uid = parse_api_lookup(
        sim.get(
            "/twitter/user/info", params={"userName": "somekol"}, headers={"X-API-Key": "k"}
        ).text
    )[0]
    body = sim.get(
        "/i/api/graphql/x/Following",
        params={"variables": orjson.dumps({"userId": uid, "count": 20}).decode()},
    ).text
    x = parse_x_following(body, None, datetime.now(UTC))
    assert x.users == v1.users and not x.final
    u = v1.users[0]
    assert u.id.isdigit() and u.user_name and u.created_at_time is not None
    assert u.followers > 0 and u.following > 0 and u.statuses_count > 0


def test_rest_errors_are_classified_and_unparseable():
    assert classify_api(401, '{"message":"bad key"}', "followings")[0] == "auth_failed"
    assert classify_api(402, "{}", "followings")[0] == "payment_required"
    assert classify_api(429, "{}", "followings")[0] == "rate_limited"
    assert classify_api(503, "oops", "followings")[0] == "server_error"
    assert classify_api(200, '{"followings": [', "followings")[0] == "malformed"
    assert classify_api(200, '{"status":"error","message":"no user"}', "followings") == (
        "rejected",
        "no user",
    )
    assert classify_api(200, '{"followings": [], "has_next_page": false}', "followings")[0] == "ok"
    with pytest.raises(PageParseError):
        parse_api_followings('{"status": "error", "message": "x"}')


@pytest.mark.parametrize(
    "line, key",
    [
        ("@ElonMusk", ("@elonmusk", "", "ElonMusk")),
        ("elonmusk", ("@elonmusk", "", "elonmusk")),
        ("44196397", ("44196397", "44196397", "")),
        ("https://x.com/jack/status/1", ("@jack", "", "jack")),
        ("# comment", None),
        ("user_name", None),
        ("", None),
    ],
)
def test_import_lines(line, key):
    assert kol_key(line) == key


def test_import_rejects_garbage():
    with pytest.raises(ValueError, match="not an X handle"):
        kol_key("no spaces allowed")
