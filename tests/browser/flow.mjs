#!/usr/bin/env node
// A person at the built-in issuer's pages, in a real browser: Debian's Chromium, headless,
// driven by playwright-core over its DevTools pipe. It opens an authorization URL, signs in on
// the sign-in page, answers the consent page, and stops at the client's loopback redirect URI,
// where a small listener of its own stands in for the client and records the query the browser
// brought back. On the way it records what a person would rely on: the pages' headings,
// messages and buttons, their security headers and cookies, whether anything was loaded from
// anywhere else, text contrast, and screenshots.
//
// Usage: node flow.mjs SCENARIO AUTHORIZATION_URL
//   approve        a wrong password, then an unknown user name, then the right ones; the
//                  consent page (also dark and on a phone); Approve
//   deny           sign in; Deny
//   double-submit  sign in; Approve, and on a slow network (the answer held back a second)
//                  Approve again while the page still shows
//   reload         the sign-in page opened again in a second tab and fetched once more (as a
//                  prefetch would), then the first tab's form submitted; the consent page
//                  reloaded, then Approve
//   race           two tabs open the authorization URL at the same moment in a fresh browser
//                  (neither has the CSRF cookie yet, so each gets one, and the browser keeps
//                  the second tab's); the first tab's form submitted, then whatever it shows
//                  answered until the consent page; Approve
// Env: FLOW_USER, FLOW_PASSWORD: the local user; FLOW_ARTIFACTS: where screenshots go
// (created; none taken when unset); CHROMIUM: the browser (default /usr/bin/chromium).
// Prints one JSON line on stdout: what the browser saw (the Rust test asserts on it).
import { createServer } from 'node:http';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [scenario, authorizationUrl] = process.argv.slice(2);
const scenarios = ['approve', 'deny', 'double-submit', 'reload', 'race'];
if (!scenarios.includes(scenario) || !authorizationUrl) {
  console.error(`usage: flow.mjs ${scenarios.join('|')} AUTHORIZATION_URL`);
  process.exit(2);
}
const user = process.env.FLOW_USER ?? '';
const password = process.env.FLOW_PASSWORD ?? '';
const artifacts = process.env.FLOW_ARTIFACTS;
if (artifacts) mkdirSync(artifacts, { recursive: true });

const authorize = new URL(authorizationUrl);
const gatewayOrigin = authorize.origin;
const redirect = new URL(authorize.searchParams.get('redirect_uri'));

// The client: the redirect URI's loopback listener. Every visit is recorded.
const callbacks = [];
let arrived;
const firstCallback = new Promise((resolve) => (arrived = resolve));
const client = createServer((req, res) => {
  const url = new URL(req.url, redirect.origin);
  if (url.pathname !== redirect.pathname) {
    res.writeHead(404).end(); // the browser's own /favicon.ico
    return;
  }
  callbacks.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams) });
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end('<!doctype html><title>Client</title><h1>Back at the application</h1>');
  arrived();
});
await new Promise((resolve, reject) => {
  client.once('error', reject);
  client.listen(Number(redirect.port), redirect.hostname, resolve);
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});

const report = {
  scenario,
  browser: browser.version(),
  documents: [], // every top-level document answer: path, status and security headers
  requests: { total: 0, outside: [] }, // requests to anywhere but the gateway and the callback
  console: [], // console errors and warnings (a CSP violation shows here)
  pages: {}, // what each page showed
  screenshots: [],
  consentPosts: 0,
  signInPosts: 0,
};

