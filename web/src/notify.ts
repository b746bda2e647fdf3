// Toasts and confirmations (used from scripts, so their CSS is imported here, not by the
// template resolver).
import { ElMessage, ElMessageBox } from 'element-plus'
import 'element-plus/es/components/message/style/css'
import 'element-plus/es/components/message-box/style/css'
import { ApiError } from './api'

export function ok(text: string): void {
  ElMessage({ type: 'success', message: text, showClose: true })
}

export function fail(e: unknown): void {
  const text = e instanceof ApiError ? e.message : e instanceof Error ? e.message : String(e)
  ElMessage({ type: 'error', message: text, showClose: true, duration: 6000 })
}

export async function confirm(text: string, title = 'Please confirm'): Promise<boolean> {
  try {
    await ElMessageBox.confirm(text, title, { type: 'warning', confirmButtonText: 'Yes', cancelButtonText: 'No' })
    return true
  } catch {
    return false
  }
}

export async function ask(text: string, title: string, value = ''): Promise<string | null> {
  try {
    const r = await ElMessageBox.prompt(text, title, { inputValue: value, confirmButtonText: 'OK', cancelButtonText: 'Cancel' })
    return r.value
  } catch {
    return null
  }
}
