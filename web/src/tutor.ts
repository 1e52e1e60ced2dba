// The tutor conversation over /ws/tutor/{session_id}: ask, stream tokens, finish turns. Before a
// question on an idle socket the socket follows the proxy's current route (the tutor feature keeps
// open sockets where they are on a flip, so a turn in flight finishes on its backend and the next
// one goes where the flag now says). After a reconnection the session is reloaded and questions
// that were cut without an answer are asked again.
import { JsonSocket } from './socket'
import type { Message } from './types'

export interface TutorView {
  token(turn: string, text: string): void
  done(turn: string, question: Message, answer: Message): void
  failed(turn: string, message: string): void
  /** Another tab finished a turn in this session. */
  elsewhere(question: Message, answer: Message): void
  /** Reload the conversation from the server; returns the stored messages. */
  reload(): Promise<Message[]>
  /** A question cut by a reconnection is asked again (show it after the reloaded messages). */
  requeued(turn: string, text: string): void
}

export class TutorChannel {
  private readonly socket: JsonSocket
  // turns without an answer yet, oldest first: the question, and whether this socket has it
  private readonly pending = new Map<string, { text: string; sent: boolean }>()
  private turns = 0

  constructor(
    readonly sessionId: string,
    private readonly view: TutorView,
  ) {
    this.socket = new JsonSocket('tutor', `ws/tutor/${sessionId}`, {
      message: (frame) => this.receive(frame),
      open: (resumed) => {
        if (resumed) void this.resume()
      },
    })
  }

  get backend(): string | null {
    return this.socket.backend
  }

  start(): Promise<void> {
    return this.socket.open()
  }

  stop(): void {
    this.socket.close()
  }

  /** Ask a question; returns its turn id (tokens and the answer arrive through the view). */
  async ask(text: string): Promise<string> {
    const turn = `q${Date.now().toString(36)}-${++this.turns}`
    const idle = this.pending.size === 0
    this.pending.set(turn, { text, sent: false })
    if (idle) await this.socket.follow()
    await this.socket.open()
    this.flush()
    return turn
  }

  private receive(frame: Record<string, unknown>): void {
    const turn = String(frame.turn ?? '')
    switch (frame.type) {
      case 'token':
        this.view.token(turn, String(frame.text ?? ''))
        break
      case 'done':
        this.pending.delete(turn)
        this.view.done(turn, frame.question as Message, frame.answer as Message)
        break
      case 'error':
        this.pending.delete(turn)
        this.view.failed(turn, String(frame.message ?? 'The tutor could not answer.'))
        break
      case 'turn':
        this.view.elsewhere(frame.question as Message, frame.answer as Message)
        break
    }
  }

  /** Send every pending question this socket does not have yet, in order. */
  private flush(): void {
    for (const [turn, entry] of this.pending) {
      if (entry.sent || !this.socket.isOpen) continue
      this.socket.send({ type: 'ask', text: entry.text, id: turn })
      entry.sent = true
    }
  }

  private async resume(): Promise<void> {
    for (const entry of this.pending.values()) entry.sent = false // the old socket had them
    const messages = await this.view.reload().catch(() => [] as Message[])
    for (const [turn, entry] of this.pending) {
      // stored before the cut: its answer is in the reloaded list
      if (answered(messages, entry.text)) this.pending.delete(turn)
      else this.view.requeued(turn, entry.text)
    }
    this.flush()
  }
}

/** Whether the conversation ends with `text` asked and answered. */
function answered(messages: Message[], text: string): boolean {
  const n = messages.length
  return (
    n >= 2 &&
    messages[n - 2].role === 'user' &&
    messages[n - 2].content === text &&
    messages[n - 1].role === 'assistant'
  )
}
