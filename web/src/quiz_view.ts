// A quiz: one radio group per question; the attempt's score and per-question feedback.
import { api, ApiError } from './api'
import { errorBox, h, mount, showError } from './dom'
import type { Attempt, Quiz } from './types'

export function renderQuiz(main: HTMLElement, quizId: string): void {
  const error = errorBox()
  mount(main, h('h1', {}, 'Quiz'), h('p', {}, 'Loading…'), error)
  void (async () => {
    try {
      const quiz = await api<Quiz>('GET', `api/quizzes/${quizId}`)
      show(main, quiz)
    } catch (err) {
      showError(error, err instanceof ApiError ? err.message : String(err))
    }
  })()
}

function show(main: HTMLElement, quiz: Quiz): void {
  const error = errorBox()
  const submit = h('button', { type: 'submit' }, 'Submit answers')
  const form = h(
    'form',
    { class: 'quiz' },
    ...quiz.questions.map((q) =>
      h(
        'fieldset',
        { 'data-index': String(q.index) },
        h('legend', {}, `${q.index + 1}. ${q.question}`),
        ...q.choices.map((choice, i) =>
          h(
            'label',
            { class: 'choice' },
            h('input', { type: 'radio', name: `q${q.index}`, value: String(i), required: true }),
            ` ${choice}`,
          ),
        ),
      ),
    ),
    submit,
    error,
  )
  const result = h('section', { class: 'result', 'aria-live': 'polite', 'aria-label': 'Result' })
  const source = quiz.source.kind === 'session' ? `#/tutor/${quiz.source.id}` : '#/documents'
  mount(
    main,
    h('h1', {}, `Quiz (${quiz.count} questions)`),
    h('p', {}, h('a', { href: source }, `Back to the ${quiz.source.kind}`)),
    form,
    result,
  )
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    showError(error, '')
    const answers = quiz.questions.map((q) => {
      const picked = form.querySelector<HTMLInputElement>(`input[name="q${q.index}"]:checked`)
      return picked ? Number(picked.value) : 0
    })
    submit.disabled = true
    try {
      const attempt = await api<Attempt>('POST', `api/quizzes/${quiz.id}/attempts`, { answers })
      feedback(result, quiz, attempt)
    } catch (err) {
      showError(error, err instanceof ApiError ? err.message : String(err))
      submit.disabled = false
    }
  })
}

function feedback(result: HTMLElement, quiz: Quiz, attempt: Attempt): void {
  mount(
    result,
    h(
      'h2',
      { 'data-testid': 'score', 'data-score': String(attempt.score), 'data-total': String(attempt.total) },
      `Score: ${attempt.score} / ${attempt.total} (${Math.round(attempt.percent)}%)`,
    ),
    h(
      'ol',
      { class: 'feedback' },
      ...attempt.results.map((r) => {
        const choices = quiz.questions[r.index]?.choices ?? []
        return h(
          'li',
          { class: r.correct ? 'correct' : 'wrong', 'data-correct': String(r.correct) },
          h('strong', {}, r.correct ? 'Correct. ' : 'Not quite. '),
          r.correct ? '' : `The answer is “${choices[r.expected] ?? r.expected}”. `,
          r.explanation,
        )
      }),
    ),
  )
}
