// DCA Admin dashboard. Every figure comes from the extension's REST API
// (/satmachineadmin/api/v1/dca); nothing here computes money, it only formats.

const API = '/satmachineadmin/api/v1/dca'
const WAITING = ['pending', 'waiting_data', 'waiting_dispense', 'flagged', 'stale']
const SETTLEMENT_STATUSES = [
  'pending',
  'waiting_data',
  'waiting_dispense',
  'flagged',
  'ready',
  'distributing',
  'completed',
  'scheduled',
  'payout_failed',
  'dismissed',
  'before_upgrade',
  'stale'
]
const STATUS_COLORS = {
  active: 'positive',
  confirmed: 'positive',
  completed: 'positive',
  scheduled: 'teal',
  resolved: 'positive',
  pending: 'orange',
  waiting_data: 'orange',
  waiting_dispense: 'orange',
  ready: 'blue',
  distributing: 'blue',
  resolving: 'blue',
  open: 'red',
  failed: 'negative',
  payout_failed: 'negative',
  flagged: 'negative',
  cancelled: 'grey',
  dismissed: 'grey',
  before_upgrade: 'purple',
  stale: 'deep-orange',
  inactive: 'grey'
}

// A spreadsheet runs a cell that starts with = + - @ (or tab / CR) as a
// formula: usernames, notes and memos are typed by others, so every exported
// cell like that is prefixed with ' (OWASP's CSV-injection rule).
function csvSafe(value) {
  const text = value === undefined || value === null ? '' : String(value)
  return /^[=+\-@\t\r]/.test(text) ? "'" + text : text
}
window.satmachineCsvSafe = csvSafe

// Two clients may share a username (anyone can register through the client
// extension): the wallet, the user, the date and the state tell them apart.
function clientLabel(c) {
  const marks = [
    c.status === 'active' ? null : c.status,
    c.is_new ? 'NEW, not reviewed' : null,
    c.attention ? 'needs attention' : null
  ].filter(Boolean)
  return (
    `${c.username || shortId(c.id)} · wallet ${shortId(c.wallet_id)}` +
    ` · user ${shortId(c.user_id)} · since ${String(c.created_at).slice(0, 10)}` +
    (marks.length ? ` (${marks.join(', ')})` : '')
  )
}

function shortId(value) {
  return value ? String(value).slice(0, 8) + '…' : ''
}

