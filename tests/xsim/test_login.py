"""The simulator's login flow and sessions (the browser flow itself runs in tests/e2e)."""

from __future__ import annotations

import uuid

import httpx
import pyotp

from .helpers import account


def _login(sim_url: str, name: str, password: str, code: str | None = None) -> httpx.Client:
    c = httpx.Client(base_url=sim_url, timeout=10, follow_redirects=False)
    assert 'name="text"' in c.get("/i/flow/login").text
    page = c.post("/i/flow/login/username", data={"text": name}).text
    flow = page.split('name="flow" value="')[1].split('"')[0]
    r = c.post("/i/flow/login/password", data={"flow": flow, "password": password})
    if code is not None:
        assert "ocfEnterTextTextInput" in r.text
        r = c.post("/i/flow/login/code", data={"flow": flow, "code": code})
    return c, r


def test_login_hands_out_cookies_and_expiry_refuses_them(sim_url, admin):
    name = f"u{uuid.uuid4().hex[:8]}"
    admin.post("/_sim/accounts", json={"username": name, "password": "pw"}).raise_for_status()
    c, r = _login(sim_url, name, "wrong")
    assert "Wrong password!" in r.text and "auth_token" not in c.cookies
    c, r = _login(sim_url, name, "pw")
    assert r.status_code == 302 and c.cookies.get("auth_token") and c.cookies.get("ct0")
    op = "/i/api/graphql/x/UserByScreenName"
    params = {"variables": '{"screen_name":"x"}'}
    assert c.get(op, params=params).status_code == 200
    # Requests are keyed by the account's name (limits, faults, the log), not the token.
    log = admin.get("/_sim/log").json()
    assert log[-1]["account"] == name.lower()
    assert admin.post(f"/_sim/accounts/{name}/expire").json() == {"expired_sessions": 1}
    r = c.get(op, params=params)
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == 32
    # Unknown tokens (imported cookies) still work as before.
    other = account()
    assert httpx.get(f"{sim_url}{op}", params=params, cookies=other.cookies).status_code == 200
    listed = {a["username"]: a for a in admin.get("/_sim/accounts").json()}
    assert listed[name]["logins"] == 1 and "password" not in listed[name]


def test_sessions_can_expire_after_a_number_of_requests(sim_url, admin):
    name = f"e{uuid.uuid4().hex[:8]}"
    admin.post("/_sim/accounts", json={"username": name, "password": "pw"}).raise_for_status()
    c, _ = _login(sim_url, name, "pw")
    op, params = "/i/api/graphql/x/UserByScreenName", {"variables": '{"screen_name":"x"}'}
    assert admin.post(f"/_sim/accounts/{name}/expire?after=-1").status_code == 400
    assert admin.post(f"/_sim/accounts/{name}/expire", params={"after": 2}).json() == {
        "expired_sessions": 0,
        "expires_after_requests": 2,
    }
    assert [c.get(op, params=params).status_code for _ in range(4)] == [200, 200, 401, 401]
    listed = {a["username"]: a for a in admin.get("/_sim/accounts").json()}
    assert listed[name]["expired_sessions"] == 1
    # A fresh login after the expiry is not affected.
    c, _ = _login(sim_url, name, "pw")
    assert c.get(op, params=params).status_code == 200


def test_totp_account_needs_the_code(sim_url, admin):
    name, secret = f"t{uuid.uuid4().hex[:8]}", pyotp.random_base32()
    admin.post(
        "/_sim/accounts", json={"username": name, "password": "pw", "totp_secret": secret}
    ).raise_for_status()
    c, r = _login(sim_url, name, "pw", code="000000")
    assert "incorrect" in r.text and "auth_token" not in c.cookies
    c, r = _login(sim_url, name, "pw", code=pyotp.TOTP(secret).now())
    assert r.status_code == 302 and c.cookies.get("auth_token")


def test_unknown_user_is_told_so(sim_url):
    c = httpx.Client(base_url=sim_url, timeout=10)
    r = c.post("/i/flow/login/username", data={"text": "nobody-at-all"})
    assert "could not find your account" in r.text
