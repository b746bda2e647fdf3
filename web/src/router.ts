import { createRouter, createWebHashHistory } from 'vue-router'
import { request } from './api'
import { session, setUser, can, maybeSignedIn, type Role } from './session'

// Hash history: the gateway serves one index.html at /console/, deep links need no fallback.
// Every page is its own chunk, so the sign-in page ships only what it renders.
const router = createRouter({
  history: createWebHashHistory(),
  routes: [
    { path: '/login', name: 'login', component: () => import('./views/Login.vue'), meta: { public: true, title: 'Sign in' } },
    {
      path: '/',
      component: () => import('./views/Shell.vue'),
      children: [
        { path: '', redirect: '/data/tweets' },
        { path: 'data/tweets', name: 'tweets', component: () => import('./views/TweetSearch.vue'), meta: { title: 'Tweet search' } },
        { path: 'data/users', name: 'users', component: () => import('./views/UserSearch.vue'), meta: { title: 'Users' } },
        { path: 'tasks', name: 'tasks', component: () => import('./views/Tasks.vue'), meta: { title: 'Tasks' } },
        { path: 'tasks/:id', name: 'task', component: () => import('./views/TaskDetail.vue'), meta: { title: 'Task' }, props: true },
        { path: 'accounts', name: 'accounts', component: () => import('./views/Accounts.vue'), meta: { title: 'Accounts' } },
        { path: 'proxies', name: 'proxies', component: () => import('./views/Proxies.vue'), meta: { title: 'Proxies' } },
        { path: 'analytics', name: 'analytics', component: () => import('./views/Analytics.vue'), meta: { title: 'Analytics' } },
        { path: 'settings', name: 'settings', component: () => import('./views/Settings.vue'), meta: { title: 'Settings', need: 'operate' } },
      ],
    },
    { path: '/:rest(.*)*', redirect: '/' },
  ],
})

router.beforeEach(async (to) => {
  if (!session.checked && !maybeSignedIn()) session.checked = true
  if (!session.checked) {
    try {
      setUser(await request<{ username: string; role: Role; csrf_token?: string }>('GET', '/api/v1/auth/me', undefined, { quiet401: true }))
    } catch {
      localStorage.removeItem('xget.signedIn') // expired or signed out elsewhere
      session.checked = true
    }
  }
  if (to.meta.public) return true
  if (!session.username) return { name: 'login', query: { next: to.fullPath } }
  const need = to.meta.need as 'operate' | 'admin' | undefined
  if (need && !can(need)) return { name: 'tweets' }
  return true
})

router.afterEach((to) => {
  document.title = `${(to.meta.title as string) || 'Console'} · XGet`
})

export default router
