import { createApp } from 'vue'
import App from './App.vue'
import router from './router'
import './style.css'

const app = createApp(App)
// Element Plus's page-size select in el-pagination has no accessible name: give it one.
app.directive('label-sizes', {
  mounted(el: HTMLElement) {
    el.querySelectorAll('.el-pagination__sizes input').forEach((i) => i.setAttribute('aria-label', 'Rows per page'))
  },
})
app.use(router).mount('#app')
