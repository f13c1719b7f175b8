#!/usr/bin/env node
// A stand-in for a person's browser, for clients that "open a browser" through the `open`
// package (xdg-open runs $BROWSER with the URL): it fetches the authorization URL and follows
// every redirect, the last one being the client's own loopback callback, exactly as a browser
// would. It only works against an authorization server that signs a user in and approves by
// itself (mcpgate's `--dev-auto-approve`).
//
// Usage: browser.mjs URL. Env: BROWSER_LOG (optional): a file each hop is appended to, as
// "STATUS METHOD ORIGIN+PATH" (never the query, which carries the code).
import { appendFileSync } from 'node:fs';

const log = (line) => {
  if (process.env.BROWSER_LOG) appendFileSync(process.env.BROWSER_LOG, `${line}\n`);
};

async function visit(start) {
  let url = new URL(start);
  for (let hop = 0; hop < 10; hop++) {
    const r = await fetch(url, { redirect: 'manual' });
    log(`${r.status} GET ${url.origin}${url.pathname}`);
    const location = r.headers.get('location');
    if (r.status >= 300 && r.status < 400 && location) {
      url = new URL(location, url);
      continue;
    }
    if (!r.ok) throw new Error(`${url.origin}${url.pathname} answered ${r.status}: ${(await r.text()).slice(0, 300)}`);
    return;
  }
  throw new Error('too many redirects');
}

visit(process.argv[2]).catch((err) => {
  log(`error: ${err?.message ?? err}`);
  console.error(err?.message ?? String(err));
  process.exit(1);
});
