// The tutor page: folders and sessions on the side, the conversation with streamed answers.
import { api, ApiError } from './api'
import { errorBox, field, h, mount, showError } from './dom'
import { TutorChannel } from './tutor'
import type { Folder, Message, Page, Quiz, Session } from './types'

const NO_FOLDER = 'none'
let folderFilter = '' // '' = all sessions, 'none' = in no folder, else a folder id

export function renderChat(main: HTMLElement, sessionId: string | null): () => void {
  const side = h('aside', { class: 'side', 'aria-label': 'Sessions' })
  const conversation = h('section', { class: 'conversation', 'aria-label': 'Conversation' })
  mount(main, h('div', { class: 'split' }, side, conversation))
  void renderSide(side, sessionId)
  if (sessionId === null) {
    mount(conversation, h('p', { class: 'hint' }, 'Pick a session, or start a new one.'))
    return () => undefined
  }
  const channel = renderConversation(conversation, sessionId)
  return () => channel.stop()
}

async function renderSide(side: HTMLElement, current: string | null): Promise<void> {
  const error = errorBox()
  const filter = h('select', { name: 'folder-filter' })
  const list = h('ul', { class: 'sessions', 'aria-label': 'Your sessions' })
  const folderName = h('input', { type: 'text', name: 'folder', required: true, maxlength: 100 })
  const title = h('input', { type: 'text', name: 'title', required: true, maxlength: 200 })
  const folderForm = h(
    'form',
    { class: 'inline' },
    field('New folder', folderName),
    h('button', { type: 'submit' }, 'Add folder'),
  )
  const sessionForm = h(
    'form',
    { class: 'inline' },
    field('New session title', title),
    h('button', { type: 'submit' }, 'Start session'),
  )
  mount(
    side,
    h('h2', {}, 'Sessions'),
    sessionForm,
    field('Show', filter),
    list,
    folderForm,
    error,
  )
  const refresh = async () => {
    const [folders, sessions] = await Promise.all([
      api<{ items: Folder[] }>('GET', 'api/folders'),
      api<Page<Session>>(
        'GET',
        `api/sessions?limit=100${folderFilter ? `&folder_id=${folderFilter}` : ''}`,
      ),
    ])
    mount(
      filter,
      h('option', { value: '' }, 'All sessions'),
      h('option', { value: NO_FOLDER }, 'In no folder'),
      ...folders.items.map((f) => h('option', { value: f.id }, `Folder: ${f.name}`)),
    )
    filter.value = folderFilter
    mount(
      list,
      ...sessions.items.map((s) =>
        h(
          'li',
          {},
          h(
            'a',
            { href: `#/tutor/${s.id}`, 'aria-current': s.id === current ? 'page' : null },
            s.title,
          ),
          h('span', { class: 'count' }, ` ${s.message_count} messages`),
        ),
      ),
    )
    if (sessions.items.length === 0) mount(list, h('li', { class: 'hint' }, 'No sessions yet.'))
  }
  const guarded = (work: () => Promise<void>) => async (event: Event) => {
    event.preventDefault()
    showError(error, '')
    try {
      await work()
    } catch (err) {
      showError(error, err instanceof ApiError ? err.message : String(err))
    }
  }
  filter.addEventListener(
    'change',
    guarded(async () => {
      folderFilter = filter.value
      await refresh()
    }),
  )
  folderForm.addEventListener(
    'submit',
    guarded(async () => {
      const folder = await api<Folder>('POST', 'api/folders', { name: folderName.value })
      folderName.value = ''
      folderFilter = folder.id
      await refresh()
    }),
  )
  sessionForm.addEventListener(
    'submit',
    guarded(async () => {
      const inFolder = folderFilter && folderFilter !== NO_FOLDER ? folderFilter : null
      const session = await api<Session>('POST', 'api/sessions', {
        title: title.value,
        folder_id: inFolder,
      })
      title.value = ''
      location.hash = `#/tutor/${session.id}`
    }),
  )
  await refresh().catch((err: unknown) => showError(error, String(err)))
}

