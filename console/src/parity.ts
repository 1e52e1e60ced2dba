// Parity for QA: per feature and endpoint, the match rate over time (a small chart), filters by
// feature, endpoint, differing path and time, one mismatched request at a time with both answers
// side by side and the differing paths highlighted, replay with its result, learned noise.
import { ApiError, canWrite, del, get, listOf, post, problem } from './api'
import { h, json, mount, pct, svg, table, when, type Child } from './dom'
import { jsonView } from './jsonview'

interface Endpoint {
  endpoint: string
  compared?: number
  matched?: number
  mismatched?: number
  errors?: number
  mismatch_rate: number
}
interface FeatureReport {
  feature: string
  compared: number
  matched: number
  mismatched: number
  errors: number
  match_rate: number | null
  endpoints: Endpoint[]
  noise: Noise[]
}
interface Noise {
  endpoint?: string
  feature?: string
  path: string
  count: number
}
interface Hour {
  feature: string
  endpoint: string
  hour: number
  matched: number
  mismatched: number
}
interface Mismatch {
  id: number
  feature: string
  endpoint: string
  at: number
  method: string
  url: string
  paths: { path: string; kind: string }[]
}
interface Answer {
  status: number
  headers: Record<string, string>
  body: string
  latency_ms: number
  error: string | null
}
interface Difference {
  path: string
  kind: string
  primary: unknown
  candidate: unknown
}
interface Example {
  id: number
  feature: string
  endpoint: string
  method: string
  url: string
  at: number
  request: { headers: Record<string, string>; body: string }
  primary_backend: string
  candidate_backend: string
  primary: Answer
  candidate: Answer
  differences: Difference[]
}
interface Replayed {
  verdict?: string
  still_differs: boolean
  differences: Difference[]
  status: Record<string, number>
  errors: string[]
}

export interface Filters {
  feature: string
  endpoint: string
  path: string
  since: string
  until: string
  at: number
}

export function filtersFrom(query: URLSearchParams): Filters {
  return {
    feature: query.get('feature') ?? '',
    endpoint: query.get('endpoint') ?? '',
    path: query.get('path') ?? '',
    since: query.get('since') ?? '',
    until: query.get('until') ?? '',
    at: Number(query.get('at') ?? '0') || 0,
  }
}

function href(filters: Filters): string {
  const query = new URLSearchParams()
  for (const [key, value] of Object.entries(filters)) if (value !== '' && value !== 0) query.set(key, String(value))
  return `#/parity?${query}`
}

function querystring(filters: Filters, ...keys: (keyof Filters)[]): string {
  const query = new URLSearchParams()
  for (const key of keys) if (filters[key]) query.set(key, String(filters[key]))
  return query.toString()
}

// -- the chart -------------------------------------------------------------------------------------

function chart(hours: Hour[]): Element {
  const byHour = new Map<number, { matched: number; mismatched: number }>()
  for (const row of hours) {
    const slot = byHour.get(row.hour) ?? { matched: 0, mismatched: 0 }
    slot.matched += row.matched
    slot.mismatched += row.mismatched
    byHour.set(row.hour, slot)
  }
  const points = [...byHour.entries()]
    .sort((a, b) => a[0] - b[0])
    .filter(([, s]) => s.matched + s.mismatched > 0)
    .map(([hour, s]) => ({ hour, rate: s.matched / (s.matched + s.mismatched), n: s.matched + s.mismatched }))
  if (!points.length) return h('p', { class: 'muted', 'data-testid': 'chart-empty' }, 'No answered comparisons in this window.')
  const width = 560
  const height = 140
  const left = 44
  const first = points[0].hour
  const span = Math.max(points[points.length - 1].hour - first, 3600)
  const x = (hour: number): number => left + ((hour - first) / span) * (width - left - 12) + (points.length === 1 ? (width - left - 12) / 2 : 0)
  const y = (rate: number): number => 10 + (1 - rate) * (height - 30)
  const parts: SVGElement[] = [
    svg('line', { x1: left, y1: y(1), x2: width - 8, y2: y(1), class: 'grid' }),
    svg('line', { x1: left, y1: y(0), x2: width - 8, y2: y(0), class: 'grid' }),
    svg('text', { x: 4, y: y(1) + 4, class: 'tick' }),
    svg('text', { x: 4, y: y(0) + 4, class: 'tick' }),
  ]
  parts[2].textContent = '100%'
  parts[3].textContent = '0%'
  if (points.length > 1)
    parts.push(svg('polyline', { class: 'rate', points: points.map((p) => `${x(p.hour)},${y(p.rate)}`).join(' ') }))
  for (const p of points) {
    const dot = svg('circle', { cx: x(p.hour), cy: y(p.rate), r: 4, class: p.rate < 1 ? 'dot bad' : 'dot' })
    const title = svg('title')
    title.textContent = `${when(p.hour)}: ${pct(p.rate)} of ${p.n}`
    dot.appendChild(title)
    parts.push(dot)
  }
  const label = svg('text', { x: left, y: height - 4, class: 'tick' })
  label.textContent = `${when(first)} … hourly`
  parts.push(label)
  return h(
    'figure',
    { class: 'chart' },
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Match rate over time' }, ...parts),
    h('figcaption', {}, `Match rate per hour (${points.length} hour${points.length > 1 ? 's' : ''}, latest ${pct(points[points.length - 1].rate)})`),
  )
}

