#!/usr/bin/env bash
# Deploys (or deletes) the test workloads on the compose stack's k3s cluster.
#   workloads/deploy-workloads.sh            apply test-workload.yaml
#   workloads/deploy-workloads.sh delete     remove everything it applied
#   workloads/deploy-workloads.sh status     nodes and the test pods
# Uses the host's kubectl with compose/kubeconfig/kubeconfig.yaml (written by k3s-server);
# without kubectl on the host it runs kubectl inside the k3s-server container.
# Environment: K3S_SCALE_KUBECONFIG (default: the compose kubeconfig; $KUBECONFIG is
# deliberately not used, so this never lands on another cluster), K3S_API_SERVER (default
# https://127.0.0.1:6443, the published port), K3S_SERVER_CONTAINER (default k3s-server).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
manifest="$here/test-workload.yaml"
kubeconfig="${K3S_SCALE_KUBECONFIG:-$here/../compose/kubeconfig/kubeconfig.yaml}"
server="${K3S_API_SERVER:-https://127.0.0.1:6443}"
container="${K3S_SERVER_CONTAINER:-k3s-server}"
selector="app.kubernetes.io/part-of=k3s-scale-test"

kube() {
    if command -v kubectl >/dev/null 2>&1 && [ -r "$kubeconfig" ]; then
        kubectl --kubeconfig "$kubeconfig" --server "$server" "$@"
    elif command -v docker >/dev/null 2>&1 && docker inspect "$container" >/dev/null 2>&1; then
        # The manifest goes in on stdin (`-f -`): the container cannot see this folder.
        docker exec -i "$container" kubectl "$@"
    else
        echo "error: need kubectl and a readable $kubeconfig, or a running $container container" >&2
        echo "       (start the stack: docker compose -f compose/docker-compose.yml up -d)" >&2
        exit 1
    fi
}

case "${1:-apply}" in
    apply | deploy)
        kube apply -f - <"$manifest"
        echo "deployed; watch it scale: kubectl get nodes -w, or Grafana at http://127.0.0.1:3000"
        ;;
    delete | clean | cleanup)
        kube delete --ignore-not-found=true --wait=false -f - <"$manifest"
        echo "deleted the test workloads; k3s-scale removes the extra workers once idle (scaling.scale_down_unneeded_time)"
        ;;
    status)
        kube get nodes -o wide
        kube get pods -l "$selector" -o wide
        ;;
    -h | --help | help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        echo "usage: $0 [apply|delete|status]" >&2
        exit 2
        ;;
esac
