// The admin JSON API, with the admin token pasted into the console (kept in sessionStorage: it
// lives as long as the tab, never in localStorage or a cookie). Without a token the console reads
// (loopback, or as the proxy allows) and every action is disabled.
const KEY = 'banyan.adminToken'

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

export function token(): string | null {
  return sessionStorage.getItem(KEY)
}

export function setToken(value: string | null): void {
  if (value) sessionStorage.setItem(KEY, value)
  else sessionStorage.removeItem(KEY)
  window.dispatchEvent(new Event('banyan:token'))
}

export function canWrite(): boolean {
  return token() !== null
}

async function call(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  const given = token()
  if (given) headers.Authorization = `Bearer ${given}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const answer = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (!answer.ok) {
    let code = 'http_' + answer.status
    let message = answer.statusText || 'request failed'
    try {
      const parsed = (await answer.json()) as { error?: { code?: string; message?: string } }
      code = parsed.error?.code ?? code
      message = parsed.error?.message ?? message
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(answer.status, code, message)
  }
  return answer
}

export async function get<T>(path: string): Promise<T> {
  return (await (await call('GET', path)).json()) as T
}

export async function text(path: string): Promise<string> {
  return (await call('GET', path)).text()
}

export async function post<T>(path: string, body?: unknown): Promise<T> {
  const answer = await call('POST', path, body)
  return (answer.status === 204 ? {} : await answer.json()) as T
}

export async function del<T>(path: string): Promise<T> {
  const answer = await call('DELETE', path)
  return (answer.status === 204 ? {} : await answer.json()) as T
}

/** Describe a failure for a message line. */
export function problem(err: unknown): string {
  if (err instanceof ApiError) return `${err.status} ${err.code}: ${err.message}`
  return err instanceof Error ? err.message : String(err)
}

/** A list out of an answer that is a list or an object holding one (`items`, `rollouts`...). */
export function listOf<T>(answer: unknown, ...keys: string[]): T[] {
  if (Array.isArray(answer)) return answer as T[]
  if (answer && typeof answer === 'object') {
    for (const key of [...keys, 'items']) {
      const value = (answer as Record<string, unknown>)[key]
      if (Array.isArray(value)) return value as T[]
    }
  }
  return []
}
