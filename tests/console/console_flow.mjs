// The web console in a real browser: playwright-core drives the system's
// headless Chromium against a running `sealgate serve --console-listen`
// (started by tests/console.rs, with shadow mode, a capture file and a real
// upstream). Keyboard only, as a person without a mouse would:
//
//   the login page has labelled inputs -> type the token, Enter -> routes
//   page lists the routes -> findings page is empty -> shadow traffic is sent
//   through the proxy -> the findings appear -> Tab to two findings, Space
//   ticks each -> Tab to the key field, type it, Enter -> the draft downloads
//   -> keys and audit pages -> Tab to "Log out", Space -> back at the login
//
// Every page: a Content-Security-Policy header, no inline script, every
// visible input labelled, none of the known plaintexts in the page. A
// screenshot of each is saved.
//
// Prints one JSON line per step ({"step", "ok", ...}); exits 1 at the first
// failure, 2 for bad usage.
//
// Usage:
//   node console_flow.mjs --node-dir DIR --chromium PATH --console URL --token T
//     --proxy URL --shots DIR --download FILE --secrets a,b,c --traffic JSON
// DIR is where tests/console/setup.sh installed playwright-core.

import { createRequire } from "node:module";
import path from "node:path";
import fs from "node:fs";
import { parseArgs } from "node:util";

const { values: a } = parseArgs({
  options: {
    "node-dir": { type: "string" },
    chromium: { type: "string" },
    console: { type: "string" },
    token: { type: "string" },
    proxy: { type: "string" },
    shots: { type: "string" },
    download: { type: "string" },
    secrets: { type: "string" },
    traffic: { type: "string" },
  },
});
for (const k of ["node-dir", "chromium", "console", "token", "proxy", "shots", "download", "secrets", "traffic"]) {
  if (!a[k]) {
    console.error(`missing --${k}`);
    process.exit(2);
  }
}
const require = createRequire(path.join(a["node-dir"], "package.json"));
const { chromium } = require("playwright-core");
const secrets = a.secrets.split(",");
const traffic = JSON.parse(a.traffic);

function step(name, extra = {}) {
  console.log(JSON.stringify({ step: name, ok: true, ...extra }));
}
function fail(name, why) {
  console.log(JSON.stringify({ step: name, ok: false, error: String(why) }));
  process.exit(1);
}
function check(name, cond, why) {
  if (!cond) fail(name, why);
}

// What the focused element is (for keyboard navigation).
async function focused(page) {
  return page.evaluate(() => {
    const e = document.activeElement;
    if (!e) return null;
    return {
      tag: e.tagName.toLowerCase(),
      type: e.getAttribute("type") || "",
      id: e.id,
      name: e.getAttribute("name") || "",
      text: (e.textContent || "").trim(),
      label: e.labels && e.labels.length ? e.labels[0].textContent.trim() : "",
      checked: !!e.checked,
    };
  });
}

// Presses Tab until `want(focused)` holds (at most 80 presses).
async function tabTo(page, what, want) {
  for (let i = 0; i < 80; i++) {
    await page.keyboard.press("Tab");
    const f = await focused(page);
    if (f && want(f)) return f;
  }
  fail(`tab to ${what}`, "never reached it with Tab");
}

// The checks every page gets; then a screenshot.
async function inspect(page, response, name) {
  const csp = response ? response.headers()["content-security-policy"] || "" : "";
  check(`${name}: CSP`, csp.includes("default-src 'self'") && csp.includes("script-src 'none'"), `CSP header: ${csp}`);
  const html = await page.content();
  check(`${name}: no script`, !/<script/i.test(html), "the page has a <script>");
  for (const s of secrets) {
    check(`${name}: no plaintext`, !html.includes(s), `the page shows a sealed value (${s.length} chars)`);
  }
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
      .filter((i) => !(i.labels && i.labels.length) && !i.getAttribute("aria-label"))
      .map((i) => i.id || i.name),
  );
  check(`${name}: labels`, unlabelled.length === 0, `inputs without a label: ${unlabelled.join(",")}`);
  fs.mkdirSync(a.shots, { recursive: true });
  await page.screenshot({ path: path.join(a.shots, `${name}.png`), fullPage: true });
  step(`${name} page`, { csp: true });
}

