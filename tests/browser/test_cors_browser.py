"""CORS at the edge (banyan/proxy/cors.py) in headless Chromium: a page served from another
origin calls the API through the real proxy and both real backends, as a browser app would.

The page's origin is a second loopback server (another port is another origin); the browser
itself sends the preflights and enforces the answers, so what passes here passes for users.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from banyan.serving import serve
from tests.browser.harness import Driver
from tests.proxy.conftest import real_backends_behind_proxy

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
cors:
  allow_origins: ["{origin}"]
  allow_headers: [Content-Type, Authorization]
  max_age: 60
features:
  auth:
    routes: ["/api/auth/**"]
    mode: legacy
  agents:
    routes: ["/api/agents", "/api/agents/**"]
    mode: new
default: legacy
"""

PAGE = "<!doctype html><html><head><title>elsewhere</title></head><body>elsewhere</body></html>"

# Runs in the page: sign up (a JSON POST: preflighted), then read who I am and the agents list
# with a bearer token (preflighted too); report statuses and the backend header each answer named.
CALLS = """async (proxy) => {
  const out = {}
  const email = `cors${Date.now()}@example.org`
  const signup = await fetch(proxy + '/api/auth/register', {
    method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({email, password: 'correct horse battery', name: 'Cory'}),
  })
  const body = await signup.json()
  out.signup = [signup.status, signup.headers.get('X-Banyan-Backend')]
  const auth = {Authorization: 'Bearer ' + body.token}
  const me = await fetch(proxy + '/api/auth/me', {headers: auth})
  out.me = [me.status, me.headers.get('X-Banyan-Backend'), (await me.json()).user.name]
  const agents = await fetch(proxy + '/api/agents', {headers: auth})
  out.agents = [agents.status, agents.headers.get('X-Banyan-Backend')]
  return out
}"""

BLOCKED = """async (proxy) => {
  try {
    await fetch(proxy + '/api/auth/me', {headers: {Authorization: 'Bearer x'}})
    return 'read'
  } catch (err) {
    return 'blocked: ' + err.name
  }
}"""


async def test_a_page_on_another_origin_calls_the_api(tmp_path: Path, browser: Driver) -> None:
    page_app = web.Application()

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    page_app.router.add_get("/", index)
    async with serve(page_app) as origin, serve(page_app) as stranger:
        async with real_backends_behind_proxy(tmp_path, FLAGS, origin=origin) as urls:
            proxy = urls["proxy"]
            page = await browser.page("app", origin)
            await page.goto("/")
            results = await page.eval(CALLS, proxy)
            await page.screenshot("cross-origin-calls")
            other = await browser.page("stranger", stranger)
            await other.goto("/")
            blocked = await other.eval(BLOCKED, proxy)
    assert results == {
        "signup": [201, "legacy"],
        "me": [200, "legacy", "Cory"],
        # new does not know this user (nothing mirrors here): its refusal is readable all the same
        "agents": [401, "new"],
    }
    assert blocked == "blocked: TypeError"  # the browser refused: that origin is not allowed
    assert not [p for p in await page.problems() if "CORS" in p or p.startswith("pageerror")]
    assert any("CORS policy" in p for p in await other.problems())
