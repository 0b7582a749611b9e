#!/usr/bin/env bash
# End to end on a real cluster: a kind cluster with one edge worker, the
# xingress image built from this tree, deploy/, and the cafe example; then
# HTTPS requests through the edge node with the example's certificate
# verified. Needs docker, kind and kubectl on a host or VM with a Docker
# engine (these build machines have none, so CI does not run it).
# KEEP=1 keeps the cluster afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
cluster=${CLUSTER:-xingress-e2e}
image=xingress:e2e

kind create cluster --name "$cluster" --config - <<'KIND'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
  labels:
    node-role.kubernetes.io/edge: ""
KIND
cleanup() { [ "${KEEP:-}" = 1 ] || kind delete cluster --name "$cluster"; }
trap cleanup EXIT

docker build -f deploy/Dockerfile -t "$image" .
kind load docker-image "$image" --name "$cluster"

kubectl apply -k deploy/
kubectl -n xingress set image daemonset/xingress xingress="$image"
kubectl -n xingress rollout status daemonset/xingress --timeout=300s

kubectl create secret tls cafe-secret --cert tests/fixtures/tls/cafe.crt --key tests/fixtures/tls/cafe.key
kubectl apply -f tests/e2e/cafe.yaml
kubectl wait --for=condition=available deployment/tea deployment/coffee --timeout=300s

node_ip=$(kubectl get node "$cluster-worker" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
fail=0
for path in tea coffee; do
  for _ in 1 2 3 4; do
    # Retry briefly: the agent serves routes once its snapshot has them.
    for _ in $(seq 1 20); do
      body=$(curl -sS --max-time 5 --resolve "cafe.example.com:443:$node_ip" \
        --cacert tests/fixtures/tls/ca.crt "https://cafe.example.com/$path" || true)
      [ -n "$body" ] && break
      sleep 1
    done
    echo "GET https://cafe.example.com/$path -> $body"
    [ "$body" = "$path" ] || fail=1
  done
done
code=$(curl -s -o /dev/null -w '%{http_code}' --resolve "cafe.example.com:80:$node_ip" "http://cafe.example.com/tea")
echo "GET http://cafe.example.com/tea -> $code (expect 308 to HTTPS)"
[ "$code" = 308 ] || fail=1
# The leader (the only agent, on the one edge node) publishes its node IP.
status_ip=""
for _ in $(seq 1 20); do
  status_ip=$(kubectl get ingress cafe-ingress -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
  [ -n "$status_ip" ] && break
  sleep 1
done
echo "Ingress cafe-ingress status: $status_ip (expect $node_ip)"
[ "$status_ip" = "$node_ip" ] || fail=1
kubectl -n xingress get lease xingress-leader -o jsonpath='{.spec.holderIdentity}{"\n"}'
kubectl -n xingress logs daemonset/xingress --tail=20
exit "$fail"
