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

function card(rollout: Rollout, message: HTMLElement, reload: () => void): HTMLElement {
  const act = async (action: string): Promise<void> => {
    if (action === 'abort' && !confirm(`Abort the rollout of ${rollout.feature}? It goes back to legacy.`)) return
    try {
      await post(`/_proxy/rollouts/${encodeURIComponent(rollout.feature)}/${action}`)
      mount(message, `${action}: ${rollout.feature} done`)
    } catch (err) {
      mount(message, h('span', { class: 'bad' }, `${action} ${rollout.feature}: ${problem(err)}`))
    }
    reload()
  }
  const steps = rollout.steps.map((s, i) =>
    h('li', { class: i === rollout.step ? 'current' : i < rollout.step ? 'done' : '', 'aria-current': i === rollout.step ? 'step' : null }, stepName(s)),
  )
  return h(
    'article',
    { class: 'rollout', 'data-testid': `rollout-${rollout.feature}`, 'data-state': rollout.state, 'data-step': rollout.step },
    h('h2', {}, rollout.feature, ' ', h('span', { class: `state state-${rollout.state}` }, rollout.state)),
    h('p', {}, `Step ${rollout.step + 1} of ${rollout.steps.length}`, rollout.reason ? ` · ${rollout.reason}` : ''),
    h('ol', { class: 'steps' }, ...steps),
    gatesOf(rollout).length
      ? table(
          ['Gate', 'Observed', 'Limit', 'OK'],
          gatesOf(rollout).map(([name, g]) => [name, g.observed ?? '—', g.limit ?? '—', g.ok === null ? '—' : g.ok ? 'yes' : h('strong', { class: 'bad' }, 'no')]),
          `Gates of ${rollout.feature}`,
        )
      : null,
    h(
      'p',
      { class: 'actions' },
      ...ACTIONS.map((action) =>
        h('button', { type: 'button', disabled: !canWrite(), onclick: () => void act(action) }, action[0].toUpperCase() + action.slice(1)),
      ),
    ),
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
  const message = h('p', { class: 'message', role: 'status', 'data-testid': 'rollout-message' })
  mount(
    root,
    h('h1', {}, 'Rollouts'),
    message,
    rollouts.length
      ? h('div', { class: 'cards' }, ...rollouts.map((r) => card(r, message, reload)))
      : h('p', { class: 'muted' }, 'No rollout has been started. Start one with `banyan rollout start FEATURE`.'),
  )
}
