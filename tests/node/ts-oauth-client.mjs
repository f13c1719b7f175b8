// Interop client: the official TypeScript SDK's OAuth client (OAuthClientProvider + auth())
// against mcpgate in `--auth issuer` mode with `--dev-auto-approve`: discovery from the 401,
// dynamic client registration, /authorize (the "browser" only follows the redirect), the
// code exchange, a tool call, then a token refresh forced by the SDK's own refresh path.
//
// Env: MCP_URL (required). Prints one JSON line:
//   {"registered":true,"tools":[...],"result":<CallToolResult>,"refreshed":true}
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';

const url = process.env.MCP_URL;
if (!url) {
  console.error('MCP_URL is required');
  process.exit(1);
}

const REDIRECT = 'http://127.0.0.1:47999/callback';
let pendingCode;

class MemoryProvider {
  constructor() {
    this.info = undefined;
    this.saved = undefined;
    this.verifier = undefined;
  }
  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata() {
    return {
      client_name: 'mcpgate TS SDK interop',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  // The "browser": follows /authorize without a person (the gateway auto-approves) and reads
  // the code off the redirect it answers with.
  async redirectToAuthorization(authorizationUrl) {
    const r = await fetch(authorizationUrl, { redirect: 'manual' });
    const location = r.headers.get('location');
    if (r.status !== 303 || !location) {
      throw new Error(`authorize answered ${r.status} without a redirect: ${await r.text()}`);
    }
    const back = new URL(location);
    if (back.searchParams.get('error')) {
      throw new Error(`authorization refused: ${back.searchParams.get('error')} ${back.searchParams.get('error_description')}`);
    }
    pendingCode = back.searchParams.get('code');
  }
}

async function connectWith(provider) {
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  const client = new Client({ name: 'mcpgate-ts-oauth', version: '0.1.0' });
  try {
    await client.connect(transport);
    return client;
  } catch (err) {
    if (!(err instanceof UnauthorizedError) || !pendingCode) throw err;
    await transport.finishAuth(pendingCode);
    pendingCode = undefined;
    const again = new Client({ name: 'mcpgate-ts-oauth', version: '0.1.0' });
    await again.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider }));
    return again;
  }
}

async function run() {
  const provider = new MemoryProvider();
  const client = await connectWith(provider);
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const result = await client.callTool({ name: 'echo', arguments: { message: 'hello through OAuth' } });
  await client.close();
  // Refresh: the SDK's auth() with the stored refresh token, then use the new access token.
  const before = provider.tokens();
  if (!before?.refresh_token) throw new Error('no refresh token was issued');
  const outcome = await auth(provider, { serverUrl: url });
  const after = provider.tokens();
  const refreshed = outcome === 'AUTHORIZED' && after.access_token !== before.access_token && after.refresh_token !== before.refresh_token;
  const again = await connectWith(provider);
  await again.listTools();
  await again.close();
  console.log(JSON.stringify({ registered: Boolean(provider.info?.client_id), tools, result, refreshed }));
}

run().catch((err) => {
  console.error(err?.stack ?? String(err));
  process.exit(1);
});