/** A browser context whose every request and document answer is recorded. */
async function newContext() {
  const context = await browser.newContext({ viewport: { width: 1024, height: 800 }, colorScheme: 'light' });
  context.on('request', (request) => {
    report.requests.total += 1;
    const url = new URL(request.url());
    const toClient = url.origin === redirect.origin && url.pathname === redirect.pathname;
    if (url.origin !== gatewayOrigin && !toClient) report.requests.outside.push(`${url.origin}${url.pathname}`);
    if (request.method() === 'POST' && url.pathname.endsWith('/authorize/consent')) report.consentPosts += 1;
    if (request.method() === 'POST' && url.pathname.endsWith('/authorize/sign-in')) report.signInPosts += 1;
  });
  context.on('response', async (response) => {
    const request = response.request();
    if (!request.isNavigationRequest()) return;
    const url = new URL(response.url());
    if (url.origin !== gatewayOrigin) return;
    const h = await response.allHeaders();
    report.documents.push({
      method: request.method(),
      path: url.pathname,
      status: response.status(),
      csp: h['content-security-policy'] ?? null,
      xFrameOptions: h['x-frame-options'] ?? null,
      cacheControl: h['cache-control'] ?? null,
      referrerPolicy: h['referrer-policy'] ?? null,
      setCookie: (await response.headersArray())
        .filter((x) => x.name.toLowerCase() === 'set-cookie')
        .map((x) => x.value.replace(/=[^;]*/, '=…')),
    });
  });
  context.on('page', watch);
  // Injected by DevTools (the pages' CSP does not apply to it): violations go to the console.
  await context.addInitScript(() =>
    document.addEventListener('securitypolicyviolation', (e) =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`),
    ),
  );
  return context;
}

function watch(page) {
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') report.console.push(m.text());
  });
  page.on('pageerror', (e) => report.console.push(`pageerror: ${e.message}`));
}

async function shot(page, name, options = {}) {
  if (!artifacts) return;
  const path = join(artifacts, `${name}.png`);
  await page.screenshot({ path, ...options });
  report.screenshots.push(path);
}

/** What a person can read on the page: run in the page (by DevTools, not by the page). */
async function readPage(page) {
  return page.evaluate(() => {
    const text = (el) => (el ? el.innerText.replace(/\s+/g, ' ').trim() : null);
    const visible = (el) => {
      if (!el) return false;
      const r = el.getBoundingClientRect();
      const s = getComputedStyle(el);
      return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none' && Number(s.opacity) > 0.5;
    };
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const luminance = ([r, g, b]) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const contrast = (el) => {
      const a = luminance(rgb(getComputedStyle(el).color).slice(0, 3));
      const b = luminance(background(el));
      return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    };
    // Every element that holds text of its own.
    const texts = [...document.body.querySelectorAll('*')].filter(
      (el) => visible(el) && [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim()),
    );
    const lowest = texts
      .map((el) => ({ text: text(el).slice(0, 40), ratio: Math.round(contrast(el) * 100) / 100 }))
      .sort((a, b) => a.ratio - b.ratio)[0];
    const h1 = document.querySelector('h1');
    const card = document.querySelector('.card');
    return {
      title: document.title,
      lang: document.documentElement.lang,
      heading: text(h1),
      headingVisible: visible(h1),
      alert: text(document.querySelector('[role=alert]')),
      buttons: [...document.querySelectorAll('button')].map((b) => ({ text: text(b), visible: visible(b) })),
      labels: [...document.querySelectorAll('label')].map(text),
      focused: document.activeElement?.id || null,
      username: document.querySelector('#username')?.value ?? null,
      host: text(document.querySelector('.host')),
      facts: [...document.querySelectorAll('.facts li')].map(text),
      note: text(document.querySelector('.note')),
      scopes: [...document.querySelectorAll('.scopes li')].map(text),
      card: text(card),
      // Where the card starts, from the top of the document: below 0 is out of reach.
      cardTop: card ? card.getBoundingClientRect().top + window.scrollY : null,
      csrf: document.querySelector('input[name=csrf]')?.value ?? null,
      lowestContrast: lowest ?? null,
      smallestFont: Math.min(...texts.map((el) => parseFloat(getComputedStyle(el).fontSize))),
      overflowsHorizontally: document.documentElement.scrollWidth > window.innerWidth,
      scripts: document.scripts.length,
      externalLinks: [...document.querySelectorAll('[src],[href]')].map((e) => e.getAttribute('src') ?? e.getAttribute('href')),
    };
  });
}

/** Clicks `selector` and waits for the page the browser ends up on. */
async function submit(page, selector) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
}

async function fillSignIn(page, name, secret) {
  await page.fill('#username', name);
  await page.fill('#password', secret);
  await submit(page, 'button[type=submit]');
}

/** Waits for the browser to reach the client, and a moment longer for a second visit. */
async function atClient(page, settle = 300) {
  await Promise.race([
    firstCallback,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`the browser never reached the client; it is at ${page.url()}`)), 15000)),
  ]);
  await page.waitForLoadState('load');
  await new Promise((r) => setTimeout(r, settle));
  report.finalUrl = `${new URL(page.url()).origin}${new URL(page.url()).pathname}`;
}

async function cookies(context) {
  report.cookies = (await context.cookies(gatewayOrigin)).map((c) => ({
    name: c.name,
    httpOnly: c.httpOnly,
    secure: c.secure,
    sameSite: c.sameSite,
    path: c.path,
    hostOnly: !c.domain.startsWith('.'),
    session: c.expires === -1,
  }));
}

async function consentPage(page, name) {
  report.pages[name] = await readPage(page);
  report.pages[name].url = new URL(page.url()).pathname;
}

async function run() {
  const context = await newContext();
  const page = await context.newPage();

  if (scenario === 'approve') {
    await page.goto(authorizationUrl);
    report.pages.signIn = await readPage(page);
    await shot(page, 'sign-in');
    await fillSignIn(page, user, `${password}-wrong`);
    report.pages.wrongPassword = await readPage(page);
    await shot(page, 'sign-in-error');
    await fillSignIn(page, 'nobody-by-this-name', password);
    report.pages.unknownUser = await readPage(page);
    await fillSignIn(page, user, password);
    await consentPage(page, 'consent');
    await shot(page, 'consent', { fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    report.pages.consentDark = await readPage(page);
    await shot(page, 'consent-dark', { fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 390, height: 844 });
    report.pages.consentPhone = await readPage(page);
    await shot(page, 'consent-phone', { fullPage: true });
    // A small laptop's window: the page is taller than it.
    await page.setViewportSize({ width: 1280, height: 560 });
    report.pages.consentShort = await readPage(page);
    await page.setViewportSize({ width: 1024, height: 800 });
    await cookies(context);
    await page.click('button[value=approve]');
    await atClient(page);
  } else if (scenario === 'deny') {
    await page.goto(authorizationUrl);
    await fillSignIn(page, user, password);
    await consentPage(page, 'consent');
    await cookies(context);
    await page.click('button[value=deny]');
    await atClient(page);
  } else if (scenario === 'double-submit') {
    await page.goto(authorizationUrl);
    await fillSignIn(page, user, password);
    await consentPage(page, 'consent');
    await cookies(context);
    // A slow network: the gateway's answer to the first Approve is held back a second, so
    // the person clicks Approve again while the page still shows.
    let answered = 0;
    await context.route(
      (url) => url.pathname.endsWith('/authorize/consent'),
      async (route) => {
        const response = await route.fetch({ maxRedirects: 0 });
        answered += 1;
        if (answered === 1) await new Promise((r) => setTimeout(r, 1000));
        await route.fulfill({ response }).catch(() => {}); // the browser gave this one up
      },
    );
    // The mouse itself, twice on the same spot: Playwright's click would wait for the first
    // navigation to end, as a person does not.
    const box = await page.locator('button[value=approve]').boundingBox();
    const [x, y] = [box.x + box.width / 2, box.y + box.height / 2];
    await page.mouse.click(x, y);
    while (answered === 0) await new Promise((r) => setTimeout(r, 20));
    await page.mouse.click(x, y);
    await atClient(page, 1500);
    report.consentAnswers = answered;
  } else if (scenario === 'reload') {
    await page.goto(authorizationUrl);
    report.pages.signIn = await readPage(page);
    // The same request again in a second tab, and fetched once more with the browser's
    // cookies: each is another GET of /authorize.
    const second = await context.newPage();
    await second.goto(authorizationUrl);
    report.pages.secondTab = await readPage(second);
    const prefetch = await context.request.get(authorizationUrl, { maxRedirects: 0 });
    report.prefetchStatus = prefetch.status();
    // The first tab's form still works.
    await fillSignIn(page, user, password);
    await consentPage(page, 'consent');
    await page.reload({ waitUntil: 'load' });
    await consentPage(page, 'consentReloaded');
    await cookies(context);
    await page.click('button[value=approve]');
    await atClient(page);
    await second.close();
  } else if (scenario === 'race') {
    // Both first GETs of /authorize are answered before the browser takes either answer in,
    // so each tab gets a CSRF token of its own; the second tab's answer is taken in last, so
    // its token is the one the browser keeps.
    const second = await context.newPage();
    const held = new Map(); // page -> its held route
    let bothAnswered;
    const answered = new Promise((resolve) => (bothAnswered = resolve));
    await context.route(
      (url) => url.pathname === authorize.pathname,
      async (route) => {
        const tab = route.request().frame().page();
        if (held.size >= 2 || held.has(tab)) return route.continue();
        held.set(tab, route);
        if (held.size === 2) {
          const fetched = [page, second].map((p) => held.get(p).fetch({ maxRedirects: 0 }));
          bothAnswered(Promise.all(fetched));
        }
        await answered.catch(() => {}); // reported where it is awaited below
      },
    );
    const firstLoaded = page.goto(authorizationUrl);
    const secondLoaded = second.goto(authorizationUrl);
    const [a, b] = await answered;
    await held.get(page).fulfill({ response: a });
    await firstLoaded;
    await held.get(second).fulfill({ response: b });
    await secondLoaded;
    const token = (p) => p.locator('input[name=csrf]').first().inputValue();
    const kept = (await context.cookies(gatewayOrigin)).find((c) => c.name.endsWith('mcpgate-csrf'))?.value;
    report.race = {
      tokensDiffer: (await token(page)) !== (await token(second)),
      browserKeepsSecondTabs: kept === (await token(second)),
    };
    report.pages.signIn = await readPage(page);
    report.pages.secondTab = await readPage(second);
    await fillSignIn(page, user, password);
    report.pages.afterFirstSubmit = await readPage(page);
    await shot(page, 'sign-in-again');
    if (report.pages.afterFirstSubmit.labels.includes('Password')) {
      // The form was shown again (bound to the token the browser kept): sign in there.
      await fillSignIn(page, user, password);
    }
    await consentPage(page, 'consent');
    await cookies(context);
    await page.click('button[value=approve]');
    await atClient(page);
    await second.close();
  }
  await context.close();
}

let failure = null;
try {
  await run();
} catch (e) {
  failure = e?.message ?? String(e);
}
report.callbacks = callbacks;
if (failure) report.failure = failure;
await browser.close();
client.close();
console.log(JSON.stringify(report));
process.exit(failure ? 1 : 0);
