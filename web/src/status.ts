// Which backend served us: the X-Banyan-Backend header of the last API call, and each socket's
// backend. The footer renders this; tests read it.
export type SocketState = 'connecting' | 'open' | 'reconnecting' | 'closed'

export interface SocketStatus {
  backend: string | null
  state: SocketState
}

export interface Status {
  api: { backend: string | null; feature: string | null; path: string | null }
  sockets: Record<string, SocketStatus>
}

export const status: Status = { api: { backend: null, feature: null, path: null }, sockets: {} }
const listeners = new Set<() => void>()

function changed(): void {
  for (const listener of listeners) listener()
}

export function onStatus(listener: () => void): void {
  listeners.add(listener)
}

export function noteApi(headers: { get(name: string): string | null }, path: string): void {
  const backend = headers.get('X-Banyan-Backend')
  if (backend === null) return // not through the proxy (or a network failure): keep what we knew
  status.api = { backend, feature: headers.get('X-Banyan-Feature'), path }
  changed()
}

export function noteSocket(name: string, patch: Partial<SocketStatus>): void {
  const before = status.sockets[name] ?? { backend: null, state: 'connecting' }
  status.sockets[name] = { ...before, ...patch }
  changed()
}

export function dropSocket(name: string): void {
  delete status.sockets[name]
  changed()
}
