// Which API routes this gateway offers, from its OpenAPI document (read once per page load),
// so a page uses an optional figure (e.g. a task's actual cost) only where the server has it
// instead of asking and getting a 404.
let paths: Promise<Set<string>> | null = null

export function offers(path: string): Promise<boolean> {
  if (!paths) {
    paths = fetch('/openapi.json', { credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : { paths: {} }))
      .then((doc: { paths?: Record<string, unknown> }) => new Set(Object.keys(doc.paths || {})))
      .catch(() => new Set<string>())
  }
  return paths.then((p) => p.has(path))
}
