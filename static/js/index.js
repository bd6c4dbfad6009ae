window.app = Vue.createApp({
  el: '#vue',
  mixins: [windowMixin],
  data() {
    return {}
  }
})