window.app = Vue.createApp({
  el: '#vue',
  mixins: [windowMixin],
  data() {
    return {
      tab: 'overview',
      refreshing: false,
      polling: false,
      summary: null,
      config: null,
      configLoaded: false,
      clients: [],
      // Every client seen (table pages, picker searches), for names by id.
      clientIndex: {},
      // The client pickers' options: what the server found for the search.
      clientPicker: [],
      deposits: [],
      settlements: [],
      chartDays: [],
      chartHasData: false,
      reconciliations: [],
      details: {},
      settlementStatuses: SETTLEMENT_STATUSES,
      clientsTable: {
        loading: false,
        search: '',
        pagination: {
          page: 1,
          rowsPerPage: 20,
          rowsNumber: 0,
          sortBy: 'username',
          descending: false
        },
        columns: [
          {
            name: 'username',
            label: 'Name',
            field: 'username',
            sortable: true,
            align: 'left'
          },
          {
            name: 'wallet',
            label: 'Wallet',
            field: row => row.wallet_name || row.wallet_id,
            align: 'left'
          },
          {
            name: 'dca_mode',
            label: 'Mode',
            field: 'dca_mode',
            sortable: true,
            align: 'left',
            format: (val, row) =>
              val === 'fixed' && row && row.fixed_mode_daily_limit != null
                ? `fixed · ${this.fiat(row.fixed_mode_daily_limit, row.fixed_limit_currency)}/day`
                : val
          },
          {
            name: 'fixed_today',
            label: 'Today (fixed)',
            field: 'fixed_used_today',
            align: 'left',
            format: (val, row) =>
              row && row.dca_mode === 'fixed' && val != null
                ? `${this.fiat(val, row.fixed_limit_currency)} used, ` +
                  `${this.fiat(row.fixed_allowance_left, row.fixed_limit_currency)} left`
                : ''
          },
          {
            name: 'status',
            label: 'Status',
            field: 'status',
            sortable: true,
            align: 'left'
          },
          {
            name: 'confirmed_deposits',
            label: 'Deposited',
            field: 'confirmed_deposits',
            sortable: true,
            format: (val, row) => this.fiat(val, row && row.currency)
          },
          {
            name: 'distributed_fiat',
            label: 'Distributed',
            field: 'distributed_fiat',
            sortable: true,
            format: (val, row) => this.fiat(val, row && row.currency)
          },
          {
            name: 'distributed_sats',
            label: 'Sats received',
            field: 'distributed_sats',
            sortable: true,
            format: val => this.sats(val)
          },
          {
            name: 'remaining_balance',
            label: 'Remaining',
            field: 'remaining_balance',
            sortable: true,
            format: (val, row) => this.fiat(val, row && row.currency)
          },
          { name: 'actions', label: '', field: 'id', align: 'right' }
        ]
      },
      depositsTable: {
        loading: false,
        client: null,
        status: null,
        pagination: {
          page: 1,
          rowsPerPage: 20,
          rowsNumber: 0,
          sortBy: 'created_at',
          descending: true
        },
        columns: [
          {
            name: 'created_at',
            label: 'Created',
            field: 'created_at',
            sortable: true,
            align: 'left',
            format: val => this.date(val)
          },
          {
            name: 'client',
            label: 'Client',
            field: row => row.username || this.clientName(row.client_id),
            align: 'left'
          },
          {
            name: 'amount',
            label: 'Amount',
            field: 'amount',
            sortable: true,
            format: (val, row) => this.fiat(val, row && row.currency)
          },
          {
            name: 'status',
            label: 'Status',
            field: 'status',
            sortable: true,
            align: 'left'
          },
          { name: 'notes', label: 'Notes', field: 'notes', align: 'left' },
          {
            name: 'confirmed_at',
            label: 'Confirmed',
            field: 'confirmed_at',
            align: 'left',
            format: val => this.date(val)
          },
          { name: 'actions', label: '', field: 'id', align: 'right' }
        ]
      },
      settlementsTable: {
        loading: false,
        status: null,
        pagination: {
          page: 1,
          rowsPerPage: 20,
          rowsNumber: 0,
          sortBy: 'paid_at',
          descending: true
        },
        columns: [
          {
            name: 'paid_at',
            label: 'Paid',
            field: 'paid_at',
            sortable: true,
            align: 'left',
            format: val => this.date(val)
          },
          {
            name: 'amount_sats',
            label: 'Sats',
            field: 'amount_sats',
            sortable: true,
            format: val => this.sats(val)
          },
          {
            name: 'fiat_amount',
            label: 'Cash',
            field: 'fiat_amount',
            format: (val, row) => this.fiat(val, row && row.fiat_code)
          },
          {
            name: 'commission_sats',
            label: 'Commission',
            field: 'commission_sats',
            format: val => this.sats(val)
          },
          {
            name: 'distributed_sats',
            label: 'To clients',
            field: 'distributed_sats',
            format: val => this.sats(val)
          },
          {
            name: 'orphan_sats',
            label: 'Orphan',
            field: 'orphan_sats',
            format: val => this.sats(val)
          },
          {
            name: 'status',
            label: 'Status',
            field: 'status',
            sortable: true,
            align: 'left'
          }
        ]
      },
      payoutColumns: [
        {
          name: 'username',
          label: 'Client',
          field: row => row.username || this.clientName(row.client_id),
          align: 'left'
        },
        {
          name: 'amount_sats',
          label: 'Sats',
          field: 'amount_sats',
          format: val => this.sats(val)
        },
        {
          name: 'amount_fiat',
          label: 'Fiat',
          field: 'amount_fiat',
          format: val => this.fiat(val, this.detailCurrency)
        },
        {
          name: 'exchange_rate',
          label: 'Rate (sats/unit)',
          field: 'exchange_rate',
          format: val => (val == null ? '' : Number(val).toFixed(3))
        },
        { name: 'status', label: 'Status', field: 'status', align: 'left' },
        {
          name: 'error',
          label: 'Error',
          field: 'error',
          align: 'left',
          classes: 'hidden',
          headerClasses: 'hidden'
        }
      ],
      detailCurrency: 'GTQ',
      reconTable: {
        loading: false,
        status: 'open',
        pagination: {
          page: 1,
          rowsPerPage: 20,
          rowsNumber: 0,
          sortBy: 'created_at',
          descending: true
        },
        columns: [
          {
            name: 'created_at',
            label: 'Created',
            field: 'created_at',
            sortable: true,
            align: 'left',
            format: val => this.date(val)
          },
          {
            name: 'settlement_id',
            label: 'Settlement',
            field: 'settlement_id',
            align: 'left',
            format: val => shortId(val)
          },
          {
            name: 'orphan_sats',
            label: 'Sats',
            field: 'orphan_sats',
            sortable: true,
            format: val => this.sats(val)
          },
          {
            name: 'orphan_fiat',
            label: 'Fiat',
            field: 'orphan_fiat',
            format: (val, row) => this.fiat(val, row && row.fiat_code)
          },
          {
            name: 'status',
            label: 'Status',
            field: 'status',
            sortable: true,
            align: 'left'
          },
          {
            name: 'resolution',
            label: 'Resolution',
            field: 'resolution',
            align: 'left'
          },
          {
            name: 'resolved_by',
            label: 'By',
            field: 'resolved_by',
            align: 'left',
            format: val => shortId(val)
          },
          {
            name: 'resolved_at',
            label: 'Resolved',
            field: 'resolved_at',
            align: 'left',
            format: val => this.date(val)
          },
          { name: 'note', label: 'Note', field: 'note', align: 'left' },
          { name: 'actions', label: '', field: 'id', align: 'right' }
        ]
      },
      depositForm: { client_id: null, amount: '', currency: 'GTQ', notes: '' },
      clientDialog: { show: false, data: {} },
      modeDialog: { show: false, id: null, name: '', data: {} },
      scheduled: null,
      deliveryOptions: [
        { label: 'As settlements arrive', value: 'on_settlement' },
        { label: 'Once a day at a set time', value: 'daily' },
        { label: 'N times a day', value: 'times_per_day' }
      ],
      scheduledColumns: [
        {
          name: 'username',
          label: 'Client',
          field: row => row.username || shortId(row.client_id),
          align: 'left'
        },
        {
          name: 'amount_sats',
          label: 'Sats',
          field: 'amount_sats',
          format: val => this.sats(val)
        },
        {
          name: 'amount_fiat',
          label: 'Fiat',
          field: 'amount_fiat',
          format: (val, row) => this.fiat(val, row && row.currency)
        },
        {
          name: 'deliver_after',
          label: 'Delivered at',
          field: 'deliver_after',
          align: 'left',
          format: val => this.date(val)
        },
        {
          name: 'settlement_id',
          label: 'Settlement',
          field: 'settlement_id',
          align: 'left',
          format: val => shortId(val)
        }
      ],
      editDepositDialog: { show: false, id: null, data: {} },
      cashOutDialog: { show: false, id: null, data: {} },
      dismissDialog: { show: false, id: null, reason: '' },
      resolveDialog: {
        show: false,
        row: null,
        action: 'operator_funds',
        wallet_id: null,
        client_id: null,
        note: '',
        saving: false
      },
      resolveActions: [
        {
          label: 'Operator funds: the sats stay in the source wallet',
          value: 'operator_funds'
        },
        { label: 'Send to a wallet', value: 'send_to_wallet' },
        {
          label: 'Attribute to a client (a confirmed deposit, then paid)',
          value: 'attribute_to_client'
        }
      ],
      historyDialog: { show: false, entries: [] },
      dryRunForm: {
        amount_sats: 100000,
        fiat_amount: '500',
        fiat_code: 'GTQ',
        commission_pct: 5.5,
        discount: 0
      },
      dryRunResult: null,
      dryRunColumns: [
        {
          name: 'username',
          label: 'Client',
          field: row => row.username || shortId(row.client_id),
          align: 'left'
        },
        { name: 'sats', label: 'Sats', field: 'sats', format: val => this.sats(val) },
        {
          name: 'fiat',
          label: 'Fiat',
          field: 'fiat',
          format: val =>
            this.fiat(val, this.dryRunResult && this.dryRunResult.fiat_code)
        },
        {
          name: 'capped',
          label: 'Whole balance',
          field: 'capped',
          format: val => (val ? 'yes' : '')
        },
        { name: 'mode', label: 'Mode', field: 'mode', align: 'left' },
        {
          name: 'limited',
          label: 'Daily limit reached',
          field: 'limited',
          format: val => (val ? 'yes' : '')
        }
      ],
      configForm: {},
      savingConfig: false,
      testingConnection: false,
      connectionResult: null,
      pollResult: null
    }
  },
  computed: {
    maxDailyLimit() {
      const c = this.config
      if (!c) return '2000 GTQ'
      return this.fiat(c.effective_max_daily_limit, c.limit_currency || 'GTQ')
    },
    scheduleText() {
      const s = this.scheduled
      if (!s) return ''
      const when =
        s.fixed_delivery === 'daily'
          ? `once a day at ${s.fixed_delivery_time}`
          : s.fixed_delivery === 'times_per_day'
            ? `${s.fixed_delivery_times} times a day`
            : 'as settlements arrive'
      const next = s.next_slot ? `; next ${this.date(s.next_slot)}` : ''
      return `Delivered ${when} (${s.time_zone})${next}`
    },
    adminKey() {
      const wallets = (this.g.user && this.g.user.wallets) || []
      return wallets.length ? wallets[0].adminkey : null
    },
    currency() {
      return (
        (this.config && this.config.limit_currency) ||
        (this.clients[0] && this.clients[0].currency) ||
        'GTQ'
      )
    },
    walletOptions() {
      const wallets = (this.g.user && this.g.user.wallets) || []
      return wallets.map(w => ({ label: `${w.name} (${shortId(w.id)})`, value: w.id }))
    },
    clientOptions() {
      return this.clientPicker.map(c => ({ label: clientLabel(c), value: c.id }))
    },
    waitingCount() {
      if (!this.summary) return 0
      const byStatus = this.summary.settlements_by_status || {}
      return WAITING.reduce((n, s) => n + (byStatus[s] || 0), 0)
    },
    stats() {
      const s = this.summary
      if (!s) return []
      const byStatus = s.settlements_by_status || {}
      return [
        {
          key: 'source-balance',
          label: 'Source wallet',
          value:
            s.source_wallet_balance_sats == null
              ? '—'
              : this.sats(s.source_wallet_balance_sats),
          detail:
            this.config && this.config.source_wallet_id
              ? this.walletName(this.config.source_wallet_id)
              : 'not configured'
        },
        {
          key: 'deposited',
          label: 'Deposited (confirmed)',
          value: this.fiat(s.deposits_confirmed, this.currency),
          detail: Number(s.deposits_pending)
            ? this.fiat(s.deposits_pending, this.currency) + ' pending'
            : 'nothing pending'
        },
        {
          key: 'distributed',
          label: 'Distributed to clients',
          value: this.fiat(s.distributed_fiat, this.currency),
          detail:
            this.sats(s.distributed_sats) + ' in ' + s.payouts_confirmed + ' payouts'
        },
        {
          key: 'commission',
          label: 'Commission',
          value: this.sats(s.commission_sats),
          detail: s.settlements_processed + ' settlements processed'
        },
        {
          key: 'orphans',
          label: 'Open orphans',
          value: this.sats(s.open_orphan_sats),
          detail:
            s.open_orphans + ' open · ' + this.fiat(s.open_orphan_fiat, this.currency),
          alert: s.open_orphans > 0
        },
        {
          key: 'waiting',
          label: 'Settlements waiting',
          value: String(this.waitingCount),
          detail: (byStatus.flagged || 0) + ' flagged for you',
          alert: (byStatus.flagged || 0) > 0
        },
        {
          key: 'failed',
          label: 'Failed payouts',
          value: String(s.payouts_failed),
          detail:
            (byStatus.payout_failed || 0) +
            ' settlements to retry' +
            (s.legacy_unfinished_payouts
              ? `; ${s.legacy_unfinished_payouts} unfinished rows of the old ` +
                'extension (reserve nothing; void them from the API)'
              : ''),
          alert: s.payouts_failed > 0
        },
        {
          key: 'settled',
          label: 'Settled into LNbits',
          value: this.sats(s.settled_sats),
          detail: 'all ATM settlements'
        }
      ]
    }
  },
  methods: {
    // ------------------------------------------------------------ formatting
    sats(value) {
      if (value == null || value === '') return ''
      return LNbits.utils.formatSat(value) + ' sats'
    },
    fiat(value, code) {
      if (value == null || value === '') return ''
      const amount = Number(value)
      try {
        return new Intl.NumberFormat(window.i18n.global.locale, {
          style: 'currency',
          currency: code || this.currency,
          minimumFractionDigits: 2,
          maximumFractionDigits: 2
        }).format(amount)
      } catch (e) {
        return amount.toFixed(2) + ' ' + (code || '')
      }
    },
    date(value) {
      return value ? LNbits.utils.formatDate(value) : ''
    },
    dateOrNever(value) {
      return value ? LNbits.utils.formatDateFrom(value) : 'never'
    },
    statusColor(status) {
      return STATUS_COLORS[status] || 'grey'
    },
    clientName(clientId) {
      const client = this.clientIndex[clientId]
      return client ? client.username || shortId(client.id) : shortId(clientId)
    },
    walletName(walletId) {
      const wallet = ((this.g.user && this.g.user.wallets) || []).find(
        w => w.id === walletId
      )
      return wallet ? wallet.name : shortId(walletId)
    },
    validAmount(value) {
      return /^\d{1,10}(\.\d{1,2})?$/.test(String(value || '')) && Number(value) > 0
        ? true
        : 'A positive amount with at most two decimals'
    },
    needsData(settlement) {
      return WAITING.includes(settlement.status)
    },
    exportTable(columns, rows, name) {
      const safeColumns = columns
        .filter(c => c.name !== 'actions')
        .map(column => ({
          ...column,
          // LNbits formats each cell with `format`; ours runs last.
          format: value => csvSafe(column.format ? column.format(value) : value)
        }))
      LNbits.utils.exportCSV(safeColumns, rows, name)
    },

    // ------------------------------------------------------------- requests
    request(method, path, data) {
      return LNbits.api.request(method, API + path, this.adminKey, data)
    },
    async refreshAll() {
      this.refreshing = true
      try {
        await Promise.all([this.loadConfig(), this.loadClients()])
        await Promise.all([
          this.loadSummary(),
          this.loadDeposits(),
          this.loadSettlements(),
          this.loadReconciliations(),
          this.loadChart()
        ])
      } finally {
        this.refreshing = false
      }
    },
    async loadSummary() {
      try {
        const { data } = await this.request('GET', '/summary')
        this.summary = data
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    async loadConfig() {
      try {
        const { data } = await this.request('GET', '/config')
        this.config = data
        this.resetConfigForm()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      } finally {
        this.configLoaded = true
      }
    },
    // Every table pages, sorts and searches on the server: the dashboard
    // holds one page, however many rows there are.
    pageQuery(pagination, filters) {
      const p = pagination
      const query = new URLSearchParams({
        limit: p.rowsPerPage || 1000,
        offset: (p.page - 1) * (p.rowsPerPage || 0),
        sortby: p.sortBy,
        direction: p.descending ? 'desc' : 'asc'
      })
      for (const [key, value] of Object.entries(filters || {})) {
        if (value !== null && value !== undefined && value !== '') query.set(key, value)
      }
      return query
    },
    async loadPage(table, path, props, filters) {
      if (props && props.pagination) table.pagination = props.pagination
      if (!props) table.pagination = { ...table.pagination, page: 1 }
      table.loading = true
      try {
        const response = await this.request(
          'GET',
          `${path}?${this.pageQuery(table.pagination, filters)}`
        )
        const body = response.data
        const rows = Array.isArray(body) ? body : body.data
        const total = Array.isArray(body)
          ? Number(response.headers['x-total-count'] || rows.length)
          : body.total
        table.pagination = { ...table.pagination, rowsNumber: total }
        return rows
      } catch (error) {
        LNbits.utils.notifyApiError(error)
        return null
      } finally {
        table.loading = false
      }
    },
    rememberClients(clients) {
      const index = { ...this.clientIndex }
      for (const client of clients) index[client.id] = client
      this.clientIndex = index
    },
    async loadClients(props) {
      const rows = await this.loadPage(this.clientsTable, '/clients', props, {
        search: this.clientsTable.search
      })
      if (rows) {
        this.clients = rows
        this.rememberClients(rows)
      }
      await this.loadScheduled()
    },
    // q-select @filter: the pickers search the server as the operator types.
    async filterClients(value, update, abort) {
      const text = String(value || '')
      // fill-input writes the chosen client's label into the field: that is
      // a choice made, not a search (and must not reopen the menu).
      if (text && this.clientPicker.some(c => clientLabel(c) === text)) {
        abort()
        return
      }
      const query = new URLSearchParams({
        search: text,
        limit: 30,
        sortby: 'username'
      })
      try {
        const { data } = await this.request('GET', '/clients?' + query)
        this.rememberClients(data)
        update(() => {
          this.clientPicker = data
        })
      } catch (error) {
        update(() => {})
        LNbits.utils.notifyApiError(error)
      }
    },
    async loadDeposits(props) {
      const rows = await this.loadPage(this.depositsTable, '/deposits', props, {
        client_id: this.depositsTable.client,
        status: this.depositsTable.status
      })
      if (rows) this.deposits = rows
    },
    // The CSV buttons export every row (a page of 1000 at a time), not the
    // page on screen.
    async exportAll(path, columns, name, filters) {
      const rows = []
      try {
        for (let offset = 0; ; offset += 1000) {
          const query = new URLSearchParams({
            limit: 1000,
            offset,
            sortby: 'created_at'
          })
          for (const [key, value] of Object.entries(filters || {})) {
            if (value) query.set(key, value)
          }
          const { data } = await this.request('GET', `${path}?${query}`)
          const page = Array.isArray(data) ? data : data.data
          rows.push(...page)
          if (page.length < 1000) break
        }
      } catch (error) {
        LNbits.utils.notifyApiError(error)
        return
      }
      this.exportTable(columns, rows, name)
    },
    async loadSettlements(props) {
      const table = this.settlementsTable
      if (props && props.pagination) table.pagination = props.pagination
      const p = table.pagination
      const query = new URLSearchParams({
        limit: p.rowsPerPage || 1000,
        offset: (p.page - 1) * (p.rowsPerPage || 0),
        sortby: p.sortBy || 'paid_at',
        direction: p.descending ? 'desc' : 'asc'
      })
      if (table.status) query.set('status', table.status)
      table.loading = true
      try {
        const { data } = await this.request('GET', '/settlements?' + query)
        this.settlements = data.data
        table.pagination = { ...p, rowsNumber: data.total }
        // Open rows show their detail: keep it fresh.
        for (const id of Object.keys(this.details)) {
          if (this.settlements.some(s => s.id === id)) this.loadDetail(id)
        }
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      } finally {
        table.loading = false
      }
    },
    async loadDetail(id) {
      try {
        const { data } = await this.request('GET', '/settlements/' + id)
        this.detailCurrency = data.fiat_code || this.currency
        this.details = { ...this.details, [id]: data }
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    toggleSettlement(props) {
      props.expand = !props.expand
      if (props.expand) this.loadDetail(props.row.id)
    },
    async loadReconciliations(props) {
      const rows = await this.loadPage(this.reconTable, '/reconciliations', props, {
        status: this.reconTable.status
      })
      if (rows) this.reconciliations = rows
    },
    async loadChart() {
      try {
        const { data } = await this.request('GET', '/stats/distributed-per-day?days=90')
        this.chartDays = data
        this.drawChart()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    drawChart() {
      const perDay = {}
      for (const entry of this.chartDays) perDay[entry.day] = entry.sats
      const days = Object.keys(perDay).sort()
      this.chartHasData = days.length > 0
      if (!this.chartHasData || !this.$refs.chart || typeof Chart === 'undefined')
        return
      if (this.chart) this.chart.destroy()
      this.chart = new Chart(this.$refs.chart.getContext('2d'), {
        type: 'bar',
        data: {
          labels: days,
          datasets: [
            {
              label: 'Sats distributed',
              data: days.map(d => perDay[d]),
              backgroundColor: 'rgba(25, 118, 210, 0.6)'
            }
          ]
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          plugins: { legend: { display: false } }
        }
      })
    },

    // ------------------------------------------------------------- clients
    openClientDialog() {
      this.clientDialog = {
        show: true,
        data: {
          wallet_id: '',
          username: '',
          dca_mode: 'flow',
          fixed_mode_daily_limit: ''
        }
      }
    },
    openModeDialog(client) {
      this.modeDialog = {
        show: true,
        id: client.id,
        name: client.username || client.id,
        data: {
          dca_mode: client.dca_mode === 'fixed' ? 'fixed' : 'flow',
          fixed_mode_daily_limit:
            client.fixed_mode_daily_limit == null
              ? ''
              : String(client.fixed_mode_daily_limit)
        }
      }
    },
    async saveMode() {
      const d = this.modeDialog.data
      const body = { dca_mode: d.dca_mode }
      if (d.dca_mode === 'fixed') body.fixed_mode_daily_limit = d.fixed_mode_daily_limit
      try {
        await this.request('PUT', `/clients/${this.modeDialog.id}`, body)
        this.modeDialog.show = false
        Quasar.Notify.create({ type: 'positive', message: 'Mode saved' })
        await this.loadClients()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    async loadScheduled() {
      try {
        const { data } = await this.request('GET', '/fixed/scheduled')
        this.scheduled = data
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    async registerClient() {
      const body = { ...this.clientDialog.data }
      if (body.dca_mode !== 'fixed') delete body.fixed_mode_daily_limit
      try {
        await this.request('POST', '/clients', body)
        this.clientDialog.show = false
        Quasar.Notify.create({ type: 'positive', message: 'Client registered' })
        await this.loadClients()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    async toggleClient(client) {
      const status = client.status === 'active' ? 'inactive' : 'active'
      try {
        await this.request('PUT', `/clients/${client.id}/status`, { status })
        await this.loadClients()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    openDepositFor(client) {
      this.rememberClients([client])
      if (!this.clientPicker.some(c => c.id === client.id)) {
        this.clientPicker = [client, ...this.clientPicker]
      }
      this.depositForm = {
        client_id: client.id,
        amount: '',
        currency: client.currency || this.currency,
        notes: ''
      }
      this.tab = 'deposits'
    },

    // ------------------------------------------------------------ deposits
    async addDeposit() {
      const form = this.depositForm
      try {
        await this.request('POST', '/deposits', {
          client_id: form.client_id,
          amount: form.amount,
          currency: (form.currency || this.currency).toUpperCase(),
          notes: form.notes || null
        })
        Quasar.Notify.create({
          type: 'positive',
          message: 'Deposit added (pending until confirmed)'
        })
        this.depositForm = { ...form, amount: '', notes: '' }
        await Promise.all([this.loadDeposits(), this.loadSummary(), this.loadClients()])
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    setDepositStatus(deposit, status) {
      return this.request('PUT', `/deposits/${deposit.id}/status`, { status })
        .then(() =>
          Promise.all([this.loadDeposits(), this.loadClients(), this.loadSummary()])
        )
        .catch(LNbits.utils.notifyApiError)
    },
    confirmDeposit(deposit) {
      LNbits.utils
        .confirmDialog(
          `Confirm ${this.fiat(deposit.amount, deposit.currency)} from ${this.clientName(deposit.client_id)}? ` +
            'It becomes part of the balance the next settlement distributes.'
        )
        .onOk(() => this.setDepositStatus(deposit, 'confirmed'))
    },
    cancelDeposit(deposit) {
      LNbits.utils
        .confirmDialog(
          `Cancel the pending deposit of ${this.fiat(deposit.amount, deposit.currency)}?`
        )
        .onOk(() => this.setDepositStatus(deposit, 'cancelled'))
    },
    openEditDeposit(deposit) {
      this.editDepositDialog = {
        show: true,
        id: deposit.id,
        data: {
          amount: String(Number(deposit.amount).toFixed(2)),
          currency: deposit.currency,
          notes: deposit.notes || ''
        }
      }
    },
    async saveDeposit() {
      const dialog = this.editDepositDialog
      try {
        await this.request('PUT', `/deposits/${dialog.id}`, {
          amount: dialog.data.amount,
          currency: (dialog.data.currency || '').toUpperCase(),
          notes: dialog.data.notes
        })
        dialog.show = false
        await this.loadDeposits()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },

    // --------------------------------------------------------- settlements
    async afterSettlementChange(id) {
      await Promise.all([
        this.loadSettlements(),
        this.loadSummary(),
        this.loadClients(),
        this.loadReconciliations()
      ])
      if (id) await this.loadDetail(id)
    },
    async retrySettlement(settlement) {
      try {
        await this.request('POST', `/settlements/${settlement.id}/retry`)
        Quasar.Notify.create({ type: 'positive', message: 'Retried' })
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
      await this.afterSettlementChange(settlement.id)
    },
    canAccept(settlement) {
      return (
        settlement.status === 'flagged' &&
        settlement.fiat_amount !== null &&
        settlement.principal_sats !== null
      )
    },
    acceptSettlement(settlement) {
      LNbits.utils
        .confirmDialog(
          `Flagged: ${settlement.status_detail}. Split it with these figures ` +
            `(${this.fiat(settlement.fiat_amount, settlement.fiat_code)} for ` +
            `${this.sats(settlement.principal_sats)})?`
        )
        .onOk(async () => {
          try {
            await this.request('POST', `/settlements/${settlement.id}/accept`, {
              reason: 'accepted from the dashboard'
            })
            Quasar.Notify.create({ type: 'positive', message: 'Accepted' })
          } catch (error) {
            LNbits.utils.notifyApiError(error)
          }
          await this.afterSettlementChange(settlement.id)
        })
    },
    async reviewClient(client) {
      try {
        await this.request('PUT', `/clients/${client.id}/reviewed`)
        Quasar.Notify.create({ type: 'positive', message: 'Client reviewed' })
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
      await this.loadClients()
    },
    cancelPayout(settlement, payout) {
      LNbits.utils
        .confirmDialog(
          `Cancel the payout of ${this.sats(payout.amount_sats)} to ` +
            `${payout.username || payout.client_id}? Its sats become orphan ` +
            'sats of this settlement and the client keeps the fiat.'
        )
        .onOk(async () => {
          try {
            await this.request('POST', `/payouts/${payout.id}/cancel`, {
              reason: 'cancelled from the dashboard'
            })
            Quasar.Notify.create({ type: 'positive', message: 'Payout cancelled' })
          } catch (error) {
            LNbits.utils.notifyApiError(error)
          }
          await this.afterSettlementChange(settlement.id)
        })
    },
    openCashOut(settlement) {
      this.cashOutDialog = {
        show: true,
        id: settlement.id,
        data: {
          fiat_amount: '',
          fiat_code: settlement.fiat_code || this.currency,
          commission_pct: 5.5,
          discount: 0,
          principal_sats: null,
          note: ''
        }
      }
    },
    async saveCashOut() {
      const d = this.cashOutDialog.data
      const body = {
        fiat_amount: d.fiat_amount,
        fiat_code: (d.fiat_code || '').toUpperCase(),
        note: d.note || null
      }
      if (d.principal_sats !== null && d.principal_sats !== '') {
        body.principal_sats = d.principal_sats
      } else {
        // Percent in the form, a fraction in the API (5.5 % -> 0.055).
        body.commission_percentage = (Number(d.commission_pct || 0) / 100).toFixed(6)
        body.discount = d.discount || 0
      }
      try {
        await this.request(
          'PUT',
          `/settlements/${this.cashOutDialog.id}/cash-out`,
          body
        )
        this.cashOutDialog.show = false
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
      await this.afterSettlementChange(this.cashOutDialog.id)
    },
    openDismiss(settlement) {
      this.dismissDialog = { show: true, id: settlement.id, reason: '' }
    },
    async dismissSettlement() {
      try {
        await this.request('PUT', `/settlements/${this.dismissDialog.id}/dismiss`, {
          reason: this.dismissDialog.reason
        })
        this.dismissDialog.show = false
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
      await this.afterSettlementChange(this.dismissDialog.id)
    },
    async exportSettlements() {
      // Every settlement, not only the page on screen.
      try {
        const { data } = await this.request(
          'GET',
          '/settlements?limit=1000&sortby=paid_at&direction=desc'
        )
        this.exportTable(this.settlementsTable.columns, data.data, 'settlements')
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    async dryRun() {
      const f = this.dryRunForm
      try {
        const { data } = await this.request('POST', '/test-transaction', {
          amount_sats: f.amount_sats,
          fiat_amount: f.fiat_amount,
          fiat_code: (f.fiat_code || '').toUpperCase(),
          commission_percentage: (Number(f.commission_pct || 0) / 100).toFixed(6),
          discount: f.discount || 0
        })
        this.dryRunResult = data
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },

    // ------------------------------------------------------ reconciliation
    openResolve(row) {
      this.resolveDialog = {
        show: true,
        row,
        action: 'operator_funds',
        wallet_id: null,
        client_id: null,
        note: '',
        saving: false
      }
    },
    async resolveOrphan() {
      const dialog = this.resolveDialog
      const body = { action: dialog.action, note: dialog.note || null }
      if (dialog.action === 'send_to_wallet') body.wallet_id = dialog.wallet_id
      if (dialog.action === 'attribute_to_client') body.client_id = dialog.client_id
      dialog.saving = true
      try {
        await this.request('POST', `/reconciliations/${dialog.row.id}/resolve`, body)
        dialog.show = false
        Quasar.Notify.create({ type: 'positive', message: 'Orphan resolved' })
        await Promise.all([
          this.loadReconciliations(),
          this.loadSummary(),
          this.loadClients()
        ])
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      } finally {
        dialog.saving = false
      }
    },
    async showHistory(row) {
      try {
        const { data } = await this.request('GET', `/reconciliations/${row.id}/history`)
        this.historyDialog = { show: true, entries: data }
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },

    // -------------------------------------------------------------- config
    resetConfigForm() {
      const c = this.config || {}
      this.configForm = {
        source_wallet_id: c.source_wallet_id || null,
        commission_wallet_id: c.commission_wallet_id || null,
        host: c.host || '',
        port: c.port || 5432,
        database_name: c.database_name || '',
        username: c.username || '',
        password: '',
        use_ssh_tunnel: !!c.use_ssh_tunnel,
        ssh_host: c.ssh_host || '',
        ssh_port: c.ssh_port || 22,
        ssh_username: c.ssh_username || '',
        ssh_password: '',
        ssh_private_key: '',
        ssh_known_hosts: c.ssh_known_hosts || '',
        max_daily_limit: c.max_daily_limit == null ? '' : String(c.max_daily_limit),
        limit_currency: c.limit_currency || '',
        time_zone: c.time_zone || '',
        fixed_delivery: c.fixed_delivery || 'on_settlement',
        fixed_delivery_time: c.fixed_delivery_time || '',
        fixed_delivery_times: c.fixed_delivery_times || null,
        is_active: c.is_active !== false
      }
    },
    secretHint(flag) {
      if (!this.config) return 'Not set'
      return this.config[flag]
        ? 'Set. Type a new one to replace it, or leave empty to keep it.'
        : 'Not set'
    },
    async saveConfig() {
      const f = this.configForm
      if (!f.source_wallet_id) {
        Quasar.Notify.create({ type: 'warning', message: 'Choose the source wallet' })
        return
      }
      const body = { ...f }
      // Secrets are write-only: send them only when the operator typed one.
      for (const key of ['password', 'ssh_password', 'ssh_private_key']) {
        if (!body[key]) delete body[key]
      }
      body.max_daily_limit = body.max_daily_limit || null
      body.limit_currency = body.limit_currency
        ? body.limit_currency.toUpperCase()
        : null
      body.ssh_known_hosts = body.ssh_known_hosts || null
      body.time_zone = body.time_zone || null
      body.fixed_delivery_time = body.fixed_delivery_time || null
      body.fixed_delivery_times = body.fixed_delivery_times || null
      for (const key of ['ssh_host', 'ssh_username']) {
        if (!body[key]) body[key] = null
      }
      if (!this.config) delete body.is_active
      this.savingConfig = true
      try {
        const { data } = this.config
          ? await this.request('PUT', `/config/${this.config.id}`, body)
          : await this.request('POST', '/config', body)
        this.config = data
        this.resetConfigForm()
        Quasar.Notify.create({ type: 'positive', message: 'Configuration saved' })
        await this.loadSummary()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      } finally {
        this.savingConfig = false
      }
    },
    async testConnection() {
      this.testingConnection = true
      try {
        const { data } = await this.request('POST', '/test-connection')
        this.connectionResult = data
        await this.loadConfig()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      } finally {
        this.testingConnection = false
      }
    },
    async manualPoll() {
      this.polling = true
      try {
        const { data } = await this.request('POST', '/manual-poll')
        this.pollResult = data
        Quasar.Notify.create({
          type: 'positive',
          message: `Poll done: ${data.new_settlements} new settlement(s)`
        })
        await this.refreshAll()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      } finally {
        this.polling = false
      }
    }
  },
  watch: {
    tab(value) {
      if (value === 'overview') this.$nextTick(() => this.drawChart())
    }
  },
  async created() {
    // LNbits 1.6.2's sidebar handles every payment websocket message with
    // g.wallet.id, and g.wallet is null outside the wallet page: give it one of
    // the operator's wallets so settlements arriving do not throw.
    if (!this.g.wallet && this.g.user && this.g.user.wallets.length) {
      this.g.wallet = this.g.user.wallets[0]
    }
    await this.refreshAll()
  }
})