// -- one mismatch ----------------------------------------------------------------------------------

function headerMarks(differences: Difference[]): Set<string> {
  return new Set(
    differences.filter((d) => d.path.startsWith('header:')).map((d) => d.path.slice(7).replace(/\[\d+\]$/, '')),
  )
}

const LAST_SEGMENT = /(\.[A-Za-z_][\w-]*|\['(?:[^'\\]|\\.)*'\]|\[\d+\])$/

/** The paths to highlight on one side: each difference's own, and for a value only the other
 * side has, the container on this side where it is missing. */
function marksFor(role: 'primary' | 'candidate', differences: Difference[]): Set<string> {
  const marked = new Set<string>()
  for (const d of differences) {
    marked.add(d.path)
    const missingHere = role === 'primary' ? d.kind === 'added' : d.kind === 'removed'
    if (missingHere && d.path.startsWith('$')) marked.add(d.path.replace(LAST_SEGMENT, '') || '$')
  }
  return marked
}

function side(role: 'primary' | 'candidate', backend: string, answer: Answer, differences: Difference[]): HTMLElement {
  const marked = marksFor(role, differences)
  const headers = headerMarks(differences)
  const statusDiffers = marked.has('status')
  return h(
    'section',
    { class: 'answer', 'data-testid': `answer-${role}` },
    h('h4', {}, `${backend} (${role})`),
    h(
      'p',
      {},
      'Status ',
      statusDiffers ? h('mark', { class: 'diff', 'data-path': 'status' }, String(answer.status)) : String(answer.status),
      ` · ${answer.latency_ms.toFixed(1)} ms`,
      answer.error ? h('strong', { class: 'bad' }, ` · ${answer.error}`) : '',
    ),
    h(
      'details',
      { open: headers.size > 0 },
      h('summary', {}, 'Headers'),
      h(
        'ul',
        { class: 'plain headers' },
        ...Object.entries(answer.headers).map(([name, value]) => {
          const line = `${name}: ${value}`
          return h('li', {}, headers.has(name.toLowerCase()) ? h('mark', { class: 'diff', 'data-path': `header:${name.toLowerCase()}` }, line) : line)
        }),
      ),
    ),
    jsonView(answer.body, marked, `${role} body`),
  )
}

function differenceList(differences: Difference[]): HTMLElement {
  return table(
    ['Path', 'Kind', 'Primary', 'Candidate'],
    differences.map((d) => [h('code', {}, d.path), d.kind, h('code', {}, json(d.primary)), h('code', {}, json(d.candidate))]),
    'Differences',
  )
}

function replayPanel(example: Example): HTMLElement {
  const result = h('div', { class: 'replay-result', 'data-testid': 'replay-result', 'aria-live': 'polite' })
  const bearer = h('input', { name: 'bearer', type: 'password', autocomplete: 'off', placeholder: 'optional' })
  const button = h('button', { type: 'submit', disabled: !canWrite() }, 'Replay')
  const form = h(
    'form',
    {
      class: 'replay',
      onsubmit: async (event: Event) => {
        event.preventDefault()
        button.disabled = true
        mount(result, 'Replaying…')
        try {
          const done = await post<Replayed>(`/_proxy/parity/examples/${example.id}/replay`, {
            token: bearer.value.trim() || null,
          })
          const statuses = Object.entries(done.status).map(([b, s]) => `${b} ${s}`).join(', ')
          const verdict = done.verdict ?? (done.still_differs ? 'differ' : 'agree')
          const said: Record<string, string> = {
            agree: 'The backends now agree',
            differ: 'Still differs',
            'both refused': 'Both refused it (nothing compared: give a bearer token to replay as a user)',
            'both failed': 'Both failed to answer',
          }
          mount(
            result,
            h(
              'p',
              { class: verdict === 'agree' ? 'good' : 'bad', 'data-verdict': verdict },
              `${said[verdict] ?? verdict} (${statuses})`,
            ),
            done.errors.length ? h('p', { class: 'bad' }, done.errors.join('; ')) : null,
            done.differences.length ? differenceList(done.differences) : null,
          )
        } catch (err) {
          mount(result, h('p', { class: 'bad' }, problem(err)))
        } finally {
          button.disabled = !canWrite()
        }
      },
    },
    h('label', {}, 'Bearer token for the replayed request ', bearer),
    button,
    canWrite() ? null : h('span', { class: 'muted' }, ' (paste the admin token above to replay)'),
  )
  return h('div', {}, h('h3', {}, 'Replay'), form, result)
}

