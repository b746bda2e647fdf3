"""The console's role policy, session cookies and the secret filter of forwarded answers."""

from __future__ import annotations

from datetime import UTC, datetime

from libs.settings import Settings
from services.task_gateway.console_auth import Sessions, required_role
from services.task_gateway.pool_forward import strip_secrets


def test_required_role_central_policy_and_overrides():
    assert required_role("GET", "/api/v1/tasks") == "viewer"
    assert required_role("HEAD", "/api/v1/data/tweets/search") == "viewer"
    assert required_role("POST", "/api/v1/tasks/ondemand") == "operator"
    assert required_role("DELETE", "/api/v1/admin/accounts/{rest}") == "operator"
    assert required_role("GET", "/api/v1/admin/users") == "admin"
    assert required_role("PATCH", "/api/v1/admin/users/{username}") == "admin"
    assert required_role("GET", "/api/v1/admin/settings") == "admin"
    assert required_role("GET", "/api/v1/admin/usersx") == "viewer"  # a prefix, not a word
    assert required_role("GET", "/api/v1/admin/audit") == "operator"
    assert required_role("GET", "/health") == "public"
    assert required_role("POST", "/api/v1/auth/login", "public") == "public"
    # A template without its include prefix still meets the admin rule by the request path.
    assert required_role("GET", "/{username}", None, "/api/v1/admin/users/bob") == "admin"


def test_session_cookie_is_signed_and_expires():
    s = Sessions(Settings(api_token="t" * 40, console_session_ttl_s=60))
    cookie, sess = s.issue("alice")
    assert s.read(cookie) == sess and sess.expires - sess.issued == 60
    sig_at = cookie.rindex(".")
    assert s.read(cookie[:sig_at] + "." + "A" * 43) is None
    forged = cookie.replace(cookie.split(".")[2], "Ym9i")  # user "bob", old signature
    assert s.read(forged) is None
    other = Sessions(Settings(api_token="u" * 40))
    assert other.read(cookie) is None  # another token signs another key
    assert s.csrf(sess.session_id) != s.csrf("another") and len(s.csrf("x")) == 32
    expired = Sessions(Settings(api_token="t" * 40, console_session_ttl_s=60))
    expired.ttl_s = -1
    old, _ = expired.issue("alice")
    assert s.read(old) is None
    assert datetime.fromtimestamp(sess.expires, UTC) > datetime.now(UTC)


def test_strip_secrets_removes_every_secret_and_keeps_the_rest():
    answer = {
        "accounts": [
            {
                "id": "a",
                "has_password": True,
                "password": "p",
                "Cookies": "c",
                "auth_token": "t",
                "ct0": "x",
                "totp_secret": "s",
                "email_password": "e",
                "proxy": "socks5://u:pw@h:1",
                "list": [{"api_key": "k", "n": 1}],
                "health": 0.9,
            }
        ]
    }
    assert strip_secrets(answer) == {
        "accounts": [
            {
                "id": "a",
                "has_password": True,
                "proxy": "socks5://h:1",
                "list": [{"n": 1}],
                "health": 0.9,
            }
        ]
    }
