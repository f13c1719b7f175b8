// Interop client for a stdio upstream behind mcpgate: the official TypeScript SDK client with
// sampling, elicitation and roots, driving @modelcontextprotocol/server-everything (or any
// server with the same tools) through the gateway.
//
// Env:
//   MCP_URL    Streamable HTTP endpoint of the gateway (required)
//   MCP_TOKEN  bearer token (required)
//
// Prints one JSON line with what it saw; exit code 0 on success, 1 on error.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

const url = process.env.MCP_URL;
const token = process.env.MCP_TOKEN;
if (!url || !token) {
  console.error('MCP_URL and MCP_TOKEN are required');
  process.exit(1);
}

const text = (result) => result.content?.find((c) => c.type === 'text')?.text ?? '';

async function run() {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client(
    { name: 'mcpgate-ts-stdio-client', version: '0.1.0' },
    { capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } } },
  );
  const seen = { asked: [] };
  client.setRequestHandler(CreateMessageRequestSchema, async () => {
    seen.asked.push('sampling');
    return { role: 'assistant', content: { type: 'text', text: 'ts sampled answer' }, model: 'ts-model' };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => {
    seen.asked.push('elicitation');
    return { action: 'accept', content: { name: 'Ada Lovelace', check: true, integer: 7 } };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    seen.asked.push('roots');
    return { roots: [{ uri: 'file:///ts-root', name: 'ts' }] };
  });
  await client.connect(transport);
  try {
    const out = { sessionId: transport.sessionId };
    const { tools } = await client.listTools();
    out.tools = tools.map((t) => t.name);
    out.echo = text(await client.callTool({ name: 'echo', arguments: { message: 'hello stdio' } }));
    out.sum = text(await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 40 } }));
    let progress = 0;
    await client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
      undefined,
      { onprogress: () => { progress += 1; } },
    );
    out.progress = progress;
    out.sampling = text(await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 20 } }));
    out.elicitation = text(await client.callTool({ name: 'trigger-elicitation-request', arguments: {} }));
    out.roots = text(await client.callTool({ name: 'get-roots-list', arguments: {} }));
    const { resources } = await client.listResources();
    out.resources = resources.length;
    if (resources.length > 0) {
      const read = await client.readResource({ uri: resources[0].uri });
      out.read = read.contents.length;
    }
    const { prompts } = await client.listPrompts();
    out.prompts = prompts.map((p) => p.name);
    out.asked = seen.asked;
    console.log(JSON.stringify(out));
  } finally {
    await transport.terminateSession().catch(() => {});
    await client.close().catch(() => {});
  }
}

try {
  await run();
  process.exit(0);
} catch (err) {
  console.error(err?.stack ?? String(err));
  process.exit(1);
}