async function detail(target: HTMLElement, id: number): Promise<void> {
  const example = await get<Example>(`/_proxy/parity/examples/${id}`)
  mount(
    target,
    h('p', { class: 'request' }, h('code', { 'data-testid': 'example-request' }, `${example.method} ${example.url}`), ` · ${example.feature} · ${when(example.at)} · #${example.id}`),
    h('h3', {}, `Differences (${example.differences.length})`),
    differenceList(example.differences),
    h(
      'div',
      { class: 'sides' },
      side('primary', example.primary_backend, example.primary, example.differences),
      side('candidate', example.candidate_backend, example.candidate, example.differences),
    ),
    replayPanel(example),
  )
}

// -- learned noise ---------------------------------------------------------------------------------

async function noise(report: FeatureReport[], filters: Filters): Promise<{ items: Noise[]; endpoint: boolean }> {
  try {
    const answer = await get<unknown>(`/_proxy/parity/noise?${querystring(filters, 'feature')}`)
    return { items: listOf<Noise>(answer, 'noise'), endpoint: true }
  } catch {
    return { items: report.flatMap((f) => f.noise.map((n) => ({ ...n, feature: f.feature }))), endpoint: false }
  }
}

function noisePanel(items: Noise[], forgettable: boolean, reload: () => void): HTMLElement {
  const message = h('p', { class: 'muted', 'aria-live': 'polite' })
  const forget = async (item: Noise): Promise<void> => {
    const query = new URLSearchParams({ path: item.path })
    if (item.feature) query.set('feature', item.feature)
    if (item.endpoint) query.set('endpoint', item.endpoint)
    try {
      await del(`/_proxy/parity/noise?${query}`)
      reload()
    } catch (err) {
      mount(message, problem(err))
    }
  }
  return h(
    'section',
    {},
    h('h2', {}, 'Learned noise'),
    items.length
      ? table(
          ['Feature', 'Endpoint', 'Path', 'Seen', ''],
          items.map((n) => [
            n.feature ?? '',
            n.endpoint ?? '',
            h('code', {}, n.path),
            n.count,
            h('button', { type: 'button', disabled: !canWrite() || !forgettable, onclick: () => void forget(n) }, 'Forget'),
          ]),
          'Learned noise',
        )
      : h('p', { class: 'muted' }, 'Nothing learned as noise.'),
    message,
  )
}

// -- the panel -------------------------------------------------------------------------------------

function filterForm(filters: Filters, report: FeatureReport[]): HTMLElement {
  const features = report.map((f) => f.feature)
  const endpoints = report.filter((f) => !filters.feature || f.feature === filters.feature).flatMap((f) => f.endpoints.map((e) => e.endpoint))
  const select = (name: string, value: string, options: string[], all: string): HTMLSelectElement =>
    h('select', { name }, h('option', { value: '' }, all), ...options.map((o) => h('option', { value: o, selected: o === value }, o)))
  const feature = select('feature', filters.feature, features, 'all features')
  const endpoint = select('endpoint', filters.endpoint, [...new Set(endpoints)], 'all endpoints')
  const path = h('input', { name: 'path', value: filters.path, placeholder: '$.items[*].title', list: 'known-paths' })
  const known = h('datalist', { id: 'known-paths' }, ...[...new Set(report.flatMap((f) => f.endpoints.flatMap((e) => (e as unknown as { top_fields: { path: string }[] }).top_fields?.map((t) => t.path) ?? [])))].map((p) => h('option', { value: p })))
  const since = select('since', filters.since, ['15m', '1h', '6h', '24h', '7d'], 'any time')
  for (const option of since.options) if (option.value) option.textContent = `last ${option.value}`
  const until = h('input', { name: 'until', value: filters.until, placeholder: 'now (or ISO time)' })
  return h(
    'form',
    {
      class: 'filters',
      'aria-label': 'Parity filters',
      onsubmit: (event: Event) => {
        event.preventDefault()
        location.hash = href({
          feature: feature.value,
          endpoint: endpoint.value,
          path: path.value.trim(),
          since: since.value,
          until: until.value.trim(),
          at: 0,
        })
      },
    },
    h('label', {}, 'Feature ', feature),
    h('label', {}, 'Endpoint ', endpoint),
    h('label', {}, 'Differing path ', path),
    known,
    h('label', {}, 'Since ', since),
    h('label', {}, 'Until ', until),
    h('button', { type: 'submit' }, 'Apply'),
    h('a', { href: '#/parity' }, 'Clear'),
  )
}

