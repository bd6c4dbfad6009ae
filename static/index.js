// DCA Admin dashboard, a page of LNbits' dynamic frontend (static/routes.json:
// template static/index.vue, strings static/i18n/<lang>.js). Every figure comes
// from the extension's REST API (/satmachineadmin/api/v1/dca); nothing here
// computes money, it only formats, in the language and locale LNbits is set to.

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

// The extension's strings (static/i18n/en.js, es.js): t('clients.title').
function t(key, values) {
  return window.i18n.global.t('satmachineadmin.' + key, values || {})
}

// A table column whose header follows the chosen language (the label is a
// getter: read again each time Quasar draws the header). Field = name and
// left-aligned unless `options` says otherwise.
function column(name, labelKey, options) {
  return {
    name,
    get label() {
      return t(labelKey)
    },
    field: name,
    align: 'left',
    ...(options || {})
  }
}

// A text with a singular and a plural form ('one | many'), chosen by count;
// `values.count` may be the count already formatted for display.
function tn(key, count, values) {
  return window.i18n.global.t(
    'satmachineadmin.' + key,
    { count, ...(values || {}) },
    Number(count) || 0
  )
}

// LNbits' language codes, as the locale numbers and dates are written in:
// Spanish as in Guatemala (Q1,234.56).
const LOCALES = { es: 'es-GT', en: 'en-US', br: 'pt-BR', cn: 'zh-CN', jp: 'ja-JP' }
function intlLocale() {
  const lang = String(window.i18n.global.locale || 'en')
  return LOCALES[lang] || lang
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
    c.status === 'active' ? null : t('status.' + c.status),
    c.is_new ? t('clients.label_new') : null,
    c.attention ? t('clients.label_attention') : null
  ].filter(Boolean)
  return (
    t('clients.label', {
      name: c.username || shortId(c.id),
      wallet: shortId(c.wallet_id),
      user: shortId(c.user_id),
      since: String(c.created_at).slice(0, 10)
    }) + (marks.length ? ` (${marks.join(', ')})` : '')
  )
}

// Configuration -> Alerts: each switch, and its threshold when it has one
// (labels: satmachineadmin.alerts.item.<key>, units: alerts.unit.<unit>).
const ALERT_ITEMS = [
  { key: 'orphan_new' },
  { key: 'orphan_old', threshold: 'orphan_max_age_hours', unit: 'hours' },
  { key: 'settlement_flagged' },
  {
    key: 'settlement_waiting',
    threshold: 'settlement_waiting_minutes',
    unit: 'minutes'
  },
  { key: 'payout_failed', threshold: 'payout_failed_attempts', unit: 'attempts' },
  { key: 'payout_uncovered' },
  { key: 'commission_failed' },
  { key: 'orphan_failed' },
  { key: 'lamassu_down', threshold: 'lamassu_down_minutes', unit: 'minutes' },
  { key: 'missed_payment' },
  { key: 'drift_untracked', threshold: 'drift_untracked_threshold', unit: 'fiat' },
  {
    key: 'drift_orphan_week',
    threshold: 'drift_orphan_week_threshold',
    unit: 'fiat'
  },
  { key: 'client_notices' }
]

function shortId(value) {
  return value ? String(value).slice(0, 8) + '…' : ''
}

