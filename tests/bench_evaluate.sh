#!/usr/bin/env bash
# Benchmark (not a test): whole-process `k3s-scale --dry-run evaluate` of the release build
# against a local test Prometheus; reports median wall time (hyperfine) and peak RSS
# (/usr/bin/time) over repeated runs. Target: median <= 10 ms, peak RSS <= 10 MiB.
# A dry run also lists the pool's containers (the Docker daemon on its default socket) and
# Nodes for reconcile, as a configured run does: the benchmark runs against an apiserver
# stand-in over TLS (`openssl s_server -WWW` serving an empty NodeList; SIMULATED, no real
# apiserver can be had here), and once more with no kubeconfig (the listing is skipped).
# It also reports the two parts of the wall time: Prometheus's own time on the query (its
# engine metrics) and k3s-scale's own share (every signal overridden by a constant).
#
# Several Docker hosts: EXTRA_HOSTS (default 3) extra Docker daemons are started, each in
# its own network namespace (`unshare --net dockerd ... --bridge=none`, as
# ../shared/notes/field.md says; never --bridge=none in the machine's own namespace), and
# the dry run is timed with docker.hosts naming one of them and naming all of them (the
# listings are sent to every host at once), in HOST_ROUNDS (default 10) alternating rounds
# so the machine's drifting load does not land in the difference. EXTRA_HOSTS=0 skips this
# part.
#
# Usage: tests/bench_evaluate.sh  (RUNS=200 WORKERS=6 PODS_PER_WORKER=10 SAMPLES=120
#        SCRAPE_INTERVAL=30 EXTRA_HOSTS=3 HOST_ROUNDS=10 to change)
# Needs: prometheus + promtool (Debian package prometheus), hyperfine, GNU time; installs
# the missing ones with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-200}
RSS_RUNS=${RSS_RUNS:-50}
WORKERS=${WORKERS:-6}
PODS_PER_WORKER=${PODS_PER_WORKER:-10}
SAMPLES=${SAMPLES:-120}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-30}
EXTRA_HOSTS=${EXTRA_HOSTS:-3}
TARGET_MS=10
TARGET_KIB=$((10 * 1024))
# Prometheus on a tiny TSDB is ready in ~0.1-0.3 s; 30 s covers a loaded machine.
READY_TRIES=300

