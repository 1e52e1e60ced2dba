// Pretty-printed JSON whose every value knows its JSONPath (rendered as banyan/parity/paths.py
// renders it: $.key, $['odd key'], $[0]); values at a differing path are highlighted.
import { h } from './dom'

const IDENT = /^[A-Za-z_][\w-]*$/

export function childPath(parent: string, segment: string | number): string {
  if (typeof segment === 'number') return `${parent}[${segment}]`
  if (IDENT.test(segment)) return `${parent}.${segment}`
  return `${parent}['${segment.replace(/'/g, "\\'")}']`
}

function node(value: unknown, path: string, depth: number, marked: Set<string>): Node {
  const pad = '  '.repeat(depth + 1)
  const end = '  '.repeat(depth)
  let inner: Node
  if (Array.isArray(value)) {
    inner = value.length
      ? h(
          'span',
          {},
          '[\n',
          ...value.flatMap((item, i) => [
            pad,
            node(item, childPath(path, i), depth + 1, marked),
            i < value.length - 1 ? ',\n' : '\n',
          ]),
          end + ']',
        )
      : document.createTextNode('[]')
  } else if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
    inner = entries.length
      ? h(
          'span',
          {},
          '{\n',
          ...entries.flatMap(([key, item], i) => [
            pad,
            h('span', { class: 'key' }, JSON.stringify(key)),
            ': ',
            node(item, childPath(path, key), depth + 1, marked),
            i < entries.length - 1 ? ',\n' : '\n',
          ]),
          end + '}',
        )
      : document.createTextNode('{}')
  } else {
    inner = document.createTextNode(JSON.stringify(value) ?? 'null')
  }
  if (marked.has(path)) return h('mark', { class: 'diff', 'data-path': path, title: path }, inner)
  return h('span', { 'data-path': path }, inner)
}

/** A <pre> of `body` (JSON text, or any text when it does not parse), `marked` paths highlighted. */
export function jsonView(body: string, marked: Set<string>, label: string): HTMLElement {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    return h('pre', { class: 'body', 'aria-label': label }, body)
  }
  return h('pre', { class: 'body', 'aria-label': label }, node(parsed, '$', 0, marked))
}
