// Drives Debian's Chromium through playwright-core for the Python browser tests: one JSON command
// per stdin line, one JSON reply per stdout line ({"id", "ok", "result" | "error"}).
// Usage: node driver.mjs <chromium executable>. Each named page lives in its own browser context
// (its own cookies and localStorage: two pages are two users). Never downloads a browser.
import readline from 'node:readline'
import { chromium } from 'playwright-core'

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
const TIMEOUT = Number(process.env.BANYAN_BROWSER_TIMEOUT_MS || 30000)

// launch() gives the browser a new, empty user-data-dir of its own (removed when it closes)
const browser = await chromium.launch({
  executablePath: process.argv[2],
  headless: true,
  args: FLAGS,
  timeout: TIMEOUT,
})
const pages = new Map() // name -> {page, context, problems, handshakes}

async function newPage({ page: name, width = 1280, height = 800 }) {
  const context = await browser.newContext({ viewport: { width, height } })
  context.setDefaultTimeout(TIMEOUT)
  const page = await context.newPage()
  const entry = { page, context, problems: [], handshakes: [] }
  page.on('pageerror', (err) => entry.problems.push(`pageerror: ${err.message}`))
  page.on('console', (msg) => {
    if (msg.type() === 'error') entry.problems.push(`console: ${msg.text()} @ ${msg.location().url}`)
  })
  // The handshake's response headers, which the page itself cannot read: tests check the
  // footer's claim about a socket's backend against the X-Banyan-Backend the proxy really sent.
  const cdp = await context.newCDPSession(page)
  const urls = new Map()
  cdp.on('Network.webSocketCreated', (e) => urls.set(e.requestId, e.url))
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    const headers = Object.fromEntries(
      Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]),
    )
    const url = new URL(urls.get(e.requestId) ?? 'ws://unknown/')
    entry.handshakes.push({
      path: url.pathname,
      status: e.response.status,
      backend: headers['x-banyan-backend'] ?? null,
      feature: headers['x-banyan-feature'] ?? null,
    })
  })
  await cdp.send('Network.enable')
  pages.set(name, entry)
  return null
}

function get(name) {
  const entry = pages.get(name)
  if (!entry) throw new Error(`no page named ${name}`)
  return entry
}

async function draw({ page: name, selector, points }) {
  const { page } = get(name)
  const box = await page.locator(selector).boundingBox()
  if (!box) throw new Error(`${selector} is not visible`)
  const at = ([fx, fy]) => [box.x + fx * box.width, box.y + fy * box.height]
  const [first, ...rest] = points.map(at)
  await page.mouse.move(...first)
  await page.mouse.down()
  for (const point of rest) await page.mouse.move(...point, { steps: 4 })
  await page.mouse.up()
  return null
}

// "(arg) => ..." source text as a function Playwright can run in the page with its argument
// (a plain string would be evaluated as an expression, giving back the function itself).
const asFunction = (source) => new Function('arg', `return (${source})(arg)`)

const commands = {
  new_page: newPage,
  goto: async ({ page, url }) => {
    await get(page).page.goto(url)
    return get(page).page.url()
  },
  click: async ({ page, selector }) => get(page).page.locator(selector).click(),
  fill: async ({ page, selector, value }) => get(page).page.locator(selector).fill(value),
  check: async ({ page, selector }) => get(page).page.locator(selector).check(),
  press: async ({ page, selector, key }) => get(page).page.locator(selector).press(key),
  set_file: async ({ page, selector, name, mime, base64 }) =>
    get(page).page.locator(selector).setInputFiles({
      name,
      mimeType: mime,
      buffer: Buffer.from(base64, 'base64'),
    }),
  text: async ({ page, selector }) => get(page).page.locator(selector).innerText(),
  texts: async ({ page, selector }) => get(page).page.locator(selector).allInnerTexts(),
  attr: async ({ page, selector, name }) => get(page).page.locator(selector).getAttribute(name),
  count: async ({ page, selector }) => get(page).page.locator(selector).count(),
  wait: async ({ page, selector, state = 'visible' }) =>
    get(page).page.locator(selector).first().waitFor({ state }),
  // Wait until the JS function `expression`, called with `arg` in the page, returns a truthy value.
  wait_for: async ({ page, expression, arg = null }) => {
    const handle = await get(page).page.waitForFunction(asFunction(expression), arg, {
      timeout: TIMEOUT,
    })
    return handle.jsonValue()
  },
  eval: async ({ page, expression, arg = null }) =>
    get(page).page.evaluate(asFunction(expression), arg),
  draw,
  url: async ({ page }) => get(page).page.url(),
  screenshot: async ({ page, path, full_page = true }) => {
    await get(page).page.screenshot({ path, fullPage: full_page })
    return path
  },
  problems: async ({ page }) => get(page).problems,
  handshakes: async ({ page }) => get(page).handshakes,
  close_page: async ({ page }) => {
    await get(page).context.close()
    pages.delete(page)
    return null
  },
}

const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const rl = readline.createInterface({ input: process.stdin })
let shuttingDown = false
async function shutdown() {
  if (shuttingDown) return
  shuttingDown = true
  await browser.close().catch(() => undefined)
  process.exit(0)
}
rl.on('line', async (line) => {
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (err) {
    reply({ id: null, ok: false, error: `bad command line: ${err}` })
    return
  }
  if (cmd.op === 'quit') {
    reply({ id: cmd.id, ok: true, result: null })
    await shutdown()
    return
  }
  try {
    const op = commands[cmd.op]
    if (!op) throw new Error(`unknown op ${cmd.op}`)
    const result = await op(cmd)
    reply({ id: cmd.id, ok: true, result: result ?? null })
  } catch (err) {
    reply({ id: cmd.id, ok: false, error: String(err && err.message ? err.message : err) })
  }
})
rl.on('close', shutdown)
process.on('SIGTERM', shutdown)
reply({ id: 0, ok: true, result: { version: browser.version() } })
