// Mirror dead letters: writes the other store refused, with the reason; retry or drop each.
import { ApiError, canWrite, del, get, listOf, post, problem } from './api'
import { h, json, mount, table, when } from './dom'

interface Letter {
  id: number | string
  feature?: string
  target?: string
  method?: string
  path?: string
  path_qs?: string
  reason?: string
  error?: string
  status?: number
  attempts?: number
  created_at?: number
  at?: number
}
interface Status {
  mirror: null | Record<string, number>
}

export async function renderMirror(root: HTMLElement, reload: () => void): Promise<void> {
  const status = await get<Status>('/_proxy/status')
  let letters: Letter[] | null
  try {
    letters = listOf<Letter>(await get<unknown>('/_proxy/mirror'), 'dead', 'letters', 'dead_letters')
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err
    letters = null
  }
  const message = h('p', { class: 'message', role: 'status' })
  const act = async (letter: Letter, action: 'retry' | 'drop'): Promise<void> => {
    try {
      if (action === 'retry') await post(`/_proxy/mirror/${letter.id}/retry`)
      else await del(`/_proxy/mirror/${letter.id}`)
      mount(message, `${action} #${letter.id}: done`)
    } catch (err) {
      mount(message, h('span', { class: 'bad' }, `${action} #${letter.id}: ${problem(err)}`))
    }
    reload()
  }
  const counts = status.mirror
    ? Object.entries(status.mirror).map(([k, v]) => `${k} ${json(v)}`).join(' · ')
    : 'the mirror queue is off'
  mount(
    root,
    h('h1', {}, 'Mirror dead letters'),
    h('p', { 'data-testid': 'mirror-counts' }, `Queue: ${counts}`),
    message,
    letters === null
      ? h('p', { class: 'muted' }, 'This proxy does not list dead letters.')
      : letters.length
        ? table(
            ['#', 'When', 'Feature', 'Target', 'Request', 'Reason', 'Attempts', ''],
            letters.map((l) => [
              String(l.id),
              when(l.created_at ?? l.at),
              l.feature ?? '',
              l.target ?? '',
              h('code', {}, `${l.method ?? ''} ${l.path_qs ?? l.path ?? ''}`),
              l.reason ?? l.error ?? (l.status ? `status ${l.status}` : ''),
              l.attempts ?? '',
              h(
                'span',
                {},
                h('button', { type: 'button', disabled: !canWrite(), onclick: () => void act(l, 'retry') }, 'Retry'),
                ' ',
                h('button', { type: 'button', disabled: !canWrite(), onclick: () => void act(l, 'drop') }, 'Drop'),
              ),
            ]),
            'Dead letters',
          )
        : h('p', { class: 'muted' }, 'No dead letters.'),
  )
}
