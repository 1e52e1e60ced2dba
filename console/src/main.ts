// The Banyan console: one page, panels chosen by the URL's hash (#/features, #/rollouts,
// #/parity?feature=..., #/audit, #/mirror), each reading the proxy's admin JSON API. Read-only
// until an admin token is pasted (kept in sessionStorage); actions go through the same admin API
// as the CLI. Live panels (features, rollouts, mirror) refresh every two seconds.
import { ApiError, get, problem, setToken, token } from './api'
import { renderAudit } from './audit'
import { h, mount } from './dom'
import { renderFeatures } from './features'
import { renderMirror } from './mirror'
import { filtersFrom, renderParity } from './parity'
import { renderRollouts } from './rollouts'

const PANELS = [
  ['features', 'Features'],
  ['rollouts', 'Rollouts'],
  ['parity', 'Parity'],
  ['audit', 'Audit'],
  ['mirror', 'Mirror'],
] as const
const LIVE = new Set(['features', 'rollouts', 'mirror'])
const REFRESH_MS = 2000

const main = document.getElementById('main') as HTMLElement
const nav = document.getElementById('nav') as HTMLElement
const tokenForm = document.getElementById('token') as HTMLFormElement
const notice = document.getElementById('notice') as HTMLElement

let timer: number | undefined
let generation = 0

function route(): { panel: string; query: URLSearchParams } {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?')
  const panel = PANELS.some(([name]) => name === path) ? path : 'features'
  return { panel, query: new URLSearchParams(query) }
}

function say(text: string | null): void {
  notice.hidden = !text
  notice.textContent = text ?? ''
}

/** Whether the user is in the middle of something a refresh would wipe out (typing, choosing, a
 * button asking for confirmation). */
function busy(): boolean {
  const focused = document.activeElement
  if (!(focused instanceof HTMLElement) || !main.contains(focused)) return false
  return focused.matches('input, select, textarea, button.danger')
}

async function show(force = false): Promise<void> {
  const mine = ++generation
  window.clearTimeout(timer)
  const { panel, query } = route()
  mount(nav, ...PANELS.map(([name, label]) => h('a', { href: `#/${name}`, 'aria-current': name === panel ? 'page' : null }, label)))
  document.title = `${PANELS.find(([name]) => name === panel)?.[1]} · Banyan console`
  const target = h('div', { 'data-panel': panel })
  const reload = (): void => void show(true)
  try {
    if (panel === 'features') await renderFeatures(target)
    else if (panel === 'rollouts') await renderRollouts(target, reload)
    else if (panel === 'parity') await renderParity(target, filtersFrom(query), reload)
    else if (panel === 'audit') await renderAudit(target, query.get('feature') ?? '')
    else await renderMirror(target, reload)
    if (mine !== generation) return
    say(null)
    const same = main.firstElementChild?.getAttribute('data-panel') === panel
    if (force || !same || !busy()) mount(main, target)
  } catch (err) {
    if (mine !== generation) return
    const denied = err instanceof ApiError && (err.status === 401 || err.status === 403)
    say(denied ? `The proxy refused: ${problem(err)}. Paste the admin token above.` : `Could not load: ${problem(err)}`)
    if (main.firstElementChild?.getAttribute('data-panel') !== panel) mount(main, target)
  }
  if (LIVE.has(panel) && mine === generation) timer = window.setTimeout(() => void show(), REFRESH_MS)
}

function renderToken(message = ''): void {
  const given = token()
  if (given) {
    mount(
      tokenForm,
      h('span', { class: 'mode-admin', 'data-testid': 'access' }, 'Admin: actions enabled'),
      h('button', { type: 'button', onclick: () => setToken(null) }, 'Forget token'),
    )
    return
  }
  const input = h('input', { name: 'admin-token', type: 'password', autocomplete: 'off', placeholder: 'paste to act' })
  mount(
    tokenForm,
    h('span', { class: 'mode-read', 'data-testid': 'access' }, 'Read-only'),
    h('label', {}, 'Admin token ', input),
    h('button', { type: 'submit' }, 'Use token'),
    message ? h('span', { class: 'bad' }, message) : null,
  )
}

tokenForm.addEventListener('submit', async (event) => {
  event.preventDefault()
  const input = tokenForm.querySelector('input')
  const value = input?.value.trim()
  if (!value) return
  setToken(value)
  try {
    await get('/_proxy/status')
  } catch (err) {
    setToken(null)
    renderToken(problem(err))
  }
})
window.addEventListener('banyan:token', () => {
  renderToken()
  void show(true)
})
window.addEventListener('hashchange', () => void show(true))
renderToken()
void show()
