// One fetch wrapper for the whole console: same-origin session cookie, the CSRF header on
// every state-changing request, and the API's errors turned into something a form can show
// (422 `detail: [{field, message}]` → a message per field).
import { session, signedOut } from './session'

export const API = '/api/v1'

export class ApiError extends Error {
  status: number
  /** field name (as the API names it, e.g. "end_time" or "filters.lang") → message */
  fields: Record<string, string>
  constructor(status: number, message: string, fields: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.fields = fields
  }
}

type Detail = string | { field?: string | null; message?: string; msg?: string; loc?: unknown[] }[]

function parseError(status: number, body: unknown): ApiError {
  const fields: Record<string, string> = {}
  let message = `HTTP ${status}`
  const b = body as { detail?: Detail; message?: string; error?: string } | null
  const detail = b?.detail
  if (typeof detail === 'string') message = detail
  else if (Array.isArray(detail)) {
    const parts: string[] = []
    for (const d of detail) {
      const field = d.field ?? (Array.isArray(d.loc) ? d.loc.filter((x) => x !== 'body' && x !== 'query').join('.') : '')
      const text = d.message ?? d.msg ?? 'invalid'
      if (field) fields[field] = fields[field] ? `${fields[field]}; ${text}` : text
      parts.push(field ? `${field}: ${text}` : text)
    }
    message = parts.join('; ') || message
  } else if (b?.message) message = b.message
  else if (b?.error) message = b.error
  if (status === 403 && message === `HTTP ${status}`) message = 'Your role may not do this'
  return new ApiError(status, message, fields)
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

export interface RequestOptions {
  /** a raw body (e.g. an import file) instead of JSON */
  text?: string
  /** don't redirect to the sign-in page on 401 (the sign-in call itself) */
  quiet401?: boolean
}

export async function request<T = unknown>(
  method: string,
  path: string,
  body?: unknown,
  opts: RequestOptions = {},
): Promise<T> {
  return (await send<T>(method, path, body, opts)).data
}

async function send<T>(
  method: string,
  path: string,
  body?: unknown,
  opts: RequestOptions = {},
): Promise<{ data: T; headers: Headers }> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  if (UNSAFE.has(method) && session.csrf) headers['X-CSRF-Token'] = session.csrf
  let payload: BodyInit | undefined
  if (opts.text !== undefined) {
    headers['Content-Type'] = 'text/plain'
    payload = opts.text
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json'
    payload = JSON.stringify(body)
  }
  const res = await fetch(path.startsWith('/') ? path : `${API}/${path}`, {
    method,
    headers,
    body: payload,
    credentials: 'same-origin',
  })
  const type = res.headers.get('content-type') || ''
  const data = type.includes('json') ? await res.json().catch(() => null) : await res.text()
  if (!res.ok) {
    if (res.status === 401 && !opts.quiet401) signedOut()
    throw parseError(res.status, data)
  }
  return { data: data as T, headers: res.headers }
}

export const get = <T = unknown>(path: string, query?: Record<string, unknown>) =>
  request<T>('GET', withQuery(path, query))
/** One page of a list route: the body is the page (the client's design answers a bare JSON
 * list), the exact number of matches is the X-Total-Count header. */
export interface Page<T> {
  items: T[]
  total: number
}

export async function getPage<T = unknown>(path: string, query?: Record<string, unknown>): Promise<Page<T>> {
  const { data, headers } = await send<T[]>('GET', withQuery(path, query))
  const total = headers.get('X-Total-Count')
  if (!Array.isArray(data) || total === null) throw new ApiError(200, `${path}: not a paged list (no X-Total-Count)`)
  return { items: data, total: Number(total) }
}
export const post = <T = unknown>(path: string, body?: unknown, opts?: RequestOptions) =>
  request<T>('POST', path, body, opts)
export const patch = <T = unknown>(path: string, body?: unknown) => request<T>('PATCH', path, body)
export const del = <T = unknown>(path: string) => request<T>('DELETE', path)

/** `path?a=1&b=x`, leaving out empty values (the API answers 422 to unknown or empty ones). */
export function withQuery(path: string, query?: Record<string, unknown>): string {
  if (!query) return path
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue
    q.set(k, String(v))
  }
  const s = q.toString()
  return s ? `${path}?${s}` : path
}

export function url(path: string, query?: Record<string, unknown>): string {
  return withQuery(`${API}/${path}`, query)
}
