"""Starlette app: X's web GraphQL routes, media, and the /_sim admin API."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .config import SimConfig
from .corpus import parse_time
from .faults import FaultBook, MediaFaultBook
from .follows import user_id_of_name
from .log import RequestLog
from .login import LoginFlow, Sessions
from .media import HTML_PAGE, huge_stream, media_for
from .ratelimit import RateLimiter
from .restapi import RestApi, key_label
from .templates import default_fixtures_dir, load_fixtures
from .timelines import Timelines

JSON = "application/json; charset=utf-8"
RATE_LIMIT_BODY = b'{"errors":[{"code":88,"message":"Rate limit exceeded."}]}'
FAULT_BODIES = {
    "suspended": (
        403,
        b'{"errors":[{"code":64,"message":"Your account is suspended and is not '
        b'permitted to access this feature."}]}',
    ),
    "locked": (
        403,
        b'{"errors":[{"code":326,"message":"Authorization: Denied by access control: '
        b"To protect our users from spam and other malicious activity, this account "
        b"is temporarily locked. Please log in to https://x.com to unlock your "
        b'account."}]}',
    ),
    "expired_cookies": (401, b'{"errors":[{"code":32,"message":"Could not authenticate you."}]}'),
    "http_5xx": (503, b'{"errors":[{"code":130,"message":"Over capacity"}]}'),
}
CLOUDFLARE_HTML = (
    b'<!DOCTYPE html><html lang="en-US"><head><title>Attention Required! | '
    b'Cloudflare</title></head><body><div id="cf-wrapper"><h1>Sorry, you have '
    b"been blocked</h1><p>You are unable to access x.com</p></div></body></html>"
)


def _json(obj, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON)


def _token(request: Request) -> str:
    tok = request.cookies.get("auth_token")
    if tok:
        return tok
    return request.headers.get("x-csrf-token") or "anonymous"


def _loads_param(value) -> dict:
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    obj = orjson.loads(value)
    return obj if isinstance(obj, dict) else {}


class Simulator:
    def __init__(
        self, fixtures_dir: str | Path | None = None, seed: int = 0, window_seconds: int = 900
    ):
        self.config = SimConfig(seed=seed, window_seconds=window_seconds)
        self.fixtures = load_fixtures(fixtures_dir or default_fixtures_dir())
        self.timelines = Timelines(self.fixtures, self.config)
        self.limiter = RateLimiter(self.config)
        self.faults = FaultBook()
        self.media_faults = MediaFaultBook()
        self.log = RequestLog()
        self.rest = RestApi(self.timelines)
        self.sessions = Sessions()
        self.login = LoginFlow(self.sessions, self.log)
        self.handlers = {
            "SearchTimeline": self.timelines.search_page,
            "Following": lambda v: self.timelines.list_page("Following", v),
            "Followers": lambda v: self.timelines.list_page("Followers", v),
            "Retweeters": lambda v: self.timelines.list_page("Retweeters", v),
            "UserByScreenName": self.timelines.user_by_screen_name,
            "TweetDetail": self.timelines.tweet_detail,
        }

    # --- GraphQL ---------------------------------------------------------------------------------

    async def graphql(self, request: Request) -> Response:
        received = time.time()
        op = request.path_params["op_name"]
        account, expired = self.sessions.account_key(_token(request))
        try:
            if request.method == "GET":
                variables = _loads_param(request.query_params.get("variables"))
            else:
                body = await request.body()
                obj = orjson.loads(body) if body else {}
                variables = _loads_param(obj.get("variables")) if isinstance(obj, dict) else {}
        except orjson.JSONDecodeError:
            variables = None
        raw_query = cursor = None
        if isinstance(variables, dict):
            # the request's subject: a search query, a post's id (Retweeters) or a handle
            raw_query = (
                variables.get("rawQuery")
                or variables.get("tweetId")
                or variables.get("screen_name")
            )
            cursor = variables.get("cursor")
        if expired:
            status, body = FAULT_BODIES["expired_cookies"]
            rep = Response(body, status, media_type=JSON)
        else:
            rep = await self._graphql(op, account, variables, received)
        self.log.add(
            request.method,
            request.url.path,
            op,
            account,
            raw_query,
            cursor,
            rep.status_code,
            received,
        )
        return rep

    def _rl_headers(self, limit: int, remaining: int, reset: int) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(limit),
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": str(reset),
        }

    async def _graphql(
        self, op: str, account: str, variables: dict | None, received: float | None = None
    ) -> Response:
        fault = self.faults.match(account, op)
        truncate = False
        if fault is not None:
            if fault.kind == "hold":
                await self.faults.hold()
            elif fault.kind == "slow":
                await asyncio.sleep(fault.delay_s)
            elif fault.kind == "malformed_json":
                truncate = True
            elif fault.kind == "cloudflare_403":
                return Response(
                    CLOUDFLARE_HTML,
                    403,
                    media_type="text/html; charset=UTF-8",
                    headers={"cf-ray": "8f1e2d3c4b5a6978-FRA", "server": "cloudflare"},
                )
            elif fault.kind == "rate_limit_no_headers":
                return Response(RATE_LIMIT_BODY, 429, media_type=JSON)
            else:
                status, body = FAULT_BODIES[fault.kind]
                limit = self.config.limit(op)
                reset = int(time.time()) + self.config.window_seconds
                return Response(
                    body, status, media_type=JSON, headers=self._rl_headers(limit, limit, reset)
                )

        # The window is chosen by when the request came in (the log's `received`), so a
        # request that arrived before a reset and was answered after it counts in the old one.
        d = self.limiter.hit(account, op, now=received)
        headers = self._rl_headers(d.limit, d.remaining, d.reset)
        if not d.allowed:
            return Response(RATE_LIMIT_BODY, 429, media_type=JSON, headers=headers)
        if variables is None:
            return Response(
                b'{"errors":[{"code":214,"message":"Bad request: invalid JSON"}]}',
                400,
                media_type=JSON,
                headers=headers,
            )
        handler = self.handlers.get(op)
        if handler is None:
            return Response(
                b'{"errors":[{"message":"Query: Unspecified"}]}',
                404,
                media_type=JSON,
                headers=headers,
            )
        body = handler(variables)
        if truncate:
            body = body[: max(1, len(body) // 2)]
        return Response(body, 200, media_type=JSON, headers=headers)

    # --- twitterapi.io-style REST API ------------------------------------------------------------

    async def rest_route(self, request: Request) -> Response:
        op = "api." + request.url.path.rsplit("/", 1)[-1]
        key = request.headers.get("x-api-key") or ""
        qp = request.query_params
        user_name = (qp.get("userName") or "").strip().lstrip("@")
        cursor = qp.get("cursor") or None
        rep = await self._rest(op, key, user_name, cursor, qp.get("pageSize"))
        self.log.add(
            request.method,
            request.url.path,
            op,
            key_label(key) if key else None,
            user_name or None,
            cursor,
            rep.status_code,
        )
        return rep

    async def _rest(
        self, op: str, key: str, user_name: str, cursor: str | None, page_size: str | None
    ) -> Response:
        if not key:
            return _json({"status": "error", "message": "Unauthorized: missing X-API-Key"}, 401)
        fault = self.faults.match(key_label(key), op)
        if fault is not None:
            if fault.kind == "hold":
                await self.faults.hold()
            elif fault.kind == "slow":
                await asyncio.sleep(fault.delay_s)
            elif fault.kind in ("rate_limit_no_headers",):
                return _json({"status": "error", "message": "Too many requests"}, 429)
            elif fault.kind == "malformed_json":
                return Response(b'{"followings": [{"id": "1', 200, media_type=JSON)
            else:
                return _json(
                    {"status": "error", "message": f"upstream error ({fault.kind})"},
                    503 if fault.kind == "http_5xx" else 402,
                )
        if not user_name:
            return _json({"status": "error", "message": "userName is required"}, 400)
        if op == "api.followings":
            try:
                size = int(page_size or 200)
            except ValueError:
                return _json({"status": "error", "message": "pageSize must be a number"}, 400)
            return _json(self.rest.followings(user_name, cursor, size))
        return _json(self.rest.user_info(user_name))

    async def followings_admin(self, request: Request) -> Response:
        """Expected Following list of a user (id or handle) — for tests' expectations."""
        user = request.query_params.get("user") or ""
        target = user if user.isdigit() else str(user_id_of_name(self.config.seed, user))
        ids = self.timelines.graph.following_ids(target)
        return _json({"user_id": target, "count": len(ids), "ids": ids})

    # --- media -----------------------------------------------------------------------------------

    async def media(self, request: Request) -> Response:
        path = request.url.path
        query = request.url.query
        fault = self.media_faults.match(path + ("?" + query if query else ""))
        status = 200
        src, src_query = path, query
        if fault is not None and fault.kind == "alias":
            src, src_query = (fault.as_path.split("?", 1) + [""])[:2]
            fault = None
        if fault is None:
            body, ctype = media_for(src, src_query, self.config.media_pad_kb)
            rep: Response = Response(
                body, 200, media_type=ctype, headers={"cache-control": "max-age=604800"}
            )
        elif fault.kind in ("404", "500"):
            status = int(fault.kind)
            rep = Response(b"", status)
        elif fault.kind == "429":
            status = 429
            rep = Response(
                b"",
                429,
                headers={}
                if fault.retry_after is None
                else {"retry-after": str(fault.retry_after)},
            )
        elif fault.kind == "html":
            rep = Response(HTML_PAGE, 200, media_type="text/html; charset=utf-8")
        else:  # huge: a valid head of the path's type, then zeros
            size = int(fault.size_mb * (1 << 20))
            _, ctype = media_for(path, query)
            rep = StreamingResponse(
                huge_stream(fault.size_mb, ctype),
                200,
                media_type=ctype,
                headers={} if fault.chunked else {"content-length": str(size)},
            )
        self.log.add("GET", path, "media", None, None, None, status)
        return rep

    # --- admin -----------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok", "templates": len(self.fixtures.search.tweets)})

    async def config_get(self, request: Request) -> Response:
        return _json(self.config.to_dict())

    async def config_post(self, request: Request) -> Response:
        try:
            self.config.update(orjson.loads(await request.body() or b"{}"))
        except (KeyError, ValueError, TypeError) as e:
            return _json({"error": f"bad config: {e}"}, 400)
        return _json(self.config.to_dict())

    async def faults_post(self, request: Request) -> Response:
        try:
            f = self.faults.add(orjson.loads(await request.body() or b"{}"))
        except (ValueError, TypeError) as e:
            return _json({"error": str(e)}, 400)
        return _json(f.to_dict())

    async def faults_get(self, request: Request) -> Response:
        return _json([f.to_dict() for f in self.faults.faults])

    async def faults_delete(self, request: Request) -> Response:
        self.faults.clear()
        return _json({"ok": True})

    async def media_faults_post(self, request: Request) -> Response:
        try:
            f = self.media_faults.add(orjson.loads(await request.body() or b"{}"))
        except (ValueError, TypeError) as e:
            return _json({"error": str(e)}, 400)
        return _json(asdict(f))

    async def media_faults_delete(self, request: Request) -> Response:
        self.media_faults.clear()
        return _json({"ok": True})

    async def log_get(self, request: Request) -> Response:
        seq = int(request.query_params.get("since_seq") or 0)
        return _json(self.log.since(seq))

    async def log_delete(self, request: Request) -> Response:
        self.log.clear()
        return _json({"ok": True})

    async def ratelimits_delete(self, request: Request) -> Response:
        self.limiter.reset()
        return _json({"ok": True})

    async def accounts_post(self, request: Request) -> Response:
        try:
            acc = self.sessions.register(orjson.loads(await request.body() or b"{}"))
        except (ValueError, TypeError) as e:
            return _json({"error": str(e)}, 400)
        return _json(acc.public())

    async def accounts_get(self, request: Request) -> Response:
        return _json([a.public() for a in self.sessions.accounts.values()])

    async def account_expire(self, request: Request) -> Response:
        name = request.path_params["username"]
        raw = request.query_params.get("after")
        if raw is None:
            return _json({"expired_sessions": self.sessions.expire(name)})
        try:
            after = int(raw)
            if after < 0:
                raise ValueError
        except ValueError:
            return _json({"error": f"after must be a whole number >= 0, got {raw!r}"}, 400)
        self.sessions.expire_later(name, after)
        return _json({"expired_sessions": 0, "expires_after_requests": after})

    async def token_expire(self, request: Request) -> Response:
        """Expire imported cookies (an auth_token the simulator did not issue): X then answers
        401 code 32 to every request made with them, as it does when a session ends."""
        token = (orjson.loads(await request.body() or b"{}") or {}).get("auth_token")
        if not token or not isinstance(token, str):
            return _json({"error": "auth_token is required"}, 400)
        self.sessions.expire_token(token)
        return _json({"expired": True})

    async def corpus(self, request: Request) -> Response:
        qp = request.query_params
        raw = qp.get("query")
        if raw is None:
            parts = [qp.get("keyword") or ""]
            try:
                if qp.get("since"):
                    parts.append(f"since_time:{parse_time(qp['since']) // 1000}")
                if qp.get("until"):
                    parts.append(f"until_time:{parse_time(qp['until']) // 1000}")
            except ValueError as e:
                return _json({"error": str(e)}, 400)
            raw = " ".join(p for p in parts if p)
        posts = self.timelines.corpus(raw)
        return _json(
            {
                "query": raw,
                "count": len(posts),
                "ids": [p[0] for p in posts],
                "posts": [{"id": pid, "time": ms / 1000} for pid, ms in posts],
            }
        )


