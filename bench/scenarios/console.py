"""Console: p99 latency of the operator pages for a client with 100,000 subscriptions.

The subscriptions are registered directly through ``Store.register`` (as in the scale scenario).
One ``relay api`` process (granian, as deployed) serves the console; one signed-in browser-like
client (a cookie jar, one keep-alive connection) asks for each page in turn, one request at a
time, in repetitions: the overview, the first page of the table, the table filtered by a host
that matches nothing (the worst case: the service examines its bound of 1,000 subscriptions),
the table filtered by state, and one subscription. Baseline: ``GET /healthz`` of the same
process, measured in the same repetitions.
"""

from __future__ import annotations

import re
import statistics
import time

import aiohttp

from bench.common import Bench, Row
from bench.load import percentile
from bench.procs import CLIENT_KEY, wait_http
from relay.embedded_redis import free_port

TOKEN = re.compile(r'name="_csrf_token" value="([^"]+)"')


async def sign_in(http: aiohttp.ClientSession, root: str) -> None:
    """Sign in through the form, as a browser does."""
    async with http.get(root + "/console/sign-in") as resp:
        found = TOKEN.search(await resp.text())
    assert found is not None, "no CSRF token on the sign-in form"
    form = {"api_key": CLIENT_KEY, "_csrf_token": found.group(1)}
    async with http.post(root + "/console/sign-in", data=form, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()


async def timed(http: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    """``n`` sequential GETs of ``url``: latencies in ms (a non-200 fails the scenario)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with http.get(url, allow_redirects=False) as resp:
            await resp.read()
            assert resp.status == 200, (url, resp.status)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def run(b: Bench) -> list[Row]:
    """Register, start the API, sign in, measure every page against /healthz."""
    total = 2_000 if b.smoke else 100_000
    reps, per_rep = (2, 20) if b.smoke else (5, 200)
    await b.flush()
    t0 = time.perf_counter()
    docs = await b.register_many([f"con-{i}" for i in range(total)], "http://127.0.0.1:9/hook")
    b.log(f"console: {total:,} subscriptions registered in {time.perf_counter() - t0:.0f} s")
    port = free_port()
    env = b.fleet.relay_env(
        RELAY_HOST="127.0.0.1", RELAY_PORT=str(port), RELAY_CONSOLE_SECURE_COOKIE="false"
    )
    api = b.fleet.spawn("api-console", ["-m", "relay", "api"], env)
    root = f"http://127.0.0.1:{port}"
    pages = {
        "overview": "/console",
        "subscriptions, first page": "/console/subscriptions",
        "subscriptions, host matching none": "/console/subscriptions?host=none.example",
        "subscriptions, state=watching": "/console/subscriptions?state=watching",
        "one subscription": f"/console/subscriptions/{docs[total // 2].id}",
    }
    try:
        wait_http(root + "/healthz", timeout=60)
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as http:
            await sign_in(http, root)
            for path in (*pages.values(), "/healthz"):  # warm-up
                await timed(http, root + path, 5)
            p99: dict[str, list[float]] = {name: [] for name in (*pages, "healthz")}
            pooled: dict[str, list[float]] = {name: [] for name in (*pages, "healthz")}
            for _ in range(reps):
                for name, path in (*pages.items(), ("healthz", "/healthz")):
                    got = await timed(http, root + path, per_rep)
                    p99[name].append(percentile(got, 0.99))
                    pooled[name] += got
            b.log("console p99 ms: " + ", ".join(f"{k} {max(v):.1f}" for k, v in p99.items()))
    finally:
        b.fleet.stop_child(api)
        await b.flush()
    return [
        Row(
            "console",
            f"p99 latency, {name}, {total:,} subscriptions",
            "ms",
            p99[name],
            p99["healthz"],
            "p99 < 100 ms",
            statistics.median(p99[name]) < 100,
            higher_is_better=False,
            note=f"{reps} repetitions of {per_rep} sequential requests (p99 of each; p99 of all "
            f"{len(pooled[name])}: {percentile(pooled[name], 0.99):.1f} ms); baseline GET /healthz",
        )
        for name in pages
    ]
