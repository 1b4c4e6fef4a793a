#!/usr/bin/env bash
# The project's test command (README "Test"): installs what the tests need when it is
# missing, then checks formatting and lints and runs every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
# The compose-file test reads the stack with `docker compose` or Debian's docker-compose.
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 \
    || need_pkgs+=(docker-compose)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
# The bad-input test measures each run's peak RSS with GNU time.
[ -x /usr/bin/time ] || need_pkgs+=(time)
if ((${#need_pkgs[@]})); then
    echo "installing: ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker daemon answers (docker info failed); the Docker tests need one" >&2
    exit 1
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast
else
    cargo test --locked --no-fail-fast
fi
