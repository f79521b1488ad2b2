"""Drives tenant-mcp's management MCP server with the official MCP Python SDK.

Usage: admin_client.py URL < steps.json
       admin_client.py stdio COMMAND [ARG...] < steps.json

URL is the server's Streamable HTTP endpoint; with `stdio`, each step runs COMMAND as a stdio
MCP server instead (with this process's environment; the steps' tokens are then unused).
Standard input is a JSON list of steps:

    {"token": "...", "tool": "rag_get_tenant_mcp_config", "arguments": {...},
     "until_ready": false, "timeout": 60}

Each step opens its own session with `Authorization: Bearer <token>` and calls the tool; with
`until_ready` it repeats the call until every server in the result is Healthy and serving its
desired spec (or `timeout` seconds pass). A step without "tool" only lists the tools.

Prints one JSON object: {"tools": [{"name", "input_schema"}], "results": [...]}, where each
result is {"ok": true, "value": structured content}, {"ok": false, "is_error": true,
"message", "data"} (a tool result flagged as an error: its text and structured content), or
{"ok": false, "code", "message", "data"} (a JSON-RPC error).
"""

import asyncio
import contextlib
import json
import logging
import os
import sys
import time

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


@contextlib.asynccontextmanager
async def connect(target, token):
    if isinstance(target, list):
        server = StdioServerParameters(command=target[0], args=target[1:], env=dict(os.environ))
        async with stdio_client(server) as streams:
            yield streams
        return
    headers = {"Authorization": f"Bearer {token}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(target, http_client=http) as streams:
            yield streams


async def session_call(target, token, tool, arguments):
    async with connect(target, token) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            if tool is None:
                listed = await session.list_tools()
                return [{"name": t.name, "input_schema": t.input_schema} for t in listed.tools]
            try:
                result = await session.call_tool(tool, arguments)
            except MCPError as e:
                return {"ok": False, "code": e.code, "message": e.message, "data": e.data}
            if result.is_error:
                text = " ".join(getattr(c, "text", "") for c in result.content)
                return {
                    "ok": False,
                    "is_error": True,
                    "message": text,
                    "data": result.structured_content,
                }
            return {"ok": True, "value": result.structured_content}


def ready(result):
    if not result.get("ok"):
        return False
    servers = result["value"].get("servers") or []
    return bool(servers) and all(
        s.get("state") == "Healthy" and s.get("desiredIsActive") for s in servers
    )


async def main():
    # The SDK warns when a session's DELETE is answered 202 (rmcp's answer) instead of 200/204.
    logging.getLogger("mcp").setLevel(logging.ERROR)
    target = sys.argv[2:] if sys.argv[1] == "stdio" else sys.argv[1]
    steps = json.load(sys.stdin)
    tools, results = [], []
    for step in steps:
        tool = step.get("tool")
        if tool is None:
            tools = await session_call(target, step["token"], None, None)
            continue
        deadline = time.monotonic() + step.get("timeout", 60)
        while True:
            result = await session_call(target, step["token"], tool, step.get("arguments", {}))
            if not step.get("until_ready") or ready(result) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        results.append(result)
    json.dump({"tools": tools, "results": results}, sys.stdout)


asyncio.run(main())
