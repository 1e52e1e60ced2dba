// Audit history: every flag change (file, CLI, admin API, guard, rollout), newest first.
import { get } from './api'
import { h, json, mount, table, when } from './dom'

interface Entry {
  at: number
  source: string
  feature: string
  before: Record<string, unknown> | null
  after: Record<string, unknown> | null
  reason: string | null
}

function changes(entry: Entry): string {
  const before = entry.before ?? {}
  const after = entry.after ?? {}
  if (!entry.before) return 'added'
  if (!entry.after) return 'removed'
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()
  const changed = keys.filter((k) => json(before[k]) !== json(after[k]))
  return changed.map((k) => `${k}: ${json(before[k])} → ${json(after[k])}`).join('; ') || 'no setting changed'
}

export async function renderAudit(root: HTMLElement, feature: string): Promise<void> {
  const query = new URLSearchParams({ limit: '200' })
  if (feature) query.set('feature', feature)
  const { entries } = await get<{ entries: Entry[] }>(`/_proxy/audit?${query}`)
  const filter = h('input', { name: 'feature', value: feature, placeholder: 'all features' })
  mount(
    root,
    h('h1', {}, 'Audit history'),
    h(
      'form',
      {
        class: 'filters',
        onsubmit: (event: Event) => {
          event.preventDefault()
          location.hash = `#/audit?feature=${encodeURIComponent(filter.value.trim())}`
        },
      },
      h('label', {}, 'Feature ', filter),
      h('button', { type: 'submit' }, 'Filter'),
    ),
    entries.length
      ? table(
          ['When', 'Source', 'Feature', 'Change', 'Reason'],
          entries.map((e) => [when(e.at), e.source, e.feature, changes(e), e.reason ?? '']),
          'Audit history',
        )
      : h('p', { class: 'muted' }, 'No changes recorded.'),
  )
}
