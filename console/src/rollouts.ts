// Rollouts: each feature's step, its gates, and the buttons the CLI has (pause, resume, promote,
// abort), acting through POST /_proxy/rollouts/{feature}/{action} with the admin token.
import { ApiError, canWrite, get, listOf, post, problem } from './api'
import { h, json, mount, table } from './dom'

interface Gate {
  name?: string
  gate?: string
  observed: number | null
  limit: number | null
  ok: boolean | null
  judged?: boolean
  samples?: number
}
interface Rollout {
  feature: string
  state: string
  step: number
  steps: unknown[]
  gates: Gate[] | Record<string, Gate>
  reason: string | null
}

const ACTIONS = ['pause', 'resume', 'promote', 'abort'] as const

function stepName(step: unknown): string {
  if (step && typeof step === 'object' && 'label' in step) {
    const shown = step as { label: unknown; for?: unknown }
    return shown.for ? `${shown.label} for ${shown.for}` : String(shown.label)
  }
  if (step && typeof step === 'object') {
    const entries = Object.entries(step as Record<string, unknown>)
    if (entries.length === 1) {
      const [kind, args] = entries[0]
      const extra = args && typeof args === 'object' ? Object.entries(args as Record<string, unknown>) : []
      return extra.length ? `${kind} ${extra.map(([k, v]) => `${k} ${v}`).join(', ')}` : kind
    }
  }
  return typeof step === 'string' ? step : json(step)
}

function gatesOf(rollout: Rollout): [string, Gate][] {
  if (Array.isArray(rollout.gates)) return rollout.gates.map((g, i) => [g.name ?? g.gate ?? `gate ${i + 1}`, g])
  return Object.entries(rollout.gates ?? {})
}

function verdict(g: Gate): HTMLElement | string {
  if (g.judged === false) return h('span', { class: 'muted' }, 'not judged yet')
  if (g.ok === null) return '—'
  return g.ok ? 'yes' : h('strong', { class: 'bad' }, 'no')
}

// what the last action said: kept across the re-render the action causes (and the live refreshes)
let said: Node | string = ''
// the feature whose Abort asks for confirmation
let armed: string | null = null

async function act(feature: string, action: string, message: HTMLElement, reload: () => void): Promise<void> {
  try {
    await post(`/_proxy/rollouts/${encodeURIComponent(feature)}/${action}`)
    said = `${action}: ${feature} done`
  } catch (err) {
    said = h('span', { class: 'bad' }, `${action} ${feature}: ${problem(err)}`)
  }
  mount(message, said)
  reload()
}

function actionButton(rollout: Rollout, action: string, message: HTMLElement, reload: () => void): HTMLElement {
  const label = action[0].toUpperCase() + action.slice(1)
  const pointless =
    (action === 'pause' && rollout.state !== 'running') || (action === 'resume' && rollout.state !== 'paused')
  const button = h('button', { type: 'button', disabled: !canWrite() || pointless }, label)
  const arm = (): void => {
    button.textContent = `Confirm abort of ${rollout.feature}`
    button.classList.add('danger')
  }
  if (action === 'abort' && armed === rollout.feature) arm() // still asking after a refresh
  button.addEventListener('click', () => {
    if (action === 'abort' && armed !== rollout.feature) {
      // an abort moves users back to legacy: ask once more, in the page (no blocking dialog)
      armed = rollout.feature
      arm()
      return
    }
    armed = null
    void act(rollout.feature, action, message, reload)
  })
  return button
}

function card(rollout: Rollout, message: HTMLElement, reload: () => void): HTMLElement {
  const steps = rollout.steps.map((s, i) =>
    h('li', { class: i === rollout.step ? 'current' : i < rollout.step ? 'done' : '', 'aria-current': i === rollout.step ? 'step' : null }, stepName(s)),
  )
  const active = rollout.state === 'running' || rollout.state === 'paused'
  return h(
    'article',
    { class: 'rollout', 'data-testid': `rollout-${rollout.feature}`, 'data-state': rollout.state, 'data-step': rollout.step },
    h('h2', {}, rollout.feature, ' ', h('span', { class: `state state-${rollout.state}` }, rollout.state)),
    h(
      'p',
      { 'data-testid': `rollout-${rollout.feature}-step` },
      `Step ${rollout.step + 1} of ${rollout.steps.length}: ${stepName(rollout.steps[rollout.step])}`,
    ),
    rollout.reason ? h('p', { class: 'muted' }, rollout.reason) : null,
    h('ol', { class: 'steps' }, ...steps),
    gatesOf(rollout).length
      ? table(
          ['Gate', 'Observed', 'Limit', 'Samples', 'OK'],
          gatesOf(rollout).map(([name, g]) => [name, g.observed ?? '—', g.limit ?? '—', g.samples ?? '—', verdict(g)]),
          `Gates of ${rollout.feature}`,
        )
      : h('p', { class: 'muted' }, 'No gates on this step.'),
    active
      ? h('p', { class: 'actions' }, ...ACTIONS.map((action) => actionButton(rollout, action, message, reload)))
      : h('p', { class: 'actions' }, actionButton(rollout, 'start', message, reload)),
  )
}

export async function renderRollouts(root: HTMLElement, reload: () => void): Promise<void> {
  let rollouts: Rollout[]
  try {
    rollouts = listOf<Rollout>(await get<unknown>('/_proxy/rollouts'), 'rollouts')
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      mount(root, h('h1', {}, 'Rollouts'), h('p', { class: 'muted' }, 'This proxy has no rollout controller.'))
      return
    }
    throw err
  }
  const flags = await get<{ features: Record<string, { rollout?: unknown }> }>('/_proxy/flags')
  const known = new Set(rollouts.map((r) => r.feature))
  const startable = Object.entries(flags.features)
    .filter(([name, f]) => f.rollout && !known.has(name))
    .map(([name]) => name)
  const message = h('p', { class: 'message', role: 'status', 'data-testid': 'rollout-message' }, said)
  mount(
    root,
    h('h1', {}, 'Rollouts'),
    message,
    rollouts.length
      ? h('div', { class: 'cards' }, ...rollouts.map((r) => card(r, message, reload)))
      : h('p', { class: 'muted' }, 'No rollout has been started.'),
    startable.length
      ? h(
          'section',
          {},
          h('h2', {}, 'Features with a rollout plan'),
          h(
            'ul',
            { class: 'plain' },
            ...startable.map((name) =>
              h(
                'li',
                {},
                h('button', { type: 'button', disabled: !canWrite(), onclick: () => void act(name, 'start', message, reload) }, `Start ${name}`),
              ),
            ),
          ),
        )
      : null,
  )
}
