// The browser test of `mmsearch serve` (issue 13): Debian's chromium, headless, driven by
// playwright-core. tests/cli/test_browser.py starts the server on the demo dishes and runs this:
//   node serve_page.test.mjs URL DISHES_DIR OUT_DIR
// It searches, clicks a result for its neighbours, uploads a photo, moves with the keyboard,
// draws the matrix, narrows the window to a phone's width, and checks that no request left the
// machine. It asserts on the page's structure (cards, categories, paths), never on pixels, and
// leaves screenshots in OUT_DIR. Exit status 0 = passed.
import assert from "node:assert/strict";
import path from "node:path";
import { chromium } from "playwright-core";

const [url, dishes, outDir] = process.argv.slice(2);
if (!url || !dishes || !outDir) {
  console.error("usage: node serve_page.test.mjs URL DISHES_DIR OUT_DIR");
  process.exit(2);
}
const origin = new URL(url).origin;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const offSite = [];
const consoleErrors = [];
let step = "start";
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  // Anything not from the server is recorded and stopped: the page must need nothing else.
  await context.route("**/*", (route) => {
    const target = route.request().url();
    if (target.startsWith(origin + "/") || target === origin) return route.continue();
    offSite.push(target);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  const cards = page.locator("#grid .card");
  const categories = async (n) => (await cards.locator(".category").allTextContents()).slice(0, n);
  const paths = async () => cards.evaluateAll((all) => all.map((c) => c.dataset.path));
  const waitForResults = async (before) => {
    await page.waitForFunction((old) => {
      const status = document.getElementById("status").textContent;
      const first = document.querySelector("#grid .card");
      return !status.startsWith("Searching") && first && first.dataset.path + status !== old;
    }, before, { timeout: 30000 });
  };
  const marker = async () => page.evaluate(() => {
    const first = document.querySelector("#grid .card");
    return (first ? first.dataset.path : "") + document.getElementById("status").textContent;
  });

  step = "load";
  await page.goto(url);
  await page.waitForFunction(() => /photos indexed/.test(document.getElementById("status").textContent),
                             null, { timeout: 30000 });
  assert.equal(await page.title(), "mmsearch");
  assert.ok(await page.locator("#folder option").count() >= 2, "the folder filter lists the dishes");
  assert.ok(await page.locator("#category option", { hasText: "pizza" }).count() === 1);

  step = "type a query";
  await page.fill("#q", "a pizza with basil");
  await page.press("#q", "Enter");
  await waitForResults("");
  assert.ok(await cards.count() >= 12, "a grid of results");
  assert.deepEqual(await categories(5), Array(5).fill("pizza"), "the pizzas come first");
  const firstCaption = await cards.first().locator(".caption").textContent();
  assert.match(firstCaption, /basil/);
  assert.match(await cards.first().locator(".score").textContent(), /^0\.\d{3}/);
  assert.match(await page.locator("#status").textContent(), /searched for “a pizza with basil”/);
  // Every thumbnail of the first row is loaded from the server.
  await page.waitForFunction(() => [...document.querySelectorAll("#grid .card img")].slice(0, 6)
    .every((img) => img.complete && img.naturalWidth > 0), null, { timeout: 30000 });
  await page.screenshot({ path: path.join(outDir, "serve-desktop.png") });

  step = "click for more like this";
  const clicked = (await paths())[0];
  let before = await marker();
  await cards.first().locator(".thumb").click();
  await waitForResults(before);
  assert.ok(await page.locator("#similar-chip").isVisible(), "the 'like' chip shows");
  assert.equal(await page.locator("#similar-name").textContent(), path.basename(clicked));
  const neighbours = await paths();
  assert.ok(!neighbours.includes(clicked), "the clicked photo is not its own neighbour");
  assert.deepEqual(await categories(3), Array(3).fill("pizza"), "its neighbours are pizzas");

  step = "Escape goes back";
  before = await marker();
  await page.locator("body").press("Escape");
  await waitForResults(before);
  assert.ok(!(await page.locator("#similar-chip").isVisible()));

  step = "upload an image";
  const dessert = path.join(dishes, "dessert", "dish-00004.jpg");
  before = await marker();
  await page.fill("#q", "");
  await page.setInputFiles("#file", dessert);
  await waitForResults(before);
  assert.ok(await page.locator("#image-chip").isVisible(), "the image chip shows");
  assert.equal((await paths())[0], dessert, "the uploaded photo finds itself first");
  assert.equal((await categories(1))[0], "dessert");

  step = "combine the image with text";
  before = await marker();
  await page.fill("#q", "a pizza with basil");
  await page.locator("#weight").fill("90");  // mostly the text (the slider is the image's share)
  await page.press("#q", "Enter");
  await waitForResults(before);
  assert.match(await page.locator("#status").textContent(), /“a pizza with basil” \+ the image/);
  before = await marker();
  await page.click("#image-clear");
  await waitForResults(before);
  assert.ok(!(await page.locator("#image-chip").isVisible()));

  step = "keyboard";
  await page.fill("#q", "spaghetti with tomato sauce");
  before = await marker();
  await page.press("#q", "Enter");
  await waitForResults(before);
  await page.focus("#q");
  await page.keyboard.press("ArrowDown");
  assert.equal(await page.evaluate(() => document.activeElement.dataset.path), (await paths())[0]);
  await page.keyboard.press("ArrowRight");
  const second = (await paths())[1];
  assert.equal(await page.evaluate(() => document.activeElement.dataset.path), second);
  before = await marker();
  await page.keyboard.press("Enter");
  await waitForResults(before);
  assert.equal(await page.locator("#similar-name").textContent(), path.basename(second));
  await page.keyboard.press("/");
  assert.equal(await page.evaluate(() => document.activeElement.id), "q");

  step = "filters";
  await page.locator("body").press("Escape");
  await page.selectOption("#category", "dessert");
  await page.fill("#q", "a pizza with basil");
  before = await marker();
  await page.press("#q", "Enter");
  await waitForResults(before);
  assert.deepEqual([...new Set(await categories(100))], ["dessert"], "only desserts");
  await page.selectOption("#category", "");

  step = "matrix";
  await page.click("#tab-matrix");
  await page.selectOption("#matrix-folder", path.join(dishes, "dessert"));
  await page.click("#matrix-go");
  await page.waitForFunction(() => /image-image · 14 × 14/.test(document.getElementById("status").textContent),
                             null, { timeout: 30000 });
  assert.ok(await page.evaluate(() => document.getElementById("matrix-canvas").width) >= 14 * 3);
  await page.screenshot({ path: path.join(outDir, "serve-matrix.png") });
  await page.click("#tab-results");

  step = "phone width";
  await page.setViewportSize({ width: 390, height: 844 });
  await page.fill("#q", "a slice of cake");
  before = await marker();
  await page.press("#q", "Enter");
  await waitForResults(before);
  const layout = await page.evaluate(() => {
    const all = [...document.querySelectorAll("#grid .card")];
    return {
      overflow: document.documentElement.scrollWidth - window.innerWidth,
      columns: all.filter((c) => c.offsetTop === all[0].offsetTop).length,
      searchWidth: document.getElementById("q").getBoundingClientRect().width,
    };
  });
  assert.ok(layout.overflow <= 1, `no sideways scrolling at phone width (${layout.overflow}px)`);
  assert.equal(layout.columns, 2, "two columns on a phone");
  assert.ok(layout.searchWidth > 200, "the search box keeps its room");
  await page.screenshot({ path: path.join(outDir, "serve-phone.png") });

  step = "no request left the machine";
  assert.deepEqual(offSite, [], "requests to elsewhere: " + offSite.join(", "));
  assert.deepEqual(consoleErrors.filter((e) => !/Failed to load resource.*(404|400)/.test(e)), [],
                   "console errors");
  console.log("browser test passed");
} catch (error) {
  console.error(`browser test failed at step '${step}':`, error);
  process.exitCode = 1;
} finally {
  await browser.close();
}
