#!/usr/bin/env bash
# Run LNbits 1.6.2 with this extension loaded from the checkout.
#   scripts/run.sh [--port 5000] [--demo]
# Embedded SQLite under .run/data, FakeWallet funding source unless you set
# LNBITS_BACKEND_WALLET_CLASS (and its settings) yourself; binds 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PORT=5000
DEMO=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --demo) DEMO=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
scripts/bootstrap.sh requirements.txt
RUN="$ROOT/.run"
mkdir -p "$RUN/extensions" "$RUN/data"
ln -sfn "$ROOT" "$RUN/extensions/satmachineadmin"
LNBITS_PKG="$(.venv/bin/python -c 'import importlib.util,os;print(os.path.dirname(importlib.util.find_spec("lnbits").origin))')"
ln -sfn "$LNBITS_PKG" "$RUN/lnbits"
export LNBITS_DATA_FOLDER="${LNBITS_DATA_FOLDER:-$RUN/data}"
export LNBITS_EXTENSIONS_PATH="$RUN"
export LNBITS_BACKEND_WALLET_CLASS="${LNBITS_BACKEND_WALLET_CLASS:-FakeWallet}"
export LNBITS_EXTENSIONS_DEFAULT_INSTALL=""
export LNBITS_EXTENSIONS_MANIFESTS='[]'
export LNBITS_WASM_EXTENSIONS_MANIFESTS='[]'
export LNBITS_PRICE_AGGREGATOR_ENABLED=false
export LNBITS_EXCHANGE_RATE_PROVIDERS='[]'
export AUTH_HTTPS_ONLY=false
export HOST=127.0.0.1
export PORT
cd "$RUN"
if [ "$DEMO" = 1 ]; then
  "$ROOT/.venv/bin/python" "$ROOT/scripts/demo.py" --port "$PORT" &
fi
cat <<MSG

  LNbits with satmachineadmin: http://127.0.0.1:$PORT/
  First time: open that URL, create the super user (first install), then
  Extensions -> DCA Admin -> Enable, and open http://127.0.0.1:$PORT/satmachineadmin/
  Data: $LNBITS_DATA_FOLDER   Funding source: $LNBITS_BACKEND_WALLET_CLASS

MSG
exec "$ROOT/.venv/bin/lnbits" --host 127.0.0.1 --port "$PORT"
