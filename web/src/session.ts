// The signed-in user and their token, kept in localStorage so a reload stays signed in.
export interface User {
  id: string
  email: string
  name: string
  created_at: string
}

const TOKEN = 'banyan.token'
const USER = 'banyan.user'

export const auth = {
  get token(): string | null {
    return localStorage.getItem(TOKEN)
  },
  get user(): User | null {
    const raw = localStorage.getItem(USER)
    return raw ? (JSON.parse(raw) as User) : null
  },
  save(token: string, user: User): void {
    localStorage.setItem(TOKEN, token)
    localStorage.setItem(USER, JSON.stringify(user))
  },
  clear(): void {
    localStorage.removeItem(TOKEN)
    localStorage.removeItem(USER)
  },
}