function summaryTable(report: FeatureReport[], filters: Filters): Child {
  const rows: Child[][] = []
  for (const f of report) {
    if (filters.feature && f.feature !== filters.feature) continue
    for (const e of f.endpoints) {
      if (filters.endpoint && e.endpoint !== filters.endpoint) continue
      const compared = e.compared ?? 0
      const answered = (e.matched ?? 0) + (e.mismatched ?? 0)
      rows.push([
        f.feature,
        h('a', { href: href({ ...filters, feature: f.feature, endpoint: e.endpoint, at: 0 }) }, e.endpoint),
        compared,
        pct(answered ? (e.matched ?? 0) / answered : null),
        e.mismatched ?? 0,
        e.errors ?? 0,
      ])
    }
  }
  if (!rows.length) return h('p', { class: 'muted' }, 'No comparisons recorded for these filters.')
  return table(['Feature', 'Endpoint', 'Compared', 'Match rate', 'Mismatched', 'Candidate errors'], rows, 'Parity per endpoint')
}

export async function renderParity(root: HTMLElement, filters: Filters, reload: () => void): Promise<void> {
  let summary: { features: FeatureReport[] }
  try {
    summary = await get<{ features: FeatureReport[] }>(`/_proxy/parity.json?${querystring(filters, 'feature')}`)
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err
    mount(root, h('h1', {}, 'Parity'), h('p', { class: 'muted' }, 'Parity is not enabled on this proxy (started with --no-parity).'))
    return
  }
  const [series, found, learned] = await Promise.all([
    get<{ hours: Hour[] }>(`/_proxy/parity/series?${querystring(filters, 'feature', 'endpoint', 'since', 'until')}`),
    get<{ items: Mismatch[] }>(`/_proxy/parity/mismatches?${querystring(filters, 'feature', 'endpoint', 'path', 'since', 'until')}&limit=200`),
    noise(summary.features, filters),
  ])
  const items = found.items
  const index = Math.min(Math.max(filters.at, 0), Math.max(items.length - 1, 0))
  const current = items[index]
  const detailBox = h('div', { class: 'detail', 'data-testid': 'mismatch-detail' })
  const nav = (to: number, text: string, disabled: boolean): HTMLElement =>
    h('a', { class: disabled ? 'button disabled' : 'button', href: disabled ? null : href({ ...filters, at: to }), 'aria-disabled': disabled ? 'true' : null }, text)
  root.setAttribute('data-filters', href(filters)) // what this render shows (tests wait on it)
  mount(
    root,
    h('h1', {}, 'Parity'),
    h('p', { class: 'muted' }, h('a', { href: '/_proxy/parity/export.html', target: '_blank' }, 'Static HTML export'), ' for attaching to a ticket.'),
    filterForm(filters, summary.features),
    chart(series.hours),
    summaryTable(summary.features, filters),
    h('h2', {}, 'Mismatches'),
    current
      ? h(
          'div',
          {},
          h(
            'p',
            { class: 'pager' },
            nav(index - 1, '← Previous', index === 0),
            h('span', { 'data-testid': 'mismatch-position' }, ` Mismatch ${index + 1} of ${items.length} `),
            nav(index + 1, 'Next →', index >= items.length - 1),
          ),
          h(
            'p',
            {},
            'Differs at ',
            ...current.paths.flatMap((p, i) => [i ? ', ' : '', h('a', { href: href({ ...filters, path: p.path, at: 0 }) }, h('code', {}, p.path)), ` (${p.kind})`]),
          ),
          detailBox,
        )
      : h('p', { class: 'muted', 'data-testid': 'no-mismatches' }, 'No stored mismatch matches these filters.'),
    noisePanel(learned.items, learned.endpoint, reload),
  )
  if (current) await detail(detailBox, current.id)
}
