// Display helpers. Times are shown in UTC, as the API and the client's billing count them.
export function time(v: string | null | undefined): string {
  if (!v) return '—'
  const d = new Date(v)
  if (isNaN(d.getTime())) return String(v)
  return d.toISOString().replace('T', ' ').slice(0, 19)
}

export function num(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—'
  return Number(v).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 })
}

export function pct(v: number | null | undefined, digits = 1): string {
  if (v === null || v === undefined) return '—'
  return `${num(v, digits)}%`
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '—'
  const s = Math.round(seconds)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  const h = Math.floor(s / 3600)
  return h < 48 ? `${h} h ${Math.floor((s % 3600) / 60)} min` : `${Math.floor(h / 24)} d ${h % 24} h`
}

export function usd(v: number | null | undefined): string {
  if (v === null || v === undefined) return '—'
  return `$${Number(v).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`
}

type TagType = 'success' | 'warning' | 'danger' | 'info' | 'primary'
const TASK_TAGS: Record<string, TagType> = {
  completed: 'success',
  running: 'primary',
  pending: 'info',
  scheduled: 'info',
  waiting_for_accounts: 'warning',
  paused: 'warning',
  failed: 'danger',
  cancelled: 'info',
  rejected: 'danger',
}
export const taskTag = (s: string): TagType => TASK_TAGS[s] || 'info'

const ACCOUNT_TAGS: Record<string, TagType> = {
  active: 'success',
  cooling_down: 'warning',
  rate_limited: 'warning',
  needs_login: 'danger',
  suspended: 'danger',
  banned: 'danger',
  disabled: 'info',
}
export const accountTag = (s: string): TagType => ACCOUNT_TAGS[s] || 'info'

const PROXY_TAGS: Record<string, TagType> = { healthy: 'success', unchecked: 'info', dead: 'danger', disabled: 'info' }
export const proxyTag = (s: string): TagType => PROXY_TAGS[s] || 'info'

export const label = (s: string | null | undefined): string => (s ? s.replace(/_/g, ' ') : '—')

/** The money figure of an estimate or cost answer: `cost_usd` is a breakdown with `total`. */
export function totalUsd(x: any): number | null {
  if (!x) return null
  const c = x.cost_usd ?? x.cost ?? x.total_cost
  if (c === null || c === undefined) return null
  return typeof c === 'object' ? c.total ?? null : Number(c)
}
