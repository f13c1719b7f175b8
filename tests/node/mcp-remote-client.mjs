// Interop client: mcp-remote (pinned in package.json), the stdio-to-HTTP bridge that desktop
// MCP clients launch, run unmodified as a stdio MCP server and driven by the TypeScript SDK's
// stdio client. mcp-remote does the OAuth itself against mcpgate in `--auth issuer` mode:
// discovery from the 401, dynamic client registration with its loopback callback
// (http://localhost:<port>/oauth/callback), the browser (BROWSER, see browser.mjs) and the
// code exchange; then the tool call goes through it to the gateway.
//
// Env: MCP_URL, CALLBACK_PORT (required); BROWSER, MCP_REMOTE_CONFIG_DIR and the rest are
// passed on to mcp-remote. Prints one JSON line: {"tools":[...],"result":<CallToolResult>}
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const { MCP_URL: url, CALLBACK_PORT: port } = process.env;
if (!url || !port) {
  console.error('MCP_URL and CALLBACK_PORT are required');
  process.exit(1);
}
const proxy = fileURLToPath(new URL('./node_modules/mcp-remote/dist/proxy.js', import.meta.url));

async function run() {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [proxy, url, port],
    env: { ...process.env },
    stderr: 'inherit',
  });
  const client = new Client({ name: 'mcpgate-mcp-remote-interop', version: '0.1.0' });
  await client.connect(transport);
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const result = await client.callTool({ name: 'echo', arguments: { message: 'hello through mcp-remote' } });
  await client.close();
  console.log(JSON.stringify({ tools, result }));
}

run().catch((err) => {
  console.error(err?.stack ?? String(err));
  process.exit(1);
});
