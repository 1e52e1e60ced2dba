// Mirror dead letters: writes the other store refused, with the reason; retry or drop each (or
// all), through the admin API (GET /_proxy/mirror, POST /_proxy/mirror/{id}/retry,
// DELETE /_proxy/mirror/{id}; {id} may be `all`).
import { ApiError, canWrite, del, get, listOf, post, problem } from './api'
import { h, json, mount, table, when } from './dom'

interface Letter {
  id: number | string
  feature?: string
  target?: string
  method?: string
  path_qs?: string
  reason?: string
  attempts?: number
  created_at?: number | string
}

// what the last action said: kept across the re-render the action causes (and the live refreshes)
let said: Node | string = ''

const COUNTS = ['pending', 'dead', 'delivered', 'retried', 'dropped', 'skipped_too_large']

export async function renderMirror(root: HTMLElement, reload: () => void): Promise<void> {
  let answer: Record<string, unknown> | null
  try {
    answer = await get<Record<string, unknown>>('/_proxy/mirror')
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err
    answer = null
  }
  if (answer === null) {
    const status = await get<{ mirror: null | Record<string, unknown> }>('/_proxy/status')
    answer = status.mirror
  }
  const letters = answer ? listOf<Letter>(answer, 'letters') : []
  const message = h('p', { class: 'message', role: 'status', 'data-testid': 'mirror-message' }, said)
  const act = async (id: number | string, action: 'retry' | 'drop'): Promise<void> => {
    try {
      if (action === 'retry') await post(`/_proxy/mirror/${id}/retry`)
      else await del(`/_proxy/mirror/${id}`)
      said = `${action} ${id === 'all' ? 'all dead letters' : '#' + id}: done`
    } catch (err) {
      said = h('span', { class: 'bad' }, `${action} ${id}: ${problem(err)}`)
    }
    mount(message, said)
    reload()
  }
  const button = (id: number | string, action: 'retry' | 'drop', label: string): HTMLElement =>
    h('button', { type: 'button', disabled: !canWrite(), onclick: () => void act(id, action) }, label)
  const counts = answer
    ? COUNTS.filter((k) => k in answer!).map((k) => `${k} ${json(answer![k])}`).join(' · ')
    : 'this proxy runs no mirror queue'
  mount(
    root,
    h('h1', {}, 'Mirror dead letters'),
    h('p', { 'data-testid': 'mirror-counts' }, `Queue: ${counts}`),
    message,
    letters.length
      ? h(
          'div',
          {},
          table(
            ['#', 'When', 'Feature', 'Target', 'Request', 'Reason', 'Attempts', ''],
            letters.map((l) => [
              String(l.id),
              when(l.created_at),
              l.feature ?? '',
              l.target ?? '',
              h('code', {}, `${l.method ?? ''} ${l.path_qs ?? ''}`),
              l.reason ?? '',
              l.attempts ?? '',
              h('span', { class: 'actions' }, button(l.id, 'retry', 'Retry'), button(l.id, 'drop', 'Drop')),
            ]),
            'Dead letters',
          ),
          h('p', { class: 'actions' }, button('all', 'retry', 'Retry all'), button('all', 'drop', 'Drop all')),
        )
      : h('p', { class: 'muted', 'data-testid': 'no-dead-letters' }, 'No dead letters.'),
  )
}