const browser = await chromium.launch({
  executablePath: a.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const blocked = [];
  page.on("console", (m) => {
    if (m.type() === "error") blocked.push(m.text());
  });

  // an unknown visitor is sent to the login page
  let r = await page.goto(`${a.console}/routes`);
  check("redirect to login", new URL(page.url()).pathname === "/login", `landed on ${page.url()}`);
  await inspect(page, r, "login");

  // a wrong token is refused
  await page.getByLabel("Console token").fill("not-the-token");
  const [wrong] = await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
  check("wrong token refused", wrong && wrong.status() === 401, `status ${wrong && wrong.status()}`);
  check("wrong token says so", (await page.getByRole("alert").textContent()).includes("not the console's token"), "no message");
  step("wrong token refused");

  // log in with the keyboard: the token field has focus, Enter submits
  await page.getByLabel("Console token").focus();
  await page.keyboard.type(a.token);
  const [routesResp] = await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
  check("log in", new URL(page.url()).pathname === "/routes", `landed on ${page.url()}`);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "sealgate_console");
  check("session cookie", session && session.httpOnly && session.sameSite === "Strict", JSON.stringify(session));
  step("logged in", { cookie: "HttpOnly SameSite=Strict" });

  // the routes as loaded
  for (const name of traffic.routes) {
    check("routes listed", await page.getByRole("heading", { name, exact: true }).isVisible(), `no heading ${name}`);
  }
  check("route key shown", (await page.content()).includes(traffic.key), "the key is not shown");
  await inspect(page, routesResp, "routes");

  // findings: nothing yet
  r = await page.goto(`${a.console}/findings`);
  check("no findings yet", (await page.content()).includes("Nothing observed yet"), "findings before traffic");
  step("findings empty before traffic");

  // shadow traffic through the proxy
  for (const t of traffic.requests) {
    const res = await fetch(`${a.proxy}${t.path}`, {
      method: t.method,
      headers: { "content-type": "application/json" },
      body: JSON.stringify(t.body),
    });
    check("shadow traffic", res.ok, `${t.method} ${t.path}: ${res.status}`);
    await res.arrayBuffer();
  }
  step("shadow traffic sent", { requests: traffic.requests.length });

  // the findings appear (the capture is read as it grows)
  let appeared = false;
  for (let i = 0; i < 50 && !appeared; i++) {
    r = await page.goto(`${a.console}/findings`);
    appeared = (await page.getByRole("checkbox").count()) >= 2;
    if (!appeared) await new Promise((res) => setTimeout(res, 200));
  }
  check("findings appear", appeared, "no findings after the traffic");
  for (const f of traffic.expect_fields) {
    check("finding shown", (await page.getByLabel(`${f} in the request body`).count()) > 0, `no finding ${f}`);
  }
  await inspect(page, r, "findings");

  // select two with the keyboard: Tab to each, Space ticks it
  const picked = [];
  for (const want of traffic.select) {
    const f = await tabTo(page, `finding ${want}`, (f) => f.type === "checkbox" && f.label === want);
    await page.keyboard.press("Space");
    const now = await focused(page);
    check("space ticks", now.checked, `${want} not ticked by Space`);
    picked.push(f.label);
  }
  step("two findings selected", { picked });

  // Tab to the key field, type the key, Enter submits: the draft downloads
  const keyField = await tabTo(page, "key field", (f) => f.id === "key");
  check("key field labelled", keyField.label.startsWith("Key"), `label ${keyField.label}`);
  await page.keyboard.press("ControlOrMeta+A");
  await page.keyboard.type(traffic.draft_key);
  const [download] = await Promise.all([page.waitForEvent("download"), page.keyboard.press("Enter")]);
  check("draft name", download.suggestedFilename() === "sealgate-policy-draft.toml", download.suggestedFilename());
  await download.saveAs(a.download);
  step("draft downloaded", { file: a.download, bytes: fs.statSync(a.download).size });

  // keys and audit
  r = await page.goto(`${a.console}/keys`);
  check("keys listed", await page.getByRole("cell", { name: traffic.key, exact: true }).first().isVisible(), "the policy's key is not listed");
  await inspect(page, r, "keys");
  r = await page.goto(`${a.console}/audit`);
  check("audit verified", (await page.content()).includes("Verified"), "the chain is not shown verified");
  await inspect(page, r, "audit");

  // back to the routes: the counts have moved, and the plots show it
  let plotted = false;
  for (let i = 0; i < 50 && !plotted; i++) {
    r = await page.goto(`${a.console}/routes`);
    plotted = (await page.getByRole("img", { name: /^Fields sealed: [1-9]\d* in the last/ }).count()) > 0;
    if (!plotted) await new Promise((res) => setTimeout(res, 200));
  }
  check("plots", plotted, "no plot of the fields sealed");
  await inspect(page, r, "routes-after");

  // log out with the keyboard: Tab to the button, Space presses it
  await tabTo(page, "log out", (f) => f.tag === "button" && f.text === "Log out");
  await Promise.all([page.waitForNavigation(), page.keyboard.press("Space")]);
  check("logged out", new URL(page.url()).pathname === "/login", `landed on ${page.url()}`);
  r = await page.goto(`${a.console}/keys`);
  check("logged out for good", new URL(page.url()).pathname === "/login", `keys page after log-out: ${page.url()}`);
  step("logged out");

  // the one error expected: the 401 of the wrong token
  const unexpected = blocked.filter((m) => !m.includes("status of 401"));
  check("no browser errors", unexpected.length === 0, `console errors: ${unexpected.join(" | ")}`);
  step("done");
} catch (e) {
  fail("browser", e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
