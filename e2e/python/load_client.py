"""Drives tenant-mcp's management MCP server at full speed with the official MCP Python SDK.

Usage: load_client.py burst URL TOKEN CALLS CONCURRENCY TENANT
       load_client.py fuzz URL TOKEN CALLS SEED TENANT

`burst` makes CALLS `rag_get_tenant_mcp_config` calls for TENANT, CONCURRENCY at a time, every
session on one shared HTTP client (so connections are reused, as a real agent's are).
`fuzz` makes CALLS calls of randomly mutated register / update / get / delete / test arguments
(seeded by SEED: the same seed makes the same calls), one at a time; before and after each call
it reads TENANT's config with the get tool, so a refused call that changed it is caught.

Prints one JSON object:
  {"outcomes": {kind: count}, "statuses": {http status: count}, "retry_after_missing": n,
   "transport_errors": [message...], "slowest_seconds": s, "calls": [...]}
where kind is "result" (the tool answered), "tool_error" (a result flagged as an error),
"jsonrpc_error" (a JSON-RPC error from the server), "http_refusal" (a 4xx/5xx the SDK reported)
or "transport" (anything else: the connection dropped, a timeout). `calls` (fuzz only) lists
{"tool", "outcome", "changed"}: whether the config's resourceVersion moved during the call.
"""

import asyncio
import collections
import contextlib
import json
import logging
import random
import sys
import time

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

CALL_LIMIT_SECONDS = 90


class Recorder:
    def __init__(self):
        self.statuses = collections.Counter()
        self.retry_after_missing = 0

    async def on_response(self, response):
        self.statuses[str(response.status_code)] += 1
        if response.status_code == 429 and "retry-after" not in response.headers:
            self.retry_after_missing += 1


def http_client(token, recorder):
    return httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30.0, read=60.0),
        event_hooks={"response": [recorder.on_response]},
    )


def leaves(error):
    """The innermost exceptions of an exception group (anyio task groups nest them)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


async def call(url, http, tool, arguments):
    """One tool call in a session of its own: (kind, detail)."""
    try:
        with anyio.fail_after(CALL_LIMIT_SECONDS):
            async with streamable_http_client(url, http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    try:
                        await session.initialize()
                        result = await session.call_tool(tool, arguments)
                    except MCPError as e:
                        if e.message == "Server returned an error response":
                            return "http_refusal", e.message
                        return "jsonrpc_error", e.message
                    if result.is_error:
                        return "tool_error", " ".join(getattr(c, "text", "") for c in result.content)
                    return "result", result.structured_content
    except TimeoutError:
        return "transport", f"no answer within {CALL_LIMIT_SECONDS}s"
    except BaseException as e:  # noqa: BLE001 - every failure is counted, none may escape
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return "transport", "; ".join(f"{type(x).__name__}: {x}" for x in leaves(e))


async def burst(url, token, calls, concurrency, tenant):
    recorder = Recorder()
    outcomes = collections.Counter()
    transport = []
    slowest = 0.0
    queue = list(range(calls))

    async with http_client(token, recorder) as http:

        async def worker():
            nonlocal slowest
            while queue:
                queue.pop()
                start = time.monotonic()
                kind, detail = await call(url, http, "rag_get_tenant_mcp_config", {"tenantId": tenant})
                slowest = max(slowest, time.monotonic() - start)
                outcomes[kind] += 1
                if kind == "transport":
                    transport.append(detail)

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    return {
        "outcomes": outcomes,
        "statuses": recorder.statuses,
        "retry_after_missing": recorder.retry_after_missing,
        "transport_errors": transport,
        "slowest_seconds": slowest,
        "calls": [],
    }


HOSTILE_STRINGS = [
    "",
    " ",
    "x" * 70_000,
    "\u0000\u0001\u001b[31m",
    "../../etc/passwd",
    "acme\nInjected: header",
    "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data/",
    "http://user:pass@127.0.0.1:1/",
    "gopher://127.0.0.1:6379/_INFO",
    "http://[::1]:1/",
    "http://0x7f000001:1/",
    "https://" + "a" * 300 + ".example/",
    "${jndi:ldap://x}",
    "'; DROP TABLE tenant_configs; --",
    "\ud7ff\ue000",
]


def hostile_value(rng):
    choice = rng.randrange(9)
    if choice == 0:
        return rng.choice(HOSTILE_STRINGS)
    if choice == 1:
        return rng.choice([None, True, False, 0, -1, 2**63, 1.5, float("1e308")])
    if choice == 2:
        return [rng.choice(HOSTILE_STRINGS) for _ in range(rng.choice([0, 1, 1000]))]
    if choice == 3:
        return {rng.choice(["unknown", "$ref", "__proto__", "apiVersion"]): rng.choice(HOSTILE_STRINGS)}
    if choice == 4:
        nested = "x"
        for _ in range(rng.choice([10, 100])):
            nested = {"a": nested}
        return nested
    if choice == 5:
        return "".join(chr(rng.randrange(0, 0x2FF)) for _ in range(rng.randrange(1, 64)))
    if choice == 6:
        return rng.randrange(-(2**31), 2**31)
    if choice == 7:
        return {}
    return []


def paths(value, prefix=()):
    """Every path into a JSON value, the value itself included."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from paths(inner, prefix + (index,))


