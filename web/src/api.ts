// Every call to the API goes through here: URLs relative to the page (so the app works behind any
// host), the bearer token, contract errors turned into ApiError, and the serving backend noted.
import { auth } from './session'
import { noteApi } from './status'

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

/** `path` ("api/sessions") resolved against the page's own address. */
export function appUrl(path: string): string {
  return new URL(path.replace(/^\//, ''), document.baseURI).toString()
}

/** The ws:// or wss:// URL of `path`, with the token as `?token=` (browsers cannot set headers). */
export function socketUrl(path: string): string {
  const url = new URL(appUrl(path))
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  if (auth.token) url.searchParams.set('token', auth.token)
  return url.toString()
}

export function authHeaders(): Record<string, string> {
  return auth.token ? { Authorization: `Bearer ${auth.token}` } : {}
}

let onUnauthorized: () => void = () => undefined

/** What to do when the token is refused (expired, revoked): the app signs the user out. */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler
}

export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<T> {
  let response: Response
  try {
    response = await fetch(appUrl(path), {
      method,
      headers: {
        ...authHeaders(),
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch {
    throw new ApiError(0, 'network_error', 'The server cannot be reached; try again.')
  }
  noteApi(response.headers, path)
  return (await parse(response.status, await response.text(), path)) as T
}

function parse(status: number, text: string, path: string): unknown {
  let value: unknown = undefined
  if (text !== '') {
    try {
      value = JSON.parse(text)
    } catch {
      throw new ApiError(status, 'bad_response', `Unexpected answer from the server (${status}).`)
    }
  }
  if (status >= 200 && status < 300) return value
  const error = (value as { error?: { code?: string; message?: string } } | undefined)?.error
  const code = error?.code ?? 'error'
  if (status === 401 && !path.startsWith('api/auth/login')) onUnauthorized()
  throw new ApiError(status, code, error?.message ?? `Request failed (${status}).`)
}

/** Multipart upload with progress events (fetch cannot report upload progress; XHR can). */
export function upload<T>(
  path: string,
  form: FormData,
  onProgress: (fraction: number) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('POST', appUrl(path))
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value)
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total)
    }
    xhr.onerror = () => reject(new ApiError(0, 'network_error', 'The upload was interrupted.'))
    xhr.onload = () => {
      noteApi({ get: (name) => xhr.getResponseHeader(name) }, path)
      try {
        resolve(parse(xhr.status, xhr.responseText, path) as T)
      } catch (err) {
        reject(err)
      }
    }
    xhr.send(form)
  })
}

/** Which backend the proxy routes `path` to right now, for the caller of this page (a HEAD
 * request; the proxy marks every answer, even a refusal, with X-Banyan-Backend). Browsers hide a
 * WebSocket handshake's headers, so this is how a socket learns where it will land. */
export async function routeOf(path: string): Promise<string | null> {
  try {
    const response = await fetch(appUrl(path), {
      method: 'HEAD',
      headers: authHeaders(),
      cache: 'no-store',
    })
    return response.headers.get('X-Banyan-Backend')
  } catch {
    return null
  }
}
