// Who is signed in, and what their role may do. The server enforces every role; the console
// only hides what would be refused.
import { reactive } from 'vue'
import router from './router'

export type Role = 'admin' | 'operator' | 'viewer'

export const session = reactive({
  username: '' as string,
  role: '' as Role | '',
  csrf: '' as string,
  checked: false,
})

const RANK: Record<string, number> = { viewer: 1, operator: 2, admin: 3 }

/** operate: tasks, accounts, proxies, replays; admin: users and settings too. */
export function can(what: 'operate' | 'admin'): boolean {
  const need = what === 'admin' ? 3 : 2
  return (RANK[session.role] || 0) >= need
}

// Only a hint that a session cookie may exist (the cookie itself is HttpOnly): without it the
// console goes straight to the sign-in page instead of asking /auth/me for a certain 401.
const HINT = 'xget.signedIn'
export const maybeSignedIn = (): boolean => localStorage.getItem(HINT) === '1'

export function setUser(me: { username: string; role: Role; csrf_token?: string | null }): void {
  localStorage.setItem(HINT, '1')
  session.username = me.username
  session.role = me.role
  if (me.csrf_token) session.csrf = me.csrf_token
  session.checked = true
}

export function signedOut(): void {
  localStorage.removeItem(HINT)
  session.username = ''
  session.role = ''
  session.csrf = ''
  session.checked = true
  const here = router.currentRoute.value
  if (here.name !== 'login') router.push({ name: 'login', query: { next: here.fullPath } })
}
