// Documents: upload with progress (multipart POST /api/documents), then poll until processed;
// a ready document can be turned into a quiz.
import { api, ApiError, upload } from './api'
import { sleep } from './backoff'
import { errorBox, field, h, mount, showError } from './dom'
import type { Document, Page, Quiz } from './types'

export function renderDocuments(main: HTMLElement): () => void {
  let alive = true
  const file = h('input', { type: 'file', name: 'file', required: true, accept: '.txt,.md,.pdf' })
  const title = h('input', { type: 'text', name: 'title', maxlength: 200 })
  const progress = h('progress', { max: 1, value: 0, 'aria-label': 'Upload progress' })
  const state = h('p', { class: 'upload-state', 'data-testid': 'upload-state', 'aria-live': 'polite' })
  const error = errorBox()
  const submit = h('button', { type: 'submit' }, 'Upload')
  const form = h(
    'form',
    { class: 'card' },
    h('h2', {}, 'Upload a document'),
    field('File (.txt, .md or .pdf, up to 5 MiB)', file),
    field('Title (optional)', title),
    submit,
    progress,
    state,
    error,
  )
  const list = h('ul', { class: 'documents', 'aria-label': 'Your documents' })
  mount(main, h('h1', {}, 'Documents'), form, h('h2', {}, 'Your documents'), list)

  const refresh = async () => {
    const page = await api<Page<Document>>('GET', 'api/documents?limit=50')
    mount(list, ...page.items.map((doc) => row(doc, error)))
    if (page.items.length === 0) mount(list, h('li', { class: 'hint' }, 'No documents yet.'))
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const chosen = file.files?.[0]
    if (chosen === undefined) return
    showError(error, '')
    submit.disabled = true
    progress.value = 0
    state.textContent = `Uploading ${chosen.name}…`
    const body = new FormData()
    body.append('file', chosen)
    if (title.value.trim()) body.append('title', title.value.trim())
    try {
      let doc = await upload<Document>('api/documents', body, (fraction) => {
        progress.value = fraction
      })
      progress.value = 1
      form.reset()
      for (let attempt = 0; alive && (doc.status === 'queued' || doc.status === 'processing'); attempt++) {
        state.textContent = `${doc.title}: ${doc.status}…`
        await refresh()
        await sleep(Math.min(2000, 250 * 2 ** Math.min(attempt, 3)))
        doc = await api<Document>('GET', `api/documents/${doc.id}`)
      }
      state.textContent = `${doc.title}: ${doc.status}`
      state.dataset.status = doc.status
      if (doc.status === 'failed') showError(error, doc.error ?? 'Processing failed.')
      await refresh()
    } catch (err) {
      state.textContent = ''
      showError(error, err instanceof ApiError ? err.message : String(err))
    } finally {
      submit.disabled = false
    }
  })
  void refresh().catch((err: unknown) => showError(error, String(err)))
  return () => {
    alive = false
  }
}

function row(doc: Document, error: HTMLElement): HTMLLIElement {
  const quiz = h('button', { type: 'button', disabled: doc.status !== 'ready' }, 'Make a quiz')
  quiz.setAttribute('aria-label', `Make a quiz from ${doc.title}`)
  quiz.addEventListener('click', async () => {
    quiz.disabled = true
    showError(error, '')
    try {
      const made = await api<Quiz>('POST', 'api/quizzes', { document_id: doc.id, count: 3 })
      location.hash = `#/quiz/${made.id}`
    } catch (err) {
      showError(error, err instanceof ApiError ? err.message : String(err))
      quiz.disabled = false
    }
  })
  return h(
    'li',
    { 'data-status': doc.status, 'data-id': doc.id },
    h('strong', {}, doc.title),
    ` — ${doc.status}`,
    doc.summary ? h('p', { class: 'summary' }, doc.summary) : null,
    doc.keywords?.length ? h('p', { class: 'keywords' }, `Keywords: ${doc.keywords.join(', ')}`) : null,
    quiz,
  )
}
