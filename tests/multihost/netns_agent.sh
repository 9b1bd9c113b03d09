#!/bin/sh
# Open MPI's launch agent for hosts that are network namespaces on this
# machine (plm_rsh_agent): "netns_agent.sh HOST COMMAND..." runs COMMAND in
# namespace HOST, as ssh would run it on host HOST.
host="$1"
shift
exec ip netns exec "$host" /bin/sh -c "$*"
