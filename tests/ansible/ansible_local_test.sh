#!/usr/bin/env bash
# The playbooks run for real against this machine (inventory/local.yml,
# local connection) into a temporary prefix: ansible-lint and
# --syntax-check pass; site.yml provisions (packages, the project built from
# the checked-out commit, the job's config, hostfile, launch script and
# CURVE keys) and a second run reports changed=0; launch.yml trains a short
# job on the deployed cluster (2 servers, 2 workers, CURVE on) to the end;
# collect.yml brings its results back; stop.yml leaves nothing running.
# Usage: ansible_local_test.sh SOURCE_DIR   (root; exit 77: cannot run here)
set -euo pipefail
source_dir="$1"
if (( EUID != 0 )) || ! command -v ansible-playbook >/dev/null || ! command -v ansible-lint >/dev/null; then
  echo "skipped: needs root, ansible-playbook and ansible-lint"
  exit 77
fi
work="$(mktemp -d /tmp/psforge_ansible_XXXXXX)"
cleanup() {
  pkill -KILL -f "$work/opt/src/build/bin/ps-" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export TMPDIR="$work" ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP="$work/.ansible-tmp" ANSIBLE_REMOTE_TEMP="$work/.ansible-tmp"
# The coordinator's port is fixed when site.yml writes launch.sh, minutes
# before launch.yml binds it: one the OS picked then (an ephemeral port) can
# meanwhile be some connection's local port ("Address already in use", seen
# once). So a free port below the ephemeral range, which connections never get.
port=$(python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    p = random.randrange(10000, low)
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", p))
        except OSError:
            continue
    print(p)
    break
else:
    raise SystemExit("no free port below the ephemeral range")
PY
)
vars="psforge_source=$source_dir psforge_prefix=$work/opt psforge_etc=$work/etc psforge_data_dir=$work/data
      psforge_servers_per_host=2 psforge_workers_per_host=2 psforge_epochs=1 psforge_coordinator_port=$port"
cd "$source_dir/ansible"
fail() { echo "FAIL: $*"; exit 1; }
play() { ansible-playbook -i inventory/local.yml "$@" -e "$vars"; }

ansible-playbook --syntax-check -i inventory/example.yml site.yml launch.yml stop.yml collect.yml
ansible-lint -p site.yml launch.yml stop.yml collect.yml || fail "ansible-lint"

play site.yml | tee "$work/site1.log" | tail -3
grep -Eq "localhost +: ok=[0-9]+ +changed=[0-9]+ +unreachable=0 +failed=0" "$work/site1.log" || fail "site.yml failed"
play site.yml | tee "$work/site2.log" | tail -3
grep -Eq "localhost +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0" "$work/site2.log" || fail "a second site.yml changed something"

play launch.yml -e psforge_wait=true -e psforge_wait_s=600 | tee "$work/launch.log"
grep -q "every server applied each of the 60000 records exactly once" "$work/launch.log" || fail "the job did not finish"
play collect.yml -e "psforge_collect_dir=$work/collected" | tail -3
python3 - "$work/collected/localhost/summary.json" <<'PY' || fail "the collected summary"
import json, sys
s = json.load(open(sys.argv[1]))
print("collected summary: epochs", s["epochs"], "test_accuracy", s["test_accuracy"])
sys.exit(0 if s["epochs"] == 1 and s["test_accuracy"] >= 0.80 and s["servers"] == 2 and s["workers"] == 2 else 1)
PY
ls "$work"/collected/localhost/runs/*/metrics.jsonl >/dev/null || fail "no metrics collected"
play stop.yml | tail -3
if pgrep -f "$work/opt/src/build/bin/ps-" >/dev/null; then fail "processes left running after stop.yml"; fi
echo "PASS"
