// Features: mode, percent, routes, guards, and the live request split per backend, computed from
// the proxy's Prometheus counters (banyan_requests_total) between two polls.
import { get, text } from './api'
import { h, mount, pct, table, type Child } from './dom'

interface FeatureStatus {
  mode: string
  primary: string
  percent: number
  routes: string[]
  writes: string
  guard: null | {
    rates: Record<string, number | null>
    tripped: null | { rule: string; observed?: number; limit?: number }
  }
}
interface Status {
  features: Record<string, FeatureStatus>
  rollbacks: { at: number; feature: string; rule: string; message: string }[]
}
interface Flags {
  features: Record<string, { guards: Record<string, number | null> }>
}

type Counts = Map<string, number> // "feature|backend" -> requests

/** Requests answered per feature and backend, summed over status codes. */
export function requestCounts(metrics: string): Counts {
  const counts: Counts = new Map()
  const line = /^banyan_requests_total\{([^}]*)\}\s+([0-9.eE+-]+)/
  for (const row of metrics.split('\n')) {
    const match = line.exec(row)
    if (!match) continue
    const labels = Object.fromEntries(
      [...match[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
    )
    const key = `${labels.feature}|${labels.backend}`
    counts.set(key, (counts.get(key) ?? 0) + Number(match[2]))
  }
  return counts
}

let previous: { at: number; counts: Counts } | null = null

function split(name: string, now: Counts, seconds: number): HTMLElement {
  const share = (backend: string): number => {
    const count = now.get(`${name}|${backend}`) ?? 0
    const before = previous?.counts.get(`${name}|${backend}`) ?? 0
    return Math.max(0, count - before)
  }
  const legacy = share('legacy')
  const fresh = share('new')
  const total = legacy + fresh
  const bar = h('span', { class: 'bar', 'aria-hidden': 'true' })
  const part = h('span', { class: 'bar-new' })
  part.style.width = total ? `${(fresh / total) * 100}%` : '0%'
  bar.append(part)
  const rate = (n: number): string => (seconds > 0 ? (n / seconds).toFixed(1) : '0.0')
  return h(
    'span',
    {
      class: 'split',
      'data-testid': `split-${name}`,
      'data-legacy': legacy,
      'data-new': fresh,
    },
    bar,
    ` legacy ${rate(legacy)}/s · new ${rate(fresh)}/s`,
    h('small', {}, ` (total legacy ${now.get(`${name}|legacy`) ?? 0}, new ${now.get(`${name}|new`) ?? 0})`),
  )
}

function guards(config: Record<string, number | null> | undefined, state: FeatureStatus['guard']): Child {
  const limits = Object.entries(config ?? {}).filter(([k, v]) => v !== null && k !== 'window')
  if (!limits.length) return h('span', { class: 'muted' }, 'none')
  const items = limits.map(([rule, limit]) => {
    const observed = state?.rates[rule.replace(/^max_/, '')]
    return h('li', {}, `${rule} ${limit}`, observed === undefined || observed === null ? '' : ` (now ${observed.toFixed(3)})`)
  })
  return h(
    'div',
    {},
    h('ul', { class: 'plain' }, ...items),
    state?.tripped ? h('strong', { class: 'bad' }, `tripped: ${state.tripped.rule}`) : null,
  )
}

export async function renderFeatures(root: HTMLElement): Promise<void> {
  const [status, flags, metrics] = await Promise.all([
    get<Status>('/_proxy/status'),
    get<Flags>('/_proxy/flags'),
    text('/_proxy/metrics'),
  ])
  const now = requestCounts(metrics)
  const at = Date.now() / 1000
  const seconds = previous ? at - previous.at : 0
  const rows = Object.entries(status.features).map(([name, f]) => [
    h('strong', {}, name),
    h('span', { class: `mode mode-${f.mode}`, 'data-testid': `mode-${name}` }, f.mode === 'shadow' ? `shadow (primary ${f.primary})` : f.mode),
    f.mode === 'canary' ? pct(f.percent / 100) : '—',
    h('code', {}, f.routes.join(' ')),
    guards(flags.features[name]?.guards, f.guard),
    split(name, now, seconds),
  ])
  previous = { at, counts: now }
  const rollbacks = status.rollbacks.slice(-10).reverse()
  mount(
    root,
    h('h1', {}, 'Features'),
    table(['Feature', 'Mode', 'Percent', 'Routes', 'Guards', 'Live split (since last refresh)'], rows, 'Features'),
    h('h2', {}, 'Guard rollbacks'),
    rollbacks.length
      ? table(
          ['When', 'Feature', 'Rule', 'Why'],
          rollbacks.map((r) => [new Date(r.at * 1000).toISOString(), r.feature, r.rule, r.message]),
          'Guard rollbacks',
        )
      : h('p', { class: 'muted' }, 'No guard has rolled a feature back since this proxy started.'),
  )
}
