// The AI Tutor web app: a hash router over the pages, the header and the backends footer.
// Routes: #/login, #/signup, #/tutor[/<session>], #/board[/<room>], #/documents, #/quiz/<id>.
import { api, setUnauthorizedHandler } from './api'
import { renderAuth } from './auth_view'
import { renderBoard } from './board_view'
import { renderChat } from './chat_view'
import { h, mount } from './dom'
import { renderDocuments } from './documents_view'
import { renderFooter } from './footer'
import { renderQuiz } from './quiz_view'
import { auth } from './session'

const main = document.getElementById('main') as HTMLElement
const nav = document.getElementById('nav') as HTMLElement
const whoami = document.getElementById('whoami') as HTMLElement
let leave: (() => void) | void = undefined

const PAGES: [string, string][] = [
  ['#/tutor', 'Tutor'],
  ['#/board', 'Whiteboard'],
  ['#/documents', 'Documents'],
]

function header(page: string): void {
  const user = auth.user
  if (user === null) {
    mount(nav)
    mount(whoami)
    return
  }
  mount(
    nav,
    ...PAGES.map(([href, label]) =>
      h('a', { href, 'aria-current': href === `#/${page}` ? 'page' : null }, label),
    ),
  )
  const logout = h('button', { type: 'button', class: 'link' }, 'Log out')
  logout.addEventListener('click', async () => {
    await api('POST', 'api/auth/logout').catch(() => undefined)
    auth.clear()
    location.hash = '#/login'
  })
  mount(whoami, `Signed in as ${user.name} `, logout)
}

function route(): void {
  if (typeof leave === 'function') leave()
  leave = undefined
  const [page = '', arg = ''] = location.hash.replace(/^#\/?/, '').split('/')
  const signedIn = auth.token !== null
  if (!signedIn && page !== 'signup') {
    header('login')
    renderAuth(main, 'login', () => (location.hash = '#/tutor'))
    return
  }
  header(page)
  switch (page) {
    case 'login':
    case 'signup':
      if (signedIn) location.hash = '#/tutor'
      else renderAuth(main, 'signup', () => (location.hash = '#/tutor'))
      return
    case 'board':
      leave = renderBoard(main, arg || 'lobby')
      return
    case 'documents':
      leave = renderDocuments(main)
      return
    case 'quiz':
      renderQuiz(main, arg)
      return
    default:
      leave = renderChat(main, arg || null)
  }
  main.focus({ preventScroll: true })
}

setUnauthorizedHandler(() => {
  auth.clear()
  location.hash = '#/login'
})
renderFooter(document.getElementById('backends') as HTMLElement)
window.addEventListener('hashchange', route)
if (auth.token !== null) void api('GET', 'api/auth/me').catch(() => undefined)
route()
