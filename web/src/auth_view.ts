// Sign up and log in.
import { api, ApiError } from './api'
import { errorBox, field, h, mount, showError } from './dom'
import { auth, type User } from './session'

interface AuthAnswer {
  user: User
  token: string
}

export function renderAuth(main: HTMLElement, mode: 'login' | 'signup', done: () => void): void {
  const signup = mode === 'signup'
  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'email' })
  const password = h('input', {
    type: 'password',
    name: 'password',
    required: true,
    minlength: signup ? 8 : null,
    autocomplete: signup ? 'new-password' : 'current-password',
  })
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 100 })
  const error = errorBox()
  const submit = h('button', { type: 'submit' }, signup ? 'Create account' : 'Log in')
  const form = h(
    'form',
    { class: 'card narrow', 'aria-labelledby': 'auth-title' },
    h('h1', { id: 'auth-title' }, signup ? 'Create your account' : 'Log in'),
    signup ? field('Name', name) : null,
    field('Email', email),
    field('Password', password),
    error,
    submit,
    h(
      'p',
      {},
      signup ? 'Already have an account? ' : 'New here? ',
      h('a', { href: signup ? '#/login' : '#/signup' }, signup ? 'Log in' : 'Create an account'),
    ),
  )
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    showError(error, '')
    submit.disabled = true
    try {
      const body = signup
        ? { email: email.value, password: password.value, name: name.value }
        : { email: email.value, password: password.value }
      const answer = await api<AuthAnswer>(
        'POST',
        signup ? 'api/auth/register' : 'api/auth/login',
        body,
      )
      auth.save(answer.token, answer.user)
      done()
    } catch (err) {
      showError(error, err instanceof ApiError ? err.message : String(err))
    } finally {
      submit.disabled = false
    }
  })
  mount(main, form)
  ;(signup ? name : email).focus()
}