def create_app(
    fixtures_dir: str | Path | None = None, seed: int = 0, window_seconds: int = 900
) -> Starlette:
    sim = Simulator(fixtures_dir, seed, window_seconds)
    routes = [
        Route("/i/api/graphql/{op_id}/{op_name}", sim.graphql, methods=["GET", "POST"]),
        Route("/_sim/health", sim.health, methods=["GET"]),
        Route("/_sim/config", sim.config_get, methods=["GET"]),
        Route("/_sim/config", sim.config_post, methods=["POST"]),
        Route("/_sim/faults", sim.faults_get, methods=["GET"]),
        Route("/_sim/faults", sim.faults_post, methods=["POST"]),
        Route("/_sim/faults", sim.faults_delete, methods=["DELETE"]),
        Route("/_sim/media-faults", sim.media_faults_post, methods=["POST"]),
        Route("/_sim/media-faults", sim.media_faults_delete, methods=["DELETE"]),
        Route("/_sim/log", sim.log_get, methods=["GET"]),
        Route("/_sim/log", sim.log_delete, methods=["DELETE"]),
        Route("/_sim/ratelimits", sim.ratelimits_delete, methods=["DELETE"]),
        Route("/_sim/corpus", sim.corpus, methods=["GET"]),
        Route("/_sim/followings", sim.followings_admin, methods=["GET"]),
        Route("/twitter/user/followings", sim.rest_route, methods=["GET"]),
        Route("/twitter/user/info", sim.rest_route, methods=["GET"]),
        Route("/_sim/accounts", sim.accounts_get, methods=["GET"]),
        Route("/_sim/accounts", sim.accounts_post, methods=["POST"]),
        Route("/_sim/accounts/{username}/expire", sim.account_expire, methods=["POST"]),
        Route("/_sim/tokens/expire", sim.token_expire, methods=["POST"]),
        Route("/i/flow/login", sim.login.start, methods=["GET"]),
        Route("/i/flow/login/username", sim.login.username, methods=["POST"]),
        Route("/i/flow/login/password", sim.login.password, methods=["POST"]),
        Route("/i/flow/login/code", sim.login.code, methods=["POST"]),
        Route("/home", sim.login.home, methods=["GET"]),
        Route("/{path:path}", sim.media, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.sim = sim
    return app


__all__ = ["Simulator", "create_app"]
