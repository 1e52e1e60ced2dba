// A JSON WebSocket that reconnects by itself. A close we did not ask for — 1012 when the proxy
// moves a feature with `websocket: reconnect`, 1001 at a server restart, a dropped connection —
// is followed by reconnection with backoff; `follow()` moves an idle socket to the backend the
// proxy routes its path to now (features with `websocket: keep` leave open sockets where they are).
import { routeOf, socketUrl } from './api'
import { backoffDelay } from './backoff'
import { dropSocket, noteSocket } from './status'

export interface SocketHandlers {
  /** Every JSON frame from the server. */
  message(frame: Record<string, unknown>): void
  /** The socket is open; `resumed` is true after a reconnection (resubscribe, resend...). */
  open?(resumed: boolean): void
}

const MAX_FAILED_ATTEMPTS = 12

interface Waiter {
  resolve(): void
  reject(err: Error): void
}

export class JsonSocket {
  backend: string | null = null
  private ws: WebSocket | null = null
  private busy = false // an attempt is between its route probe and its open or close
  private stopped = false
  private failures = 0
  private everOpened = false
  private moving = false // follow() is reopening on purpose: not a resumption
  private timer: ReturnType<typeof setTimeout> | null = null
  private waiters: Waiter[] = []

  constructor(
    readonly name: string,
    readonly path: string,
    private readonly handlers: SocketHandlers,
  ) {}

  get isOpen(): boolean {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN
  }

  /** Open the socket unless it is open; resolves once it is (retrying as needed). */
  open(): Promise<void> {
    this.stopped = false
    if (this.isOpen) return Promise.resolve()
    const opened = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }))
    if (!this.busy && this.timer === null) void this.attempt()
    return opened
  }

  send(frame: Record<string, unknown>): void {
    if (!this.isOpen || this.ws === null) throw new Error(`${this.name} socket is not open`)
    this.ws.send(JSON.stringify(frame))
  }

  /** If the proxy now routes this socket's path elsewhere, reopen it there. */
  async follow(): Promise<boolean> {
    if (!this.isOpen) return false
    const route = await routeOf(this.path)
    if (route === null || route === this.backend || !this.isOpen) return false
    this.detach(1000, 'following the route')
    this.moving = true
    await this.open()
    return true
  }

  /** Close for good (leaving the page): no reconnection. */
  close(): void {
    this.stopped = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.detach(1000, 'closed by the app')
    this.settle(new Error(`${this.name} socket closed`))
    dropSocket(this.name)
  }

  private detach(code: number, reason: string): void {
    const ws = this.ws
    this.ws = null
    if (ws !== null) {
      ws.onopen = null
      ws.onclose = null
      ws.onmessage = null
      ws.close(code, reason)
    }
  }

  private settle(err: Error | null): void {
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) {
      if (err === null) waiter.resolve()
      else waiter.reject(err)
    }
  }

  private async attempt(): Promise<void> {
    this.busy = true
    noteSocket(this.name, { state: this.everOpened ? 'reconnecting' : 'connecting' })
    const backend = await routeOf(this.path)
    if (this.stopped) {
      this.busy = false
      return
    }
    const ws = new WebSocket(socketUrl(this.path))
    this.ws = ws
    ws.onopen = () => {
      const resumed = this.everOpened && !this.moving
      this.moving = false
      this.busy = false
      this.everOpened = true
      this.failures = 0
      this.backend = backend
      noteSocket(this.name, { backend, state: 'open' })
      this.settle(null)
      this.handlers.open?.(resumed)
    }
    ws.onmessage = (event) => this.receive(event)
    ws.onclose = (event) => {
      this.busy = false
      if (this.ws === ws) this.ws = null
      if (!this.stopped) this.scheduleRetry(event.code)
    }
  }

  private receive(event: MessageEvent): void {
    if (typeof event.data !== 'string') return
    let frame: unknown
    try {
      frame = JSON.parse(event.data)
    } catch {
      return
    }
    if (frame !== null && typeof frame === 'object') {
      this.handlers.message(frame as Record<string, unknown>)
    }
  }

  private scheduleRetry(code: number): void {
    this.failures += 1
    if (this.failures > MAX_FAILED_ATTEMPTS) {
      noteSocket(this.name, { state: 'closed' })
      this.settle(new Error(`${this.name} socket: the server keeps refusing`))
      return
    }
    noteSocket(this.name, { state: 'reconnecting' })
    // 1012: the proxy moved the feature and the new side is up; come back quickly
    const delay = backoffDelay(this.failures - 1, code === 1012 ? 100 : 250)
    this.timer = setTimeout(() => {
      this.timer = null
      if (!this.stopped) void this.attempt()
    }, delay)
  }
}
