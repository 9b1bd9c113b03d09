#!/usr/bin/env bash
# Installs the Debian packages psforge needs that are missing; a no-op when
# all are present. Usage: scripts/setup.sh [--bench]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
with_bench=0
[[ "${1:-}" == "--bench" ]] && with_bench=1

wanted=()
in_bench=0
while IFS= read -r line; do
  [[ "$line" == "# bench" ]] && { in_bench=1; continue; }
  [[ -z "$line" || "$line" == \#* ]] && continue
  (( in_bench && !with_bench )) && continue
  wanted+=("$line")
done < "$here/packages.txt"

missing=()
for p in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if (( ${#missing[@]} == 0 )); then
  echo "setup: all ${#wanted[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
(( EUID != 0 )) && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