def mutate(rng, arguments):
    """A copy of `arguments` with one to three random mutations."""
    arguments = json.loads(json.dumps(arguments))
    for _ in range(rng.randrange(1, 4)):
        candidates = [p for p in paths(arguments) if p]
        if not candidates:
            break
        path = rng.choice(candidates)
        parent = arguments
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        action = rng.randrange(4)
        if action == 0 and isinstance(parent, dict):
            del parent[last]
        elif action == 1 and isinstance(parent, dict):
            parent[rng.choice(["unknownField", "x-extra", "servers2"])] = hostile_value(rng)
        else:
            parent[last] = hostile_value(rng)
        if not isinstance(arguments, dict):
            break
    return arguments


def valid_calls(tenant, spec):
    """Valid arguments for each tool; the fuzz mutates them."""
    return [
        ("rag_register_tenant_mcp_config", {"tenantId": tenant, **spec}),
        ("rag_update_tenant_mcp_config", {"tenantId": tenant, **spec}),
        ("rag_get_tenant_mcp_config", {"tenantId": tenant}),
        ("rag_test_tenant_mcp_config", {"tenantId": tenant, **spec}),
        ("rag_delete_tenant_mcp_config", {"tenantId": tenant}),
        ("rag_list_tenant_mcp_configs", {}),
    ]


def version(outcome):
    kind, detail = outcome
    if kind != "result" or not isinstance(detail, dict):
        return None
    return detail.get("resourceVersion")


async def fuzz(url, token, calls, seed, tenant, spec):
    rng = random.Random(seed)
    recorder = Recorder()
    outcomes = collections.Counter()
    transport = []
    slowest = 0.0
    log = []
    async with http_client(token, recorder) as http:
        for _ in range(calls):
            tool, arguments = rng.choice(valid_calls(tenant, spec))
            if tool == "rag_delete_tenant_mcp_config" and rng.random() < 0.9:
                # Deleting for real ends the run's subject; mutated deletes still come.
                arguments = mutate(rng, arguments)
                if arguments.get("tenantId") == tenant:
                    arguments["tenantId"] = rng.choice(HOSTILE_STRINGS)
            elif arguments:
                arguments = mutate(rng, arguments)
            before = version(await call(url, http, "rag_get_tenant_mcp_config", {"tenantId": tenant}))
            start = time.monotonic()
            kind, detail = await call(url, http, tool, arguments)
            slowest = max(slowest, time.monotonic() - start)
            after = version(await call(url, http, "rag_get_tenant_mcp_config", {"tenantId": tenant}))
            outcomes[kind] += 1
            if kind == "transport":
                transport.append(detail)
            log.append({"tool": tool, "outcome": kind, "changed": before != after})
    return {
        "outcomes": outcomes,
        "statuses": recorder.statuses,
        "retry_after_missing": recorder.retry_after_missing,
        "transport_errors": transport,
        "slowest_seconds": slowest,
        "calls": log,
    }


async def main():
    logging.getLogger("mcp").setLevel(logging.CRITICAL)
    mode, url, token = sys.argv[1], sys.argv[2], sys.argv[3]
    calls = int(sys.argv[4])
    if mode == "burst":
        report = await burst(url, token, calls, int(sys.argv[5]), sys.argv[6])
    else:
        spec = json.load(sys.stdin)
        report = await fuzz(url, token, calls, int(sys.argv[5]), sys.argv[6], spec)
    json.dump(report, sys.stdout)


with contextlib.suppress(BrokenPipeError):
    asyncio.run(main())
