import { onMounted, onUnmounted } from 'vue'

/** Run `fn` now and every `ms` while the component is mounted; skipped while the tab is
 * hidden, and never two at once (a slow answer delays the next poll instead of piling up). */
export function usePolling(fn: () => Promise<unknown>, ms: number): void {
  let timer: number | undefined
  let stopped = false
  async function tick() {
    if (stopped) return
    if (document.visibilityState !== 'hidden') {
      try {
        await fn()
      } catch {
        /* the caller reports its own errors */
      }
    }
    if (!stopped) timer = window.setTimeout(tick, ms)
  }
  onMounted(tick)
  onUnmounted(() => {
    stopped = true
    window.clearTimeout(timer)
  })
}
