// Drives Debian's chromium (headless) for tests/page.rs: one JSON command per line on stdin,
// one JSON answer per line on stdout ({"ok": true, "value": ...} or {"ok": false, "error": ...}).
// The test decides what to look at and asserts in Rust; this only relays to puppeteer-core.
//
// Commands:
//   {"cmd": "open", "url": U}                  navigate; value: {firstContentfulPaint, domContentLoaded} in ms
//   {"cmd": "eval", "js": BODY}                run an async function body in the page; value: its result
//   {"cmd": "wait", "js": EXPR, "timeout": MS} wait until EXPR is truthy (checked on every DOM change)
//   {"cmd": "click", "selector": S}
//   {"cmd": "screenshot", "path": P}           the full page, as PNG
//   {"cmd": "dialogs"}                         alert/confirm/prompt dialogs seen so far (none should be)
//   {"cmd": "close"}
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const executablePath = process.env.MESHLOOP_CHROMIUM || "/usr/bin/chromium";
const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  // The flags keep chromium off the network (this machine has none but loopback) and quiet.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
  ],
  defaultViewport: { width: 1400, height: 900 },
});
const page = await browser.newPage();
const dialogs = [];
page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));

async function run(c) {
  switch (c.cmd) {
    case "open": {
      await page.goto(c.url, { waitUntil: "load" });
      return await page.evaluate(() => {
        const fcp = performance.getEntriesByName("first-contentful-paint")[0];
        const nav = performance.getEntriesByType("navigation")[0];
        return {
          firstContentfulPaint: fcp ? fcp.startTime : null,
          domContentLoaded: nav ? nav.domContentLoadedEventEnd : null,
          transferSize: nav ? nav.transferSize : null,
        };
      });
    }
    case "eval":
      return await page.evaluate(`(async () => { ${c.js} })()`);
    case "wait": {
      const t0 = Date.now();
      await page.waitForFunction(c.js, { polling: "mutation", timeout: c.timeout ?? 30000 });
      return { elapsedMs: Date.now() - t0 };
    }
    case "click":
      await page.click(c.selector);
      return null;
    case "screenshot":
      await page.screenshot({ path: c.path, fullPage: true });
      return null;
    case "dialogs":
      return { dialogs, pageErrors: consoleErrors };
    case "close":
      await browser.close();
      process.exit(0);
    default:
      throw new Error("unknown command " + c.cmd);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let answer;
  try {
    answer = { ok: true, value: (await run(JSON.parse(line))) ?? null };
  } catch (e) {
    answer = { ok: false, error: String(e && e.stack || e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
