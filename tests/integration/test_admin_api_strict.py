"""The account-manager's admin API applies the gateway's rule: an unknown query parameter or
body field is a 422 naming it, on every route (the gateway forwards /api/v1/admin/accounts and
/proxies here whole, so this is where those names are judged)."""

from __future__ import annotations

import httpx

from services.account_manager.admin_api import AdminServer

UNKNOWN = "xget_unknown_name"
BODIES = {
    "/api/v1/admin/accounts": {"username": "walker", "auth_token": "a", "ct0": "c"},
    "/api/v1/admin/proxies": {"url": "http://10.0.0.1:3128"},
    "/api/v1/admin/proxies/{proxy_id}/disable": {"reason": "walk"},
}


def _names(r: httpx.Response, name: str) -> bool:
    return name in r.text


async def test_every_admin_route_refuses_unknown_names(make_settings):
    settings = make_settings()
    server = AdminServer(settings, producer=None, box=None)  # type: ignore[arg-type]
    token = settings.api_token.get_secret_value()
    doc = server.app.openapi()
    failures, checked = [], 0
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=server.app),
        base_url="http://admin",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                url = path.replace("{account_id}", "a1").replace("{proxy_id}", "p1")
                body = BODIES.get(path) if "requestBody" in op else None
                r = await c.request(method, url, params={UNKNOWN: "1"}, json=body)
                checked += 1
                if r.status_code != 422 or not _names(r, UNKNOWN):
                    failures.append(
                        f"{method.upper()} {path} ?{UNKNOWN}: {r.status_code} {r.text[:160]}"
                    )
                if path.endswith("/import"):
                    continue  # a raw import file (text, CSV or JSON), parsed by its own rules
                r = await c.request(method, url, json={**(body or {}), UNKNOWN: 1})
                checked += 1
                if r.status_code != 422 or not _names(r, UNKNOWN):
                    failures.append(
                        f"{method.upper()} {path} body.{UNKNOWN}: {r.status_code} {r.text[:160]}"
                    )
    assert not failures, "\n".join(failures)
    assert checked >= 20, checked
