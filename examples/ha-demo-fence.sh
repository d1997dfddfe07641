#!/bin/sh
# DEMO ONLY: the fence command of the one-machine HA demo (examples/ha-node1.toml, ha-node2.toml).
# It "powers off" the peer node by SIGKILLing its nm-daemon and every server it started. A real
# fence command powers the peer *machine* off (IPMI, a PDU, a cloud API) and exits 0 only once it
# is off: see docs/ha.md.
# nm runs it by its absolute path (resolved against the config's directory): the demo's files
# are in run/ha-demo beside it
demo="$(dirname "$0")/run/ha-demo"
dir=$demo/$NM_HA_PEER
echo "$(date -Iseconds) $NM_HA_NODE fences $NM_HA_PEER" >> "$demo/fence.log"
# nm.lock names the last active daemon, which may have exited cleanly and its PID been reused:
# kill it only if that PID is still an nm-daemon running this peer's config
pid=$(cat "$dir/nm.lock" 2>/dev/null)
case $pid in
    ''|*[!0-9]*) ;;
    *) if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "nm-daemon.*ha-$NM_HA_PEER.toml"; then
           kill -9 "$pid" 2>/dev/null
       fi ;;
esac
for e in /proc/[0-9]*/environ; do
    if tr '\0' '\n' < "$e" 2>/dev/null | grep -qx "NM_DEMO_NODE=$NM_HA_PEER"; then
        p=${e#/proc/}
        kill -9 "${p%/environ}" 2>/dev/null
    fi
done
exit 0
