#!/usr/bin/env bash
# A real multi-host run without remote machines: three network namespaces,
# each with its own address on a bridge (veth links), one host each for the
# coordinator and for two hosts of a server and a worker; mpirun launches
# the roles across them through netns_agent.sh (Open MPI's plm_rsh_agent)
# instead of ssh. The servers bind a wildcard and advertise their own
# namespace's address; CURVE is on. The job trains and finishes; the namespaces, links
# and bridge are removed afterwards, and nothing leaves them and loopback.
# Usage: netns_mpirun_test.sh BIN_DIR CONFIG   (root; exit 77: cannot run here)
set -euo pipefail
bin="$1" config="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if (( EUID != 0 )) || ! command -v mpirun >/dev/null || ! ip netns list >/dev/null 2>&1; then
  echo "skipped: needs root, mpirun and ip netns"
  exit 77
fi

tag="psf$$"                      # interface names stay within 15 characters
hosts=("${tag}a" "${tag}b" "${tag}c")
work="$(mktemp -d /tmp/psforge_netns_XXXXXX)"
# A /24 no interface of this machine uses.
for try in $(seq 1 50); do
  net="10.$(( RANDOM % 200 + 40 )).$(( RANDOM % 250 ))"
  ip -o addr | grep -q " ${net}\." || break
done
mpirun_pid=""
cleanup() {
  [[ -n "$mpirun_pid" ]] && kill -9 "$mpirun_pid" 2>/dev/null || true
  for i in "${!hosts[@]}"; do
    ip netns pids "${hosts[$i]}" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip link del "${tag}v$i" 2>/dev/null || true
    ip netns del "${hosts[$i]}" 2>/dev/null || true
  done
  ip link del "${tag}br" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip link add "${tag}br" type bridge
ip addr add "${net}.1/24" dev "${tag}br"
ip link set "${tag}br" up
for i in "${!hosts[@]}"; do
  h="${hosts[$i]}"
  ip netns add "$h"
  ip link add "${tag}v$i" type veth peer name "${tag}p$i"
  ip link set "${tag}p$i" netns "$h"
  ip link set "${tag}v$i" master "${tag}br" up
  ip netns exec "$h" ip addr add "${net}.$(( i + 10 ))/24" dev "${tag}p$i"
  ip netns exec "$h" ip link set "${tag}p$i" up
  ip netns exec "$h" ip link set lo up
done

coordinator="tcp://${net}.10:7070"
# CURVE, as a job that crosses a network needs: one key pair for the
# coordinator, one the servers and workers share here (one per host would
# need a command line per host).
"$bin/ps-keys" --dir "$work/keys" coordinator member >/dev/null
member_keys=(--key "$work/keys/member.key" --cluster-keys "$work/keys/cluster.keys")
printf '%s slots=1\n%s slots=2\n%s slots=2\n' "${hosts[@]}" >"$work/hosts"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
sup="$bin/ps-supervise"
# Sanitizer settings (suppressions) reach every rank.
forward=()
for v in TSAN_OPTIONS ASAN_OPTIONS UBSAN_OPTIONS; do [[ -n "${!v:-}" ]] && forward+=(-x "$v"); done
# Open MPI now and then loses one of its daemons while wiring them up
# through the agent (seen once: the coordinator host's orted never started,
# and mpirun waited for it with no rank running). The ranks then never
# start: a launch with no coordinator output after 60 s is retried, up to
# 3 times. Once the job runs, the 600 s deadline holds.
launch() {
  mpirun --hostfile "$work/hosts" --oversubscribe "${forward[@]}" \
    --mca plm_rsh_agent "$here/netns_agent.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca oob_tcp_if_include "${net}.0/24" --mca btl_tcp_if_include "${net}.0/24" \
    -np 1 --host "${hosts[0]}" "$sup" --signals-only -- "$bin/ps-coordinator" --config "$config" \
          --bind "$coordinator" --no-run-dir --summary "$work/summary.json" --set training.max_steps=300 \
          --set training.epochs=1 --set security.key="$work/keys/coordinator.key" \
          --set security.cluster_keys="$work/keys/cluster.keys" : \
    -np 2 --host "${hosts[1]},${hosts[2]}" "$sup" -- "$bin/ps-server" --coordinator "$coordinator" \
          --bind "tcp://0.0.0.0:0" "${member_keys[@]}" : \
    -np 2 --host "${hosts[1]},${hosts[2]}" "$sup" -- "$bin/ps-worker" --coordinator "$coordinator" "${member_keys[@]}" \
    >"$work/out" 2>&1 &
  mpirun_pid=$!
}
for attempt in 1 2 3; do
  launch
  started=$(( SECONDS + 60 ))
  until grep -q "listening on" "$work/out" 2>/dev/null || ! kill -0 "$mpirun_pid" 2>/dev/null || (( SECONDS >= started )); do
    sleep 0.2
  done
  if grep -q "listening on" "$work/out" 2>/dev/null || ! kill -0 "$mpirun_pid" 2>/dev/null; then break; fi
  echo "mpirun started no rank within 60 s (attempt $attempt); retrying"
  kill -9 "$mpirun_pid" 2>/dev/null || true
  wait "$mpirun_pid" 2>/dev/null || true
  for h in "${hosts[@]}"; do ip netns pids "$h" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; done
done
deadline=$(( SECONDS + 600 ))
while kill -0 "$mpirun_pid" 2>/dev/null && (( SECONDS < deadline )); do
  wait -n "$mpirun_pid" 2>/dev/null || true
done
status=0
if kill -0 "$mpirun_pid" 2>/dev/null; then
  echo "FAIL: mpirun still running after 600 s"; status=1
else
  wait "$mpirun_pid" || { echo "FAIL: mpirun exited $?"; status=1; }
fi
mpirun_pid=""
cat "$work/out"
# Each server in its own namespace, at its own address.
for i in 1 2; do
  grep -q "joined at tcp://${net}.$(( i + 10 )):" "$work/out" || { echo "FAIL: no server advertised ${net}.$(( i + 10 ))"; status=1; }
done
grep -q "final test_accuracy" "$work/out" || { echo "FAIL: the job did not finish"; status=1; }
[[ -s "$work/summary.json" ]] && python3 -c "
import json, sys
s = json.load(open('$work/summary.json'))
print('summary: steps', s['steps'], 'test_accuracy', s['test_accuracy'])
sys.exit(0 if s['steps'] == 300 and s['test_accuracy'] >= 0.75 else 1)" || { echo "FAIL: summary"; status=1; }
exit "$status"
