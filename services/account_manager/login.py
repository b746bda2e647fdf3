"""Log an account in through X's web login page with Playwright and Debian's Chromium.

The flow follows X's login screens: user name (`input[name=text]`, "Next"), password
(`input[name=password]`, "Log in"), then, when asked, a confirmation code (TOTP from the
account's secret) or the account's e-mail (`data-testid=ocfEnterTextTextInput`). Success is
the `auth_token` cookie appearing in the browser context; the whole cookie jar is returned.
Never `playwright install`: the browser is /usr/bin/chromium (settings.chromium_path).
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlparse

from libs.settings import Settings

log = logging.getLogger(__name__)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
STEP_TIMEOUT_MS = 20_000
ERROR_SEL = '[data-testid="error"], [role="alert"]'
CODE_SEL = 'input[data-testid="ocfEnterTextTextInput"]'


class LoginError(RuntimeError):
    pass


def _proxy_option(proxy_url: str | None) -> dict | None:
    if not proxy_url:
        return None
    u = urlparse(proxy_url)
    opt = {"server": f"{u.scheme}://{u.hostname}:{u.port}"}
    if u.username:
        opt["username"] = u.username
        opt["password"] = u.password or ""
    return opt


async def _error_text(page) -> str | None:
    err = page.locator(ERROR_SEL)
    if await err.count():
        return (await err.first.inner_text()).strip()[:300]
    return None


async def login(
    settings: Settings, username: str, creds: dict, proxy_url: str | None
) -> tuple[dict, float | None]:
    """Log in; returns the cookie jar {name: value} (with auth_token and ct0) and when the
    session cookies expire (unix seconds; None for a session cookie), or raises."""
    from playwright.async_api import async_playwright

    password = creds.get("password")
    if not password:
        raise LoginError("the account has no password")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=settings.chromium_path,
            headless=True,
            args=CHROMIUM_ARGS,
            proxy=_proxy_option(proxy_url),
        )
        try:
            ctx = await browser.new_context()
            page = await ctx.new_page()
            await page.goto(
                settings.x_login_url, wait_until="domcontentloaded", timeout=STEP_TIMEOUT_MS
            )
            await page.locator('input[name="text"]').fill(username, timeout=STEP_TIMEOUT_MS)
            await page.get_by_role("button", name="Next").click()
            await page.wait_for_selector(
                f'input[name="password"], {ERROR_SEL}', timeout=STEP_TIMEOUT_MS
            )
            if (err := await _error_text(page)) is not None:
                raise LoginError(err)
            await page.locator('input[name="password"]').fill(password)
            await page.get_by_role("button", name="Log in").click()
            deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
            answered: set[str] = set()
            while time.monotonic() < deadline:
                jar = await ctx.cookies()
                cookies = {c["name"]: c["value"] for c in jar}
                if cookies.get("auth_token") and cookies.get("ct0"):
                    ends = [
                        float(c["expires"])
                        for c in jar
                        if c["name"] in ("auth_token", "ct0") and c.get("expires", -1) > 0
                    ]
                    return cookies, (min(ends) if ends else None)
                if (err := await _error_text(page)) is not None:
                    raise LoginError(err)
                code = page.locator(CODE_SEL)
                if await code.count() and await code.first.is_visible():
                    prompt = (await page.locator("body").inner_text()).lower()
                    kind = "totp" if ("code" in prompt or "authenticat" in prompt) else "email"
                    if kind in answered:
                        raise LoginError(f"X asked for the {kind} again")
                    value = _totp(creds) if kind == "totp" else creds.get("email")
                    if not value:
                        raise LoginError(f"X asks for the account's {kind}, which is not stored")
                    await code.first.fill(value)
                    await page.get_by_role("button", name="Next").click()
                    answered.add(kind)
                await asyncio.sleep(0.2)
            raise LoginError("no auth_token cookie after logging in")
        finally:
            await browser.close()


def _totp(creds: dict) -> str | None:
    secret = creds.get("totp_secret")
    if not secret:
        return None
    import pyotp

    return pyotp.TOTP(secret).now()