window.PageSatmachineadmin = {
  template: '#page-satmachineadmin',
  data() {
    return {
      tab: 'overview',
      refreshing: false,
      polling: false,
      summary: null,
      config: null,
      configLoaded: false,
      clients: [],
      // Rows per page of the tables paged on the server: no 'All' (0), which
      // would ask for every row and get the server's most, 1000, under a
      // label saying all of them are shown.
      pageSizes: [10, 20, 50, 100],
      // Every client seen (table pages, picker searches), for names by id.
      clientIndex: {},
      // The client pickers' options: what the server found for the search.
      clientPicker: [],
      deposits: [],
      settlements: [],
      chartDays: [],
      chartHasData: false,
      drift: null,
      driftLoading: false,
      orphanChartHasData: false,
      alerts: [],
      alertStatus: null,
      alertForm: null,
      savingAlerts: false,
      checkingAlerts: false,
      alertItems: ALERT_ITEMS,
      alertsTable: {
        loading: false,
        state: 'open',
        pagination: {
          page: 1,
          rowsPerPage: 20,
          rowsNumber: 0,
          sortBy: 'opened_at',
          descending: true
        },
        columns: [
          column('opened_at', 'alerts.col_opened', {
            sortable: true,
            format: val => this.date(val)
          }),
          column('message', 'alerts.col_alert'),
          column('audience', 'alerts.col_to', {
            format: val =>
              val === 'client' ? t('alerts.to_client') : t('alerts.to_operator')
          }),
          column('sent_at', 'alerts.col_sent', {
            format: val => (val ? this.date(val) : t('alerts.not_sent'))
          }),
          column('cleared_at', 'alerts.col_state', {
            sortable: true,
            format: (val, row) =>
              val
                ? t('alerts.cleared', { date: this.date(val) })
                : row && row.acknowledged_at
                  ? t('alerts.open_acknowledged')
                  : t('alerts.state_open')
          }),
          { name: 'actions', label: '', field: 'id', align: 'right' }
        ]
      },
      driftColumns: [
        column('currency', 'drift.col_currency'),
        column('tracked', 'drift.col_tracked', {
          align: 'right',
          format: (val, row) => this.fiat(val, row && row.currency)
        }),
        column('machine_cash', 'drift.col_machine_cash', {
          align: 'right',
          format: (val, row) =>
            val == null ? t('drift.not_reported') : this.fiat(val, row && row.currency)
        }),
        column('untracked', 'drift.col_untracked', {
          align: 'right',
          format: (val, row) => (val == null ? '' : this.fiat(val, row && row.currency))
        }),
        column('orphan_fiat_7d', 'drift.col_orphans', {
          align: 'right',
          format: (val, row) => this.fiat(val, row && row.currency)
        })
      ],
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
          column('username', 'clients.col_name', {
            sortable: true
          }),
          column('wallet', 'common.wallet', {
            field: row => row.wallet_name || row.wallet_id
          }),
          column('dca_mode', 'clients.col_mode', {
            sortable: true,
            format: (val, row) =>
              val === 'fixed' && row && row.fixed_mode_daily_limit != null
                ? t('fixed.mode_limit', {
                    mode: this.statusLabel(val),
                    limit: this.fiat(
                      row.fixed_mode_daily_limit,
                      row.fixed_limit_currency
                    )
                  })
                : this.statusLabel(val)
          }),
          column('fixed_today', 'fixed.col_today', {
            field: 'fixed_used_today',
            format: (val, row) =>
              row && row.dca_mode === 'fixed' && val != null
                ? t('fixed.today', {
                    used: this.fiat(val, row.fixed_limit_currency),
                    left: this.fiat(row.fixed_allowance_left, row.fixed_limit_currency)
                  })
                : ''
          }),
          column('status', 'common.status', {
            sortable: true,
            format: val => this.statusLabel(val)
          }),
          column('confirmed_deposits', 'clients.col_deposited', {
            sortable: true,
            format: (val, row) => this.fiat(val, row && row.currency),
            align: 'right'
          }),
          column('distributed_fiat', 'clients.col_distributed', {
            sortable: true,
            format: (val, row) => this.fiat(val, row && row.currency),
            align: 'right'
          }),
          column('distributed_sats', 'clients.col_sats', {
            sortable: true,
            format: val => this.sats(val),
            align: 'right'
          }),
          column('remaining_balance', 'clients.col_remaining', {
            sortable: true,
            format: (val, row) => this.fiat(val, row && row.currency),
            align: 'right'
          }),
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
          column('created_at', 'common.created', {
            sortable: true,
            format: val => this.date(val)
          }),
          column('client', 'common.client', {
            field: row => row.username || this.clientName(row.client_id)
          }),
          column('amount', 'common.amount', {
            sortable: true,
            format: (val, row) => this.fiat(val, row && row.currency),
            align: 'right'
          }),
          column('status', 'common.status', {
            sortable: true,
            format: val => this.statusLabel(val)
          }),
          column('notes', 'common.notes'),
          column('confirmed_at', 'deposits.col_confirmed', {
            format: val => this.date(val)
          }),
          { name: 'actions', label: '', field: 'id', align: 'right' }
        ]
      },
      settlementsTable: {
        loading: false,
        status: null,
        device_id: null,
        pagination: {
          page: 1,
          rowsPerPage: 20,
          rowsNumber: 0,
          sortBy: 'paid_at',
          descending: true
        },
        columns: [
          column('paid_at', 'settlements.col_paid', {
            sortable: true,
            format: val => this.date(val)
          }),
          column('amount_sats', 'common.sats', {
            sortable: true,
            format: val => this.sats(val),
            align: 'right'
          }),
          column('machine', 'machines.machine', {
            field: row => row.machine_name || shortId(row.device_id)
          }),
          column('fiat_amount', 'settlements.col_cash', {
            format: (val, row) => this.fiat(val, row && row.fiat_code),
            align: 'right'
          }),
          column('commission_sats', 'common.commission', {
            format: val => this.sats(val),
            align: 'right'
          }),
          column('distributed_sats', 'settlements.col_to_clients', {
            format: val => this.sats(val),
            align: 'right'
          }),
          column('orphan_sats', 'common.orphan', {
            format: val => this.sats(val),
            align: 'right'
          }),
          column('status', 'common.status', {
            sortable: true,
            format: val => this.statusLabel(val)
          })
        ]
      },
      payoutColumns: [
        column('username', 'common.client', {
          field: row => row.username || this.clientName(row.client_id)
        }),
        column('amount_sats', 'common.sats', {
          format: val => this.sats(val),
          align: 'right'
        }),
        column('amount_fiat', 'common.fiat', {
          format: val => this.fiat(val, this.detailCurrency),
          align: 'right'
        }),
        column('exchange_rate', 'settlements.col_rate', {
          format: val => (val == null ? '' : this.number(val, 3)),
          align: 'right'
        }),
        column('status', 'common.status', {
          format: val => this.statusLabel(val)
        }),
        column('error', 'settlements.col_error', {
          classes: 'hidden',
          headerClasses: 'hidden'
        })
      ],
      detailCurrency: 'GTQ',
      reconTable: {
        loading: false,
        status: 'open',
        device_id: null,
        pagination: {
          page: 1,
          rowsPerPage: 20,
          rowsNumber: 0,
          sortBy: 'created_at',
          descending: true
        },
        columns: [
          column('created_at', 'common.created', {
            sortable: true,
            format: val => this.date(val)
          }),
          column('settlement_id', 'reconciliation.col_settlement', {
            format: val => shortId(val)
          }),
          column('machine', 'machines.machine', {
            field: row => row.machine_name || shortId(row.device_id)
          }),
          column('orphan_sats', 'common.sats', {
            sortable: true,
            format: val => this.sats(val),
            align: 'right'
          }),
          column('orphan_fiat', 'common.fiat', {
            format: (val, row) => this.fiat(val, row && row.fiat_code),
            align: 'right'
          }),
          column('status', 'common.status', {
            sortable: true,
            format: val => this.statusLabel(val)
          }),
          column('resolution', 'reconciliation.col_resolution', {
            format: val => this.statusLabel(val)
          }),
          column('resolved_by', 'reconciliation.col_by', {
            format: val => shortId(val)
          }),
          column('resolved_at', 'reconciliation.col_resolved', {
            format: val => this.date(val)
          }),
          column('note', 'common.note'),
          { name: 'actions', label: '', field: 'id', align: 'right' }
        ]
      },
      depositForm: { client_id: null, amount: '', currency: 'GTQ', notes: '' },
      clientDialog: { show: false, data: {} },
      // ---------------------------------------------- fixed mode (#12)
      modeDialog: { show: false, id: null, name: '', data: {} },
      scheduled: null,
      scheduledColumns: [
        column('username', 'common.client', {
          field: row => row.username || shortId(row.client_id)
        }),
        column('amount_sats', 'common.sats', {
          format: val => this.sats(val),
          align: 'right'
        }),
        column('amount_fiat', 'common.fiat', {
          format: (val, row) => this.fiat(val, row && row.currency),
          align: 'right'
        }),
        column('deliver_after', 'fixed.col_deliver_after', {
          format: val => this.date(val)
        }),
        column('settlement_id', 'reconciliation.col_settlement', {
          format: val => shortId(val)
        })
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
          get label() {
            return t('reconciliation.action_operator_funds')
          },
          value: 'operator_funds'
        },
        {
          get label() {
            return t('reconciliation.action_send_to_wallet')
          },
          value: 'send_to_wallet'
        },
        {
          get label() {
            return t('reconciliation.action_attribute')
          },
          value: 'attribute_to_client'
        }
      ],
      historyDialog: { show: false, entries: [] },
      // ---------------------------------------------- machines (#14)
      machines: [],
      globalRecipients: [],
      machineDialog: { show: false, data: {} },
      recipientsDialog: { show: false, machine: null, rows: [] },
      machineColumns: [
        column('name', 'machines.machine', {
          field: row => this.machineName(row)
        }),
        column('location', 'machines.location'),
        column('source_wallet_id', 'machines.source_wallet', {
          format: val => this.walletName(val)
        }),
        column('last_seen', 'machines.last_seen', {
          format: val => this.date(val)
        }),
        column('settled', 'machines.settled', {
          field: row => row.figures.settled_sats,
          format: val => this.sats(val),
          align: 'right'
        }),
        column('commission', 'common.commission', {
          field: row => row.figures.commission_sats,
          format: val => this.sats(val),
          align: 'right'
        }),
        column('distributed', 'settlements.col_to_clients', {
          field: row => row.figures.distributed_sats,
          format: val => this.sats(val),
          align: 'right'
        }),
        column('orphans', 'machines.open_orphans', {
          field: row => row.figures.open_orphan_sats,
          format: val => this.sats(val),
          align: 'right'
        }),
        column('waiting', 'machines.waiting', {
          field: row => row.figures.waiting,
          align: 'right'
        }),
        column('partners', 'machines.partners_title', {
          field: row => row.commission_recipients,
          format: val =>
            val && val.length
              ? val.map(r => `${this.recipientName(r)} ${r.percent} %`).join(', ')
              : t('machines.global')
        }),
        { name: 'actions', label: '', field: 'id', align: 'right' }
      ],
      machineFigureColumns: [
        column('name', 'machines.machine', {
          field: row =>
            row.device_id ? row.name || shortId(row.device_id) : t('machines.unnamed')
        }),
        column('settled_sats', 'machines.settled', {
          format: val => this.sats(val),
          align: 'right'
        }),
        column('commission_sats', 'common.commission', {
          format: val => this.sats(val),
          align: 'right'
        }),
        column('distributed_sats', 'settlements.col_to_clients', {
          format: val => this.sats(val),
          align: 'right'
        }),
        column('open_orphan_sats', 'machines.open_orphans', {
          format: val => this.sats(val),
          align: 'right'
        }),
        column('waiting', 'machines.waiting', {
          align: 'right'
        })
      ],
      commissionPartColumns: [
        column('recipient', 'machines.partner', {
          field: row => this.recipientName(row)
        }),
        { name: 'percent', label: '%', field: 'percent' },
        column('amount_sats', 'common.sats', {
          format: val => this.sats(val),
          align: 'right'
        }),
        column('attempts', 'machines.attempts', {
          align: 'right'
        }),
        column('status', 'common.status')
      ],
      dryRunForm: {
        amount_sats: 100000,
        fiat_amount: '500',
        fiat_code: 'GTQ',
        commission_pct: 5.5,
        discount: 0,
        device_id: null
      },
      dryRunResult: null,
      dryRunColumns: [
        column('username', 'common.client', {
          field: row => row.username || shortId(row.client_id)
        }),
        column('sats', 'common.sats', {
          format: val => this.sats(val),
          align: 'right'
        }),
        column('fiat', 'common.fiat', {
          format: val =>
            this.fiat(val, this.dryRunResult && this.dryRunResult.fiat_code),
          align: 'right'
        }),
        column('capped', 'settlements.col_whole_balance', {
          format: val => (val ? t('common.yes') : ''),
          align: 'right'
        }),
        column('mode', 'clients.col_mode', {
          format: val => (val ? this.statusLabel(val) : '')
        }),
        column('limited', 'fixed.col_limited', {
          format: val => (val ? t('common.yes') : ''),
          align: 'right'
        })
      ],
      configForm: {},
      savingConfig: false,
      testingConnection: false,
      connectionResult: null,
      pollResult: null
    }
  },
  computed: {
    // ---------------------------------------------- fixed mode (#12)
    maxDailyLimit() {
      const c = this.config
      if (!c) return this.fiat(2000, 'GTQ')
      return this.fiat(c.effective_max_daily_limit, c.limit_currency || 'GTQ')
    },
    deliveryOptions() {
      return [
        { label: t('fixed.delivery_on_settlement'), value: 'on_settlement' },
        { label: t('fixed.delivery_daily'), value: 'daily' },
        { label: t('fixed.delivery_times_per_day'), value: 'times_per_day' }
      ]
    },
    scheduleText() {
      const s = this.scheduled
      if (!s) return ''
      const when =
        s.fixed_delivery === 'daily'
          ? t('fixed.when_daily', { time: s.fixed_delivery_time })
          : s.fixed_delivery === 'times_per_day'
            ? t('fixed.when_times', { times: s.fixed_delivery_times })
            : t('fixed.when_on_settlement')
      const text = t('fixed.schedule', { when, zone: s.time_zone })
      return s.next_slot
        ? text + t('fixed.next_slot', { date: this.date(s.next_slot) })
        : text
    },
    channelText() {
      const channels = (this.alertStatus && this.alertStatus.channels) || {}
      const on = Object.keys(channels).filter(k => channels[k])
      return on.length
        ? t('alerts.channels_on', { channels: on.join(', ') })
        : t('alerts.no_channel')
    },
    driftMachines() {
      return (this.drift && this.drift.machines) || []
    },
    // The page is for the super user and admins (views.py refuses the others a
    // direct load; the API refuses them everything).
    forbidden() {
      return !(this.g.user && (this.g.user.admin || this.g.user.super_user))
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
    machineOptions() {
      return this.machines.map(m => ({
        label: this.machineName(m),
        value: m.device_id
      }))
    },
    newMachines() {
      return this.machines.filter(m => m.is_new).length
    },
    recipientsTotal() {
      // Display only: the server checks the exact sum.
      const total = this.recipientsDialog.rows.reduce(
        (sum, r) => sum + Math.round(Number(r.percent || 0) * 10000),
        0
      )
      return total / 10000
    },
    recipientsTotalOk() {
      return this.recipientsTotal === 100 || !this.recipientsDialog.rows.length
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
          label: t('overview.source_wallet'),
          value:
            s.source_wallet_balance_sats == null
              ? '—'
              : this.sats(s.source_wallet_balance_sats),
          detail:
            this.config && this.config.source_wallet_id
              ? this.walletName(this.config.source_wallet_id)
              : t('overview.not_configured')
        },
        {
          key: 'deposited',
          label: t('overview.deposited'),
          value: this.fiat(s.deposits_confirmed, this.currency),
          detail: Number(s.deposits_pending)
            ? t('overview.pending_amount', {
                amount: this.fiat(s.deposits_pending, this.currency)
              })
            : t('overview.nothing_pending')
        },
        {
          key: 'distributed',
          label: t('overview.distributed'),
          value: this.fiat(s.distributed_fiat, this.currency),
          detail: tn('overview.distributed_detail', s.payouts_confirmed, {
            sats: this.sats(s.distributed_sats),
            count: this.number(s.payouts_confirmed)
          })
        },
        {
          key: 'commission',
          label: t('common.commission'),
          value: this.sats(s.commission_sats),
          detail: tn('overview.settlements_processed', s.settlements_processed, {
            count: this.number(s.settlements_processed)
          })
        },
        {
          key: 'orphans',
          label: t('overview.open_orphans'),
          value: this.sats(s.open_orphan_sats),
          detail: tn('overview.open_orphans_detail', s.open_orphans, {
            count: this.number(s.open_orphans),
            amount: this.fiat(s.open_orphan_fiat, this.currency)
          }),
          alert: s.open_orphans > 0
        },
        {
          key: 'waiting',
          label: t('overview.waiting'),
          value: this.number(this.waitingCount),
          detail: tn('overview.flagged_for_you', byStatus.flagged || 0),
          alert: (byStatus.flagged || 0) > 0
        },
        {
          key: 'failed',
          label: t('overview.failed_payouts'),
          value: this.number(s.payouts_failed),
          detail:
            tn('overview.to_retry', byStatus.payout_failed || 0) +
            (s.legacy_unfinished_payouts
              ? t('overview.legacy_unfinished', { count: s.legacy_unfinished_payouts })
              : ''),
          alert: s.payouts_failed > 0
        },
        {
          key: 'settled',
          label: t('overview.settled'),
          value: this.sats(s.settled_sats),
          detail: t('overview.all_settlements')
        }
      ]
    }
  },
  methods: {
    // ------------------------------------------------------------ formatting
    // Numbers, money and dates in the locale of LNbits' language (es: es-GT).
    number(value, digits) {
      if (value == null || value === '') return ''
      const options =
        digits == null
          ? {}
          : { minimumFractionDigits: digits, maximumFractionDigits: digits }
      return new Intl.NumberFormat(intlLocale(), options).format(Number(value))
    },
    sats(value) {
      if (value == null || value === '') return ''
      return this.number(value) + ' sats'
    },
    fiat(value, code) {
      if (value == null || value === '') return ''
      const amount = Number(value)
      try {
        const parts = new Intl.NumberFormat(intlLocale(), {
          style: 'currency',
          currency: code || this.currency,
          minimumFractionDigits: 2,
          maximumFractionDigits: 2
        }).formatToParts(amount)
        // Guatemala writes the quetzal sign against the number (Q1,234.56);
        // Intl puts a space after a leading symbol in Spanish locales.
        if (intlLocale().startsWith('es') && parts[0]?.type === 'currency') {
          return parts
            .filter((part, i) => !(i === 1 && part.type === 'literal'))
            .map(part => part.value)
            .join('')
        }
        return parts.map(part => part.value).join('')
      } catch (e) {
        return amount.toFixed(2) + ' ' + (code || '')
      }
    },
    date(value) {
      if (!value) return ''
      const when = new Date(value)
      if (isNaN(when)) return String(value)
      return new Intl.DateTimeFormat(intlLocale(), {
        dateStyle: 'medium',
        timeStyle: 'short'
      }).format(when)
    },
    dateOrNever(value) {
      if (!value) return t('common.never')
      const seconds = (new Date(value).getTime() - Date.now()) / 1000
      const units = [
        ['year', 31536000],
        ['month', 2592000],
        ['day', 86400],
        ['hour', 3600],
        ['minute', 60]
      ]
      const relative = new Intl.RelativeTimeFormat(intlLocale(), { numeric: 'auto' })
      for (const [unit, size] of units) {
        if (Math.abs(seconds) >= size) {
          return relative.format(Math.round(seconds / size), unit)
        }
      }
      return relative.format(Math.round(seconds), 'second')
    },
    // A status, mode or resolution as the API writes it, in words.
    statusLabel(status) {
      if (status == null || status === '') return ''
      const key = 'satmachineadmin.status.' + status
      return this.$te(key) || this.$te(key, 'en') ? this.$t(key) : String(status)
    },
    // An audit entry's action (a code the server writes, e.g.
    // 'resolve:operator_funds') in words, and who did it.
    historyAction(entry) {
      const code = String(entry.action || '')
      const key = 'satmachineadmin.history.actions.' + code.replace(/[^a-z0-9_]/g, '_')
      const action = this.$te(key) || this.$te(key, 'en') ? this.$t(key) : code
      return entry.actor ? t('history.by', { action, actor: entry.actor }) : action
    },
    statusOptions(statuses) {
      return statuses.map(value => ({ label: this.statusLabel(value), value }))
    },
    // Quasar writes these in English whatever LNbits' language.
    paginationLabel(first, last, total) {
      return t('common.page_of', {
        first: this.number(first),
        last: this.number(last),
        total: this.number(total)
      })
    },
    confirm(message) {
      const dialog = LNbits.utils.confirmDialog(message)
      dialog.update({
        ok: { flat: true, color: 'orange', label: t('common.ok') },
        cancel: { flat: true, color: 'grey', label: t('common.cancel') }
      })
      return dialog
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
        : t('common.valid_amount')
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
      // The server writes its texts (errors, why a settlement waits, alerts)
      // in the language sent here: LNbits' selector, not the browser's.
      return LNbits.api.request(method, API + path, this.adminKey, data, {
        headers: {
          'X-Api-Key': this.adminKey,
          'Accept-Language': String(window.i18n.global.locale || 'en')
        }
      })
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
          this.loadChart(),
          this.loadDrift(),
          this.loadAlerts(),
          this.loadAlertStatus(),
          this.loadAlertSettings(),
          this.loadMachines()
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
    // The CSV buttons export every row (a page of 1000 at a time, the most
    // the server gives), not the page on screen. Oldest first: rows that
    // arrive meanwhile land after the last page, and the server breaks ties
    // on the id (crud.StableFilters), so no row is skipped.
    async exportAll(path, columns, name, filters, sortby = 'created_at') {
      const rows = []
      const seen = new Set()
      try {
        for (let offset = 0; ; offset += 1000) {
          const query = new URLSearchParams({
            limit: 1000,
            offset,
            sortby,
            direction: 'asc'
          })
          for (const [key, value] of Object.entries(filters || {})) {
            if (value) query.set(key, value)
          }
          const { data } = await this.request('GET', `${path}?${query}`)
          const page = Array.isArray(data) ? data : data.data
          // A row recorded meanwhile with an old date (a missed payment found
          // late) shifts the later pages by one: never list a row twice.
          for (const row of page) {
            if (!seen.has(row.id)) {
              seen.add(row.id)
              rows.push(row)
            }
          }
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
      if (table.device_id) query.set('device_id', table.device_id)
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
        status: this.reconTable.status,
        device_id: this.reconTable.device_id
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
          labels: days.map(day =>
            new Intl.DateTimeFormat(intlLocale(), {
              month: 'short',
              day: 'numeric',
              timeZone: 'UTC'
            }).format(new Date(day + 'T00:00:00Z'))
          ),
          datasets: [
            {
              label: t('overview.chart_label'),
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

    // ----------------------------------------------------------- drift
    async loadDrift(refresh) {
      this.driftLoading = true
      try {
        const { data } = await this.request(
          'GET',
          '/drift' + (refresh ? '?refresh=true' : '')
        )
        this.drift = data
        this.drawOrphanChart()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      } finally {
        this.driftLoading = false
      }
    },
    alertLabel(item) {
      return t('alerts.item.' + item.key)
    },
    alertUnit(item) {
      return t('alerts.unit.' + item.unit)
    },
    driftAlarm(row) {
      const limit = this.alertForm && Number(this.alertForm.drift_untracked_threshold)
      return row.untracked != null && limit && Number(row.untracked) > limit
    },
    machineLine(machine) {
      const name = machine.name || shortId(machine.machine)
      if (machine.error) return `${machine.source} ${name}: ${machine.error}`
      const units = machine.cassettes
        .map(c => `${c.count} × ${Number(c.denomination)}`)
        .join(' + ')
      return (
        `${machine.source} ${name}: ${units || t('drift.empty')} = ` +
        this.fiat(machine.total, machine.currency)
      )
    },
    drawOrphanChart() {
      const rows = (this.drift && this.drift.weekly_orphans) || []
      const weeks = [...new Set(rows.map(r => r.week))].sort()
      const currencies = [...new Set(rows.map(r => r.currency))].sort()
      this.orphanChartHasData = rows.length > 0
      if (
        !this.orphanChartHasData ||
        !this.$refs.orphanChart ||
        typeof Chart === 'undefined'
      )
        return
      if (this.orphanChart) this.orphanChart.destroy()
      const colors = ['#e53935', '#fb8c00', '#8e24aa', '#3949ab', '#00897b']
      this.orphanChart = new Chart(this.$refs.orphanChart.getContext('2d'), {
        type: 'bar',
        data: {
          labels: weeks,
          datasets: currencies.map((currency, i) => ({
            label: currency,
            data: weeks.map(week => {
              const row = rows.find(r => r.week === week && r.currency === currency)
              return row ? Number(row.fiat) : 0
            }),
            backgroundColor: colors[i % colors.length]
          }))
        },
        options: { responsive: true, maintainAspectRatio: false }
      })
    },

    // ----------------------------------------------------------- alerts
    async loadAlerts(props) {
      const rows = await this.loadPage(this.alertsTable, '/alerts', props, {
        state: this.alertsTable.state
      })
      if (rows) this.alerts = rows
    },
    async loadAlertStatus() {
      try {
        const { data } = await this.request('GET', '/alerts-status')
        this.alertStatus = data
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    async loadAlertSettings() {
      try {
        const { data } = await this.request('GET', '/alert-settings')
        this.alertForm = { ...data }
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    async saveAlertSettings() {
      this.savingAlerts = true
      try {
        const body = { ...this.alertForm }
        for (const item of ALERT_ITEMS) {
          if (item.threshold && body[item.threshold] !== '') {
            body[item.threshold] =
              item.unit === 'fiat'
                ? String(body[item.threshold])
                : Number(body[item.threshold])
          }
        }
        body.digest_after = Number(body.digest_after)
        const { data } = await this.request('PUT', '/alert-settings', body)
        this.alertForm = { ...data }
        Quasar.Notify.create({ type: 'positive', message: t('alerts.saved') })
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      } finally {
        this.savingAlerts = false
      }
    },
    async checkAlerts() {
      this.checkingAlerts = true
      try {
        await this.request('POST', '/alerts/check')
        await Promise.all([this.loadAlerts(), this.loadAlertStatus()])
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      } finally {
        this.checkingAlerts = false
      }
    },
    async acknowledgeAlert(alert) {
      try {
        await this.request('POST', `/alerts/${alert.id}/acknowledge`)
        await Promise.all([this.loadAlerts(), this.loadAlertStatus()])
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    async toggleClientNotice(client) {
      try {
        await this.request('PUT', `/clients/${client.id}`, {
          notify_balance_empty: !client.notify_balance_empty
        })
        await this.loadClients()
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
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
        Quasar.Notify.create({ type: 'positive', message: t('fixed.mode_saved') })
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
        Quasar.Notify.create({ type: 'positive', message: t('clients.registered') })
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
          message: t('deposits.added')
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
      this.confirm(
        t('deposits.confirm_question', {
          amount: this.fiat(deposit.amount, deposit.currency),
          client: this.clientName(deposit.client_id)
        })
      ).onOk(() => this.setDepositStatus(deposit, 'confirmed'))
    },
    cancelDeposit(deposit) {
      this.confirm(
        t('deposits.cancel_question', {
          amount: this.fiat(deposit.amount, deposit.currency)
        })
      ).onOk(() => this.setDepositStatus(deposit, 'cancelled'))
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

    // ------------------------------------------------------ machines (#14)
    machineName(m) {
      if (!m) return ''
      return m.name ? m.name : shortId(m.device_id)
    },
    walletName(id) {
      if (!id) return ''
      const wallets = (this.g.user && this.g.user.wallets) || []
      const own = wallets.find(w => w.id === id)
      return own ? own.name : shortId(id)
    },
    recipientName(r) {
      return r.label || this.walletName(r.wallet_id)
    },
    // A wallet id pasted into a partner's wallet picker (a wallet of another
    // user of this LNbits); anything else typed there is only a search.
    pastedWalletId(value, done) {
      const id = String(value || '').trim()
      if (/^[0-9a-f]{32}$/i.test(id)) done(id, 'add-unique')
      else done()
    },
    async loadMachines() {
      try {
        const [machines, recipients] = await Promise.all([
          this.request('GET', '/machines'),
          this.request('GET', '/commission-recipients')
        ])
        this.machines = machines.data
        this.globalRecipients = recipients.data
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
    },
    openMachine(machine) {
      this.machineDialog = {
        show: true,
        data: machine
          ? {
              id: machine.id,
              device_id: machine.device_id,
              name: machine.name || '',
              location: machine.location || '',
              source_wallet_id: machine.source_wallet_id
            }
          : { device_id: '', name: '', location: '', source_wallet_id: null }
      }
    },
    async saveMachine() {
      const d = this.machineDialog.data
      const body = {
        name: d.name || null,
        location: d.location || null,
        source_wallet_id: d.source_wallet_id || null
      }
      try {
        if (d.id) await this.request('PUT', `/machines/${d.id}`, body)
        else
          await this.request('POST', '/machines', { ...body, device_id: d.device_id })
        this.machineDialog.show = false
        Quasar.Notify.create({ type: 'positive', message: t('machines.saved') })
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
      await Promise.all([this.loadMachines(), this.loadSummary()])
    },
    openRecipients(machine) {
      const current = machine ? machine.commission_recipients : this.globalRecipients
      this.recipientsDialog = {
        show: true,
        machine,
        rows: current.map(r => ({
          wallet_id: r.wallet_id,
          percent: r.percent,
          label: r.label || ''
        }))
      }
    },
    async saveRecipients() {
      const dialog = this.recipientsDialog
      const path = dialog.machine
        ? `/machines/${dialog.machine.id}/commission-recipients`
        : '/commission-recipients'
      try {
        await this.request('PUT', path, {
          recipients: dialog.rows.map(r => ({
            wallet_id: r.wallet_id,
            percent: String(r.percent),
            label: r.label || null
          }))
        })
        dialog.show = false
        Quasar.Notify.create({
          type: 'positive',
          message: t('machines.partners_saved')
        })
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
      await this.loadMachines()
    },
    showMachineSettlements(machine) {
      this.settlementsTable.device_id = machine.device_id
      this.tab = 'settlements'
      this.loadSettlements()
    },
    async retryCommissionPart(settlement, part) {
      try {
        await this.request('POST', `/commission-payouts/${part.id}/retry`)
        Quasar.Notify.create({ type: 'positive', message: t('settlements.retried') })
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
      await this.afterSettlementChange(settlement.id)
    },
    async openCommissionHistory(part) {
      try {
        const { data } = await this.request(
          'GET',
          `/commission-payouts/${part.id}/history`
        )
        this.historyDialog = { show: true, entries: data }
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
        Quasar.Notify.create({ type: 'positive', message: t('settlements.retried') })
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
      this.confirm(
        t('settlements.accept_question', {
          detail: settlement.status_detail,
          fiat: this.fiat(settlement.fiat_amount, settlement.fiat_code),
          sats: this.sats(settlement.principal_sats)
        })
      ).onOk(async () => {
        try {
          await this.request('POST', `/settlements/${settlement.id}/accept`, {
            reason: 'accepted from the dashboard'
          })
          Quasar.Notify.create({
            type: 'positive',
            message: t('settlements.accepted')
          })
        } catch (error) {
          LNbits.utils.notifyApiError(error)
        }
        await this.afterSettlementChange(settlement.id)
      })
    },
    async reviewClient(client) {
      try {
        await this.request('PUT', `/clients/${client.id}/reviewed`)
        Quasar.Notify.create({ type: 'positive', message: t('clients.reviewed') })
      } catch (error) {
        LNbits.utils.notifyApiError(error)
      }
      await this.loadClients()
    },
    cancelPayout(settlement, payout) {
      this.confirm(
        payout.transaction_type === 'orphan'
          ? t('settlements.cancel_orphan_question', {
              client: payout.username || payout.client_id,
              sats: this.sats(payout.amount_sats)
            })
          : t('settlements.cancel_payout_question', {
              client: payout.username || payout.client_id,
              sats: this.sats(payout.amount_sats)
            })
      ).onOk(async () => {
        try {
          await this.request('POST', `/payouts/${payout.id}/cancel`, {
            reason: 'cancelled from the dashboard'
          })
          Quasar.Notify.create({
            type: 'positive',
            message: t('settlements.payout_cancelled')
          })
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
      // Every settlement (a page of 1000 at a time), not only the page on
      // screen nor only the first 1000.
      await this.exportAll(
        '/settlements',
        this.settlementsTable.columns,
        'settlements',
        { device_id: this.settlementsTable.device_id },
        'paid_at'
      )
    },
    async dryRun() {
      const f = this.dryRunForm
      try {
        const { data } = await this.request('POST', '/test-transaction', {
          amount_sats: f.amount_sats,
          fiat_amount: f.fiat_amount,
          fiat_code: (f.fiat_code || '').toUpperCase(),
          commission_percentage: (Number(f.commission_pct || 0) / 100).toFixed(6),
          discount: f.discount || 0,
          device_id: f.device_id || null
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
        Quasar.Notify.create({
          type: 'positive',
          message: t('reconciliation.resolved_notice')
        })
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
      if (!this.config) return t('config.secret_not_set')
      return this.config[flag] ? t('config.secret_set') : t('config.secret_not_set')
    },
    async saveConfig() {
      const f = this.configForm
      if (!f.source_wallet_id) {
        Quasar.Notify.create({ type: 'warning', message: t('config.choose_source') })
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
        Quasar.Notify.create({ type: 'positive', message: t('config.saved') })
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
          message: tn('overview.poll_done', data.new_settlements)
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
      if (value === 'overview')
        this.$nextTick(() => {
          this.drawChart()
          this.drawOrphanChart()
        })
    }
  },
  async created() {
    // LNbits 1.6.2's sidebar handles every payment websocket message with
    // g.wallet.id, and g.wallet is null outside the wallet page: give it one of
    // the operator's wallets so settlements arriving do not throw.
    if (!this.g.wallet && this.g.user && this.g.user.wallets.length) {
      this.g.wallet = this.g.user.wallets[0]
    }
    if (this.forbidden) return
    await this.refreshAll()
  }
}
