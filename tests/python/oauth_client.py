"""Interop client: the official MCP Python SDK's OAuth client (mcp.client.auth.OAuthClientProvider)
against mcpgate in `--auth issuer` mode with `--dev-auto-approve`: discovery from the 401, dynamic
client registration, /authorize (the "browser" reads the redirect the gateway answers with, without
following it), the code exchange, a tool call; then, once the access token has expired, a second
call, before which the SDK refreshes on its own.

Env: MCP_URL (required); WAIT_FOR_EXPIRY (seconds to wait between the calls, default 0).
Prints one JSON line (never a token):
  {"registered":true,"tools":[...],"first":"...","second":"...","iss":"...","issuer":"...",
   "refreshed":true,"rotated":true}
"""

import asyncio
import json
import os
import sys
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT = "http://127.0.0.1:47998/callback"


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.saved = 0

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.saved += 1

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Browser:
    """Visits /authorize without a person (the gateway auto-approves) and keeps what the
    redirect back to the client carries."""

    def __init__(self) -> None:
        self.pending: AuthorizationCodeResult | None = None
        self.iss: str | None = None

    async def redirect_handler(self, authorization_url: str) -> None:
        async with httpx2.AsyncClient(follow_redirects=False) as http:
            r = await http.get(authorization_url)
        location = r.headers.get("location")
        if r.status_code != 303 or not location:
            raise RuntimeError(f"authorize answered {r.status_code} without a redirect: {r.text}")
        if not location.startswith(REDIRECT + "?"):
            raise RuntimeError(f"authorize redirected elsewhere: {location.split('?')[0]}")
        query = parse_qs(urlparse(location).query)
        if "error" in query:
            raise RuntimeError(f"authorization refused: {query['error']} {query.get('error_description')}")

        def one(key: str) -> str | None:
            return query[key][0] if key in query else None

        self.iss = one("iss")
        self.pending = AuthorizationCodeResult(code=one("code") or "", state=one("state"), iss=self.iss)

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self.pending is None:
            raise RuntimeError("the callback came before any redirect")
        result, self.pending = self.pending, None
        return result


async def echo(session: ClientSession, message: str) -> str:
    result = await session.call_tool("echo", {"message": message})
    if result.is_error:
        raise RuntimeError(f"echo failed: {result.content}")
    return result.content[0].text


async def run(url: str, wait: float) -> dict:
    storage = MemoryStorage()
    browser = Browser()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="mcpgate Python SDK interop",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = [t.name for t in (await session.list_tools()).tools]
                first = await echo(session, "hello from the Python SDK")
                before = storage.tokens
                if before is None or not before.refresh_token:
                    raise RuntimeError("no refresh token was issued")
                saved_before = storage.saved
                await asyncio.sleep(wait)
                second = await echo(session, "hello again after a refresh")
                after = storage.tokens
    metadata = provider.context.oauth_metadata
    return {
        "registered": bool(storage.client_info and storage.client_info.client_id),
        "tools": tools,
        "first": first,
        "second": second,
        "iss": browser.iss,
        "issuer": str(metadata.issuer) if metadata else None,
        "refreshed": storage.saved > saved_before and after.access_token != before.access_token,
        "rotated": bool(after.refresh_token) and after.refresh_token != before.refresh_token,
    }


def main() -> None:
    url = os.environ.get("MCP_URL")
    if not url:
        print("MCP_URL is required", file=sys.stderr)
        sys.exit(1)
    wait = float(os.environ.get("WAIT_FOR_EXPIRY", "0"))
    print(json.dumps(asyncio.run(run(url, wait))))


if __name__ == "__main__":
    main()