function renderConversation(root: HTMLElement, sessionId: string): TutorChannel {
  const heading = h('h1', {}, 'Session')
  const messages = h('ol', { class: 'messages', 'aria-live': 'polite', 'aria-label': 'Messages' })
  const question = h('textarea', { name: 'question', rows: 3, required: true, maxlength: 4000 })
  const askButton = h('button', { type: 'submit' }, 'Ask')
  const error = errorBox()
  const form = h('form', { class: 'ask' }, field('Your question', question), askButton)
  const quizButton = h('button', { type: 'button' }, 'Quiz me on this session')
  const deleteButton = h('button', { type: 'button', class: 'danger' }, 'Delete session')
  mount(root, heading, h('div', { class: 'tools' }, quizButton, deleteButton), messages, form, error)
  const bubbles = new Map<string, HTMLLIElement>()

  const bubble = (role: string, text: string, extra: Record<string, string> = {}) =>
    h('li', { class: `msg ${role}`, 'data-role': role, ...extra }, text)
  const draw = (items: Message[]) => {
    bubbles.clear()
    mount(messages, ...items.map((m) => bubble(m.role, m.content, { 'data-seq': String(m.seq) })))
  }
  const reload = async (): Promise<Message[]> => {
    const page = await api<Page<Message>>('GET', `api/sessions/${sessionId}/messages?limit=200`)
    draw(page.items)
    return page.items
  }
  const channel = new TutorChannel(sessionId, {
    token(turn, text) {
      let li = bubbles.get(turn)
      if (li === undefined) {
        li = bubble('assistant', '', { 'data-turn': turn, 'data-state': 'streaming' })
        li.setAttribute('aria-busy', 'true')
        bubbles.set(turn, li)
        messages.append(li)
      }
      li.textContent += text
    },
    done(turn, _question, answer) {
      let li = bubbles.get(turn)
      if (li === undefined) {
        li = bubble('assistant', '', { 'data-turn': turn })
        messages.append(li)
      }
      li.textContent = answer.content
      li.dataset.state = 'done'
      li.dataset.seq = String(answer.seq)
      li.dataset.servedBy = channel.backend ?? ''
      li.removeAttribute('aria-busy')
      bubbles.delete(turn)
    },
    failed(turn, message) {
      bubbles.get(turn)?.remove()
      bubbles.delete(turn)
      showError(error, message)
    },
    elsewhere() {
      void reload()
    },
    reload,
    requeued(turn, text) {
      messages.append(bubble('user', text, { 'data-state': 'asked', 'data-turn': turn }))
    },
  })

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const text = question.value.trim()
    if (text === '') return
    showError(error, '')
    question.value = ''
    messages.append(bubble('user', text, { 'data-state': 'asked' }))
    try {
      await channel.ask(text)
    } catch (err) {
      showError(error, `Could not reach the tutor: ${String(err)}`)
    }
  })
  quizButton.addEventListener('click', async () => {
    showError(error, '')
    quizButton.disabled = true
    try {
      const quiz = await api<Quiz>('POST', 'api/quizzes', { session_id: sessionId, count: 3 })
      location.hash = `#/quiz/${quiz.id}`
    } catch (err) {
      showError(error, err instanceof ApiError ? err.message : String(err))
    } finally {
      quizButton.disabled = false
    }
  })
  deleteButton.addEventListener('click', async () => {
    if (!confirm('Delete this session and its messages?')) return
    await api('DELETE', `api/sessions/${sessionId}`)
    location.hash = '#/tutor'
  })
  void (async () => {
    try {
      const session = await api<Session>('GET', `api/sessions/${sessionId}`)
      heading.textContent = session.title
      await reload()
      await channel.start()
    } catch (err) {
      showError(error, err instanceof ApiError ? err.message : String(err))
    }
  })()
  return channel
}