need_pkgs=()
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v hyperfine >/dev/null 2>&1 || need_pkgs+=(hyperfine)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
[ -x /usr/bin/time ] || need_pkgs+=(time)
if ((${#need_pkgs[@]})); then
    echo "installing: ${need_pkgs[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

cargo build --release --locked --quiet
BIN=$PWD/target/release/k3s-scale

work=$(mktemp -d "${TMPDIR:-/tmp}/k3s-scale-bench.XXXXXX")
prom_pid=""
api_pid=""
dd_pids=()
cleanup() {
    if [ -n "$prom_pid" ]; then kill "$prom_pid" 2>/dev/null || true; wait "$prom_pid" 2>/dev/null || true; fi
    if [ -n "$api_pid" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
    # The extra daemons by PID, before their data goes.
    for p in "${dd_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${dd_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# kube-state-metrics series of a steady cluster: a k3s server, WORKERS Ready workers of
# 4 cores / 8 GiB, each running PODS_PER_WORKER pods of 200m / 400Mi (~50 %: no action).
# Each series has SAMPLES samples SCRAPE_INTERVAL seconds apart up to 5 s ago, as
# Prometheus holds them after scraping kube-state-metrics for a while: a query reads a
# series by decoding its chunk (up to 120 samples) from the start, so Prometheus's time on
# the query grows with the history (SAMPLES=1 is the cheapest case, a just-started
# Prometheus).
now=$(date +%s)
stamps=()
for k in $(seq $((SAMPLES - 1)) -1 0); do stamps+=($((now - 5 - k * SCRAPE_INTERVAL))); done
# $1: a series and its value; printed once per timestamp.
sample() { printf "${1//%/%%} %s\n" "${stamps[@]}"; }
ksm='job="kube-state-metrics",instance="kube-state-metrics:8080"'
{
    nodes="server"
    for i in $(seq 1 "$WORKERS"); do nodes="$nodes k3s-worker-$i"; done
    echo "# TYPE kube_node_info gauge"
    for n in $nodes; do sample "kube_node_info{node=\"$n\",$ksm} 1"; done
    echo "# TYPE kube_node_role gauge"
    for r in control-plane master; do sample "kube_node_role{node=\"server\",role=\"$r\",$ksm} 1"; done
    echo "# TYPE kube_node_status_condition gauge"
    for n in $nodes; do
        for s in true false unknown; do
            v=0; [ "$s" = true ] && v=1
            sample "kube_node_status_condition{node=\"$n\",condition=\"Ready\",status=\"$s\",$ksm} $v"
        done
    done
    echo "# TYPE kube_node_status_allocatable gauge"
    for n in $nodes; do
        sample "kube_node_status_allocatable{node=\"$n\",resource=\"cpu\",unit=\"core\",$ksm} 4"
        sample "kube_node_status_allocatable{node=\"$n\",resource=\"memory\",unit=\"byte\",$ksm} 8589934592"
    done
    echo "# TYPE kube_pod_status_phase gauge"
    for i in $(seq 1 "$WORKERS"); do
        for j in $(seq 1 "$PODS_PER_WORKER"); do
            for ph in Pending Running Succeeded Failed Unknown; do
                v=0; [ "$ph" = Running ] && v=1
                sample "kube_pod_status_phase{namespace=\"default\",pod=\"app-$i-$j\",uid=\"u-$i-$j\",phase=\"$ph\",$ksm} $v"
            done
        done
    done
    echo "# TYPE kube_pod_container_resource_requests gauge"
    for i in $(seq 1 "$WORKERS"); do
        for j in $(seq 1 "$PODS_PER_WORKER"); do
            l="namespace=\"default\",pod=\"app-$i-$j\",uid=\"u-$i-$j\",container=\"main\",node=\"k3s-worker-$i\""
            sample "kube_pod_container_resource_requests{$l,resource=\"cpu\",unit=\"core\",$ksm} 0.2"
            sample "kube_pod_container_resource_requests{$l,resource=\"memory\",unit=\"byte\",$ksm} 419430400"
        done
    done
    echo "# EOF"
} >"$work/data.om"
promtool tsdb create-blocks-from openmetrics "$work/data.om" "$work/data" >/dev/null
printf 'global: {}\nscrape_configs: []\n' >"$work/prometheus.yml"

# A free loopback port: nothing answers on it, and Prometheus managed to bind it.
ready() { (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /-/ready HTTP/1.0\r\n\r\n' >&3 && head -c 12 <&3 | grep -q ' 200') 2>/dev/null; }
for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
        --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$port" \
        --log.level=warn >"$work/prometheus.log" 2>&1 &
    prom_pid=$!
    for _ in $(seq 1 "$READY_TRIES"); do
        ready "$port" && break
        kill -0 "$prom_pid" 2>/dev/null || break
        sleep 0.1
    done
    ready "$port" && break
    kill "$prom_pid" 2>/dev/null || true; wait "$prom_pid" 2>/dev/null || true; prom_pid=""
done
[ -n "$prom_pid" ] || { echo "prometheus did not start:"; cat "$work/prometheus.log"; exit 1; }

# The apiserver stand-in: a CA and a server certificate for 127.0.0.1 (ECDSA P-256, the
# key type k3s gives its CA and serving certificates; an RSA-2048 server key adds the
# stand-in's ~2 ms RSA signature to every handshake), and
# `openssl s_server -WWW` answering the run's three lists, each empty: Nodes (reconcile),
# the pending pods by field selector and the DaemonSets (the cluster model's constraints).
mkdir -p "$work/api/www/api/v1" "$work/api/www/apis/apps/v1"
(
    cd "$work/api"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -subj /CN=bench-ca -days 1 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 1 -extfile server.ext 2>/dev/null
    # The kube client asks for /api/v1/nodes? (an empty query string): s_server looks that
    # file name up as it is.
    echo '{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}' \
        >'www/api/v1/nodes?'
    echo '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}' \
        >'www/api/v1/pods?&fieldSelector=spec.nodeName%3D%2Cstatus.phase%3DPending'
    echo '{"kind":"DaemonSetList","apiVersion":"apps/v1","metadata":{"resourceVersion":"1"},"items":[]}' \
        >'www/apis/apps/v1/daemonsets?'
)
for _ in 1 2 3 4 5; do
    api_port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$api_port") 2>/dev/null && continue
    (cd "$work/api/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$api_port" \
        -cert ../server.pem -key ../server.key) >"$work/api.log" 2>&1 &
    api_pid=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$api_port") 2>/dev/null && break
        sleep 0.05
    done
    kill -0 "$api_pid" 2>/dev/null && break
    api_pid=""
done
[ -n "$api_pid" ] || { echo "openssl s_server did not start:"; cat "$work/api.log"; exit 1; }
printf '%s\n' "apiVersion: v1" "kind: Config" "clusters:" "- name: stand-in" "  cluster:" \
    "    server: https://127.0.0.1:$api_port" "    certificate-authority: $work/api/ca.pem" \
    "contexts:" "- name: stand-in" "  context:" "    cluster: stand-in" "    user: bench" \
    "current-context: stand-in" "users:" "- name: bench" "  user:" "    token: bench-token" \
    >"$work/kubeconfig"

# $1: file; $2: extra top-level lines; stdin: extra lines for the prometheus section.
write_config() {
    {
        printf 'prometheus:\n  url: http://127.0.0.1:%s\n  timeout: 5s\n' "$port"
        cat
        printf 'state:\n  path: %s/state/state.json\n  lock_path: %s/state/k3s-scale.lock\n' "$work" "$work"
        printf '%s\n' "${2:-}"
    } >"$1"
}
kube_section=$(printf 'kubernetes:\n  kubeconfig: %s' "$work/kubeconfig")
write_config "$work/config.yaml" </dev/null
write_config "$work/with-api.yaml" "$kube_section" </dev/null
# The same run with every signal overridden by a constant: Prometheus answers at once, so
# this is k3s-scale's own share (start-up, config, Docker and Kubernetes listings, HTTP,
# parsing, decision, output).
write_config "$work/constant.yaml" "$kube_section" <<'EOF'
  queries:
    pending_pods: vector(0)
    pending_cpu_cores: vector(0)
    pending_memory_bytes: vector(0)
    cpu: vector(50)
    memory: vector(50)
    node_ready: label_replace(vector(1), "node", "k3s-worker-1", "", "") or label_replace(vector(1), "node", "k3s-worker-2", "", "")
    node_cpu: label_replace(vector(50), "node", "k3s-worker-1", "", "")
    node_memory: label_replace(vector(50), "node", "k3s-worker-1", "", "")
EOF

# Extra Docker daemons, each in its own network namespace (see the head of this file).
hosts_yaml=""
for i in $(seq 1 "$EXTRA_HOSTS"); do
    d="$work/dd-$i"
    mkdir -p "$d"
    echo '{}' >"$d/empty.json"
    unshare --net dockerd --config-file "$d/empty.json" --data-root "$d/data" --exec-root "$d/exec" \
        --pidfile "$d/pid" -H "unix://$d/d.sock" --storage-driver=vfs --bridge=none \
        --iptables=false --ip-masq=false >"$d/log" 2>&1 &
    dd_pids+=($!)
    hosts_yaml+="  - {name: host-$i, host: 'unix://$d/d.sock'}"$'\n'
done
for i in $(seq 1 "$EXTRA_HOSTS"); do
    for _ in $(seq 1 600); do
        docker -H "unix://$work/dd-$i/d.sock" info >/dev/null 2>&1 && break
        sleep 0.1
    done
    docker -H "unix://$work/dd-$i/d.sock" info >/dev/null 2>&1 || { echo "dockerd $i did not start:"; cat "$work/dd-$i/log"; exit 1; }
done
if ((EXTRA_HOSTS > 0)); then
    write_config "$work/one-host.yaml" "$kube_section"$'\n'"docker:"$'\n'"  hosts:"$'\n'"$(head -1 <<<"$hosts_yaml")" </dev/null
    write_config "$work/hosts.yaml" "$kube_section"$'\n'"docker:"$'\n'"  hosts:"$'\n'"$hosts_yaml" </dev/null
fi

api_cmd="$BIN --config $work/with-api.yaml --dry-run evaluate"
plain_cmd="$BIN --config $work/config.yaml --dry-run evaluate"
echo "== one run with the apiserver stand-in (expect exit 0, no action, nothing skipped):"
$api_cmd
echo "== one run without a kubeconfig (expect exit 0, no action; reconcile skipped):"
$plain_cmd
echo
echo "== $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg); data: $WORKERS workers," \
    "$((WORKERS * PODS_PER_WORKER)) pods, $SAMPLES samples per series ${SCRAPE_INTERVAL} s apart"
echo "== wall time, $RUNS runs each. Reference points: version = process start-up and clap;"
echo "   config check = + config parse, no network; constant queries = a whole run with the"
echo "   apiserver stand-in whose PromQL costs Prometheus nothing (k3s-scale's own share)."
echo "   The benchmark is 'evaluate --dry-run': with the apiserver stand-in, as a configured run."
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$work/hyperfine.json" \
    -n version "$BIN --version" \
    -n "config check" "$BIN --config $work/config.yaml config check" \
    -n "evaluate --dry-run, constant queries" "$BIN --config $work/constant.yaml --dry-run evaluate" \
    -n "evaluate --dry-run" "$api_cmd" \
    -n "evaluate --dry-run, no kubeconfig (reconcile skipped)" "$plain_cmd"

if ((EXTRA_HOSTS > 0)); then
    echo "== one run over $EXTRA_HOSTS extra Docker hosts (expect exit 0, no action):"
    $BIN --config "$work/hosts.yaml" --dry-run evaluate
    # The figure is a difference of two medians about 1 ms apart on runs of 7-10 ms, so
    # the two are timed in HOST_ROUNDS alternating rounds (which goes first alternates
    # too), not one after the other: the machine's load drifts over a benchmark (other
    # work, Prometheus's own housekeeping), and timing all of one form and then all of
    # the other put that drift into the difference (1 ms either way between runs of the
    # same binary).
    host_rounds=${HOST_ROUNDS:-10}
    per_round=$(((RUNS + host_rounds - 1) / host_rounds))
    echo "== the same dry run with docker.hosts naming one extra daemon, then all $EXTRA_HOSTS" \
        "(listed in parallel): $host_rounds alternating rounds of $per_round runs each:"
    one_cmd="$BIN --config $work/one-host.yaml --dry-run evaluate"
    all_cmd="$BIN --config $work/hosts.yaml --dry-run evaluate"
    : >"$work/host-times"
    # The CPU time (clock ticks) the daemons after the first have spent: they answer only
    # the runs over all hosts.
    others_ticks() {
        local p t=0
        for p in "${dd_pids[@]:1}"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
        echo "$t"
    }
    ticks0=$(others_ticks)
    for r in $(seq 1 "$host_rounds"); do
        if ((r % 2)); then order=(one "$one_cmd" all "$all_cmd"); else order=(all "$all_cmd" one "$one_cmd"); fi
        hyperfine -N --warmup 5 --runs "$per_round" --export-json "$work/hosts-$r.json" \
            -n "${order[0]}" "${order[1]}" -n "${order[2]}" "${order[3]}" >/dev/null
        # Every run's time, by form: "one 0.0071".
        awk '/"command":/ { gsub(/[",]/, "", $2); name = $2 }
             /"times": \[/ { t = 1; next }
             t && /\]/ { t = 0 }
             t { gsub(/[ ,]/, ""); print name, $0 }' "$work/hosts-$r.json" >>"$work/host-times"
        # k3s-scale's own CPU (user + system, mean of the round): "cpu-one 0.0041".
        awk '/"command":/ { gsub(/[",]/, "", $2); name = $2 }
             /"user":/ { gsub(/,/, "", $2); u = $2 }
             /"system":/ { gsub(/,/, "", $2); print "cpu-" name, u + $2 }' \
            "$work/hosts-$r.json" >>"$work/host-times"
    done
    # $1: one or all. The median of that form's runs over every round, in ms.
    host_median() {
        awk -v f="$1" '$1 == f { print $2 }' "$work/host-times" | sort -g |
            awk '{ a[NR] = $1 } END { printf "%.2f", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) * 1000 }'
    }
    one_ms=$(host_median one)
    all_ms=$(host_median all)
    diff_ms=$(awk -v a="$one_ms" -v b="$all_ms" 'BEGIN { printf "%.2f", b - a }')
    echo "1 host: median ${one_ms} ms; $EXTRA_HOSTS hosts: median ${all_ms} ms ($(grep -c '^one' "$work/host-times") runs each)"
    # The daemons share this machine's cores with Prometheus and k3s-scale, so their own
    # work on the listing is in the wall-time difference too; k3s-scale's own CPU shows
    # what the extra hosts cost the run itself.
    cpu_ms() { awk -v f="cpu-$1" '$1 == f { s += $2; n++ } END { printf "%.2f", s / n * 1000 }' "$work/host-times"; }
    echo "k3s-scale's own CPU per run (user + system, mean): $(cpu_ms one) ms with 1 host, $(cpu_ms all) ms with $EXTRA_HOSTS hosts"
    others_ms=$(awk -v t="$(($(others_ticks) - ticks0))" -v hz="$(getconf CLK_TCK)" -v n="$(grep -c '^all' "$work/host-times")" \
        'BEGIN { printf "%.2f", t / hz * 1000 / n }')
    echo "the $((EXTRA_HOSTS - 1)) daemons that answer only the runs over all hosts: ${others_ms} ms of CPU per such run" \
        "(warm-ups included; /proc/PID/stat, clock ticks)"
    hosts_line="RESULT several Docker hosts: median wall ${one_ms} ms with 1 host, ${all_ms} ms with $EXTRA_HOSTS hosts (difference ${diff_ms} ms; target <= 1 ms)"
fi

# Medians straight from hyperfine's JSON (one "median" per command, in order).
mapfile -t medians < <(grep -o '"median": *[0-9.e-]*' "$work/hyperfine.json" | sed 's/.*: *//')
ms() { awk -v s="$1" 'BEGIN { printf "%.2f", s * 1000 }'; }
own_ms=$(ms "${medians[2]}")
median_ms=$(ms "${medians[3]}")
plain_median_ms=$(ms "${medians[4]}")
echo
echo "medians: version $(ms "${medians[0]}") ms, config check $(ms "${medians[1]}") ms," \
    "constant queries ${own_ms} ms, evaluate --dry-run ${median_ms} ms," \
    "without a kubeconfig ${plain_median_ms} ms"

# Prometheus's own time on the query, from its engine metrics: the sum over the engine's
# slices (queue, prepare, inner eval, result sort) per query, between two readings.
engine() {
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3) |
        awk '/^prometheus_engine_query_duration_seconds_sum/ { s += $2 }
             /^prometheus_engine_query_duration_seconds_count\{slice="inner_eval"\}/ { c = $2 }
             END { printf "%.9f %d\n", s, c }'
}

# $1: label; $2: command. Prints median and max peak RSS over RSS_RUNS runs; sets rss_max.
peak_rss() {
    : >"$work/rss"
    for _ in $(seq 1 "$RSS_RUNS"); do
        /usr/bin/time -a -o "$work/rss" -f '%M' $2 >/dev/null
    done
    local median
    median=$(sort -n "$work/rss" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    rss_max=$(sort -n "$work/rss" | tail -1)
    echo "$1: median ${median} KiB, max ${rss_max} KiB"
}
echo
echo "== peak RSS, $RSS_RUNS runs each (GNU time, max resident set size)"
read -r eng_s0 eng_n0 < <(engine)
peak_rss "evaluate --dry-run" "$api_cmd"
read -r eng_s1 eng_n1 < <(engine)
api_rss_max=$rss_max
peak_rss "evaluate --dry-run, no kubeconfig" "$plain_cmd"
plain_rss_max=$rss_max
queries=$((eng_n1 - eng_n0))
prom_ms=$(awk -v a="$eng_s0" -v b="$eng_s1" -v n="$queries" 'BEGIN { printf "%.2f", (n > 0 ? (b - a) / n * 1000 : -1) }')
echo "Prometheus evaluating the default query: mean ${prom_ms} ms per run" \
    "(${queries} queries, prometheus_engine_query_duration_seconds)"

echo
verdict() { if awk -v v="$1" -v t="$2" 'BEGIN { exit !(v <= t) }'; then echo "meets"; else echo "MISSES"; fi; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
echo "RESULT evaluate --dry-run: median wall ${median_ms} ms ($(verdict "$median_ms" "$TARGET_MS") <= ${TARGET_MS} ms);" \
    "peak RSS max ${api_rss_max} KiB = $(mib "$api_rss_max") MiB ($(verdict "$api_rss_max" "$TARGET_KIB") <= 10 MiB)"
echo "RESULT   its parts: Prometheus evaluating the query ${prom_ms} ms (mean);" \
    "k3s-scale's own share (constant queries) ${own_ms} ms median ($(verdict "$own_ms" "$TARGET_MS") <= ${TARGET_MS} ms)"
echo "RESULT evaluate --dry-run, no kubeconfig (reconcile skipped): median wall ${plain_median_ms} ms;" \
    "peak RSS max ${plain_rss_max} KiB = $(mib "$plain_rss_max") MiB"
if ((EXTRA_HOSTS > 0)); then
    echo "$hosts_line"
fi
