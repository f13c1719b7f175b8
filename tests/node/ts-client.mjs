// Interop client: drives an MCP server (e.g. mcpgate) with the official TypeScript SDK.
//
// Env:
//   MCP_URL            Streamable HTTP endpoint, e.g. http://127.0.0.1:8080/mcp (required)
//   MCP_TOKEN          bearer token sent as `Authorization: Bearer <token>` (required unless CHECK_UNAUTHORIZED=1)
//   TOOL_NAME          tool to call (default "echo")
//   TOOL_ARGS          JSON object of tool arguments (default {"message":"hello from ts"})
//   CHECK_UNAUTHORIZED if "1": connect WITHOUT a token and expect HTTP 401; prints {"unauthorized_rejected":true}
//
// Normal mode prints one JSON line: {"tools":[...names],"result":<CallToolResult>}.
// Exit code 0 on success, 1 on any error (message on stderr).
//
// Note: SDK 1.x speaks the initialize-based (2025-11-25) lifecycle.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const url = process.env.MCP_URL;
if (!url) {
  console.error('MCP_URL is required');
  process.exit(1);
}

function connect(token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client({ name: 'mcpgate-ts-client', version: '0.1.0' });
  return { client, transport, ready: client.connect(transport) };
}

async function checkUnauthorized() {
  const { client, ready } = connect(undefined);
  try {
    await ready;
  } catch (err) {
    const msg = String(err?.message ?? err);
    if (err?.code === 401 || /\b401\b|unauthori[sz]ed/i.test(msg)) {
      console.log(JSON.stringify({ unauthorized_rejected: true }));
      return;
    }
    throw new Error(`expected a 401 rejection, got: ${msg}`);
  }
  await client.close().catch(() => {});
  throw new Error('connection without a token unexpectedly succeeded');
}

async function run() {
  const token = process.env.MCP_TOKEN;
  if (!token) throw new Error('MCP_TOKEN is required');
  const name = process.env.TOOL_NAME || 'echo';
  const args = JSON.parse(process.env.TOOL_ARGS || '{"message":"hello from ts"}');

  const { client, transport, ready } = connect(token);
  await ready;
  try {
    const { tools } = await client.listTools();
    const result = await client.callTool({ name, arguments: args });
    console.log(JSON.stringify({ tools: tools.map((t) => t.name), result }));
  } finally {
    await transport.terminateSession().catch(() => {}); // DELETE the session; 405 is fine
    await client.close().catch(() => {});
  }
}

try {
  await (process.env.CHECK_UNAUTHORIZED === '1' ? checkUnauthorized() : run());
  process.exit(0);
} catch (err) {
  console.error(err?.stack ?? String(err));
  process.exit(1);
}
