#!/usr/bin/env bash
# Separate hosts for flpeer members on one machine: one network namespace per
# member, each joined by a veth pair to a bridge in a switch namespace. Member
# i is 10.77.0.i/24 in namespace PREFIX-i. A link between two members is cut by
# a `prohibit` route on both ends (the other links stay up), and healed again.
# Needs root (or CAP_NET_ADMIN) and iproute2.
#
#   netns.sh up PREFIX N         create PREFIX-sw and PREFIX-1 … PREFIX-N
#   netns.sh cut PREFIX A B      cut the link between members A and B
#   netns.sh heal PREFIX A B     restore it
#   netns.sh exec PREFIX I CMD…  run CMD in member I's namespace
#   netns.sh down PREFIX N       delete the namespaces (and their links)
#
# PREFIX is at most 6 characters (interface names are limited to 15).
set -euo pipefail
usage() { sed -n 2,14p "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 p=$2
[ ${#p} -le 6 ] || { echo "netns.sh: prefix '$p' is longer than 6 characters" >&2; exit 2; }
case "$cmd" in
  up)
    n=${3:?member count}
    ip netns add "$p-sw"
    ip -n "$p-sw" link add br0 type bridge
    ip -n "$p-sw" link set br0 up
    for i in $(seq 1 "$n"); do
      ip netns add "$p-$i"
      ip link add "${p}v$i" type veth peer name "${p}e$i"
      ip link set "${p}v$i" netns "$p-sw"
      ip link set "${p}e$i" netns "$p-$i"
      ip -n "$p-sw" link set "${p}v$i" master br0 up
      ip -n "$p-$i" addr add "10.77.0.$i/24" dev "${p}e$i"
      ip -n "$p-$i" link set "${p}e$i" up
      ip -n "$p-$i" link set lo up
    done ;;
  cut)
    ip -n "$p-$3" route add prohibit "10.77.0.$4/32"
    ip -n "$p-$4" route add prohibit "10.77.0.$3/32" ;;
  heal)
    ip -n "$p-$3" route del prohibit "10.77.0.$4/32"
    ip -n "$p-$4" route del prohibit "10.77.0.$3/32" ;;
  exec)
    i=$3; shift 3
    exec ip netns exec "$p-$i" "$@" ;;
  down)
    n=${3:?member count}
    for i in $(seq 1 "$n"); do ip netns del "$p-$i" 2>/dev/null || true; done
    ip netns del "$p-sw" 2>/dev/null || true ;;
  *) usage ;;
esac
