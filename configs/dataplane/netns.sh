#!/usr/bin/env bash
# Build (up) or remove (down) the namespaces of the two-node data-plane example:
#   dpx-h<k> (host 10.<k>.0.2, fd00:<k>::2) -- dpx-n<k> (node, RLOC 172.16.<k>.2) -- dpx-core
# Run as root from the repository root: configs/dataplane/netns.sh up|down
set -euo pipefail
ns() { ip netns exec "$@"; }
if [ "${1:-}" = down ]; then
  for n in dpx-h1 dpx-h2 dpx-n1 dpx-n2 dpx-core; do ip netns del "$n" 2>/dev/null || true; done
  exit 0
fi
for n in dpx-core dpx-n1 dpx-n2 dpx-h1 dpx-h2; do ip netns add "$n"; ip -n "$n" link set lo up; done
ns dpx-core sysctl -qw net.ipv4.ip_forward=1
for k in 1 2; do
  ip link add eth0 netns dpx-n$k type veth peer name n$k netns dpx-core
  ip link add hv netns dpx-n$k type veth peer name eth0 netns dpx-h$k
  ip -n dpx-core addr add 172.16.$k.1/24 dev n$k; ip -n dpx-core link set n$k up
  ip -n dpx-core route add 10.$k.0.0/16 via 172.16.$k.2
  ip -n dpx-n$k addr add 172.16.$k.2/24 dev eth0; ip -n dpx-n$k link set eth0 up
  ip -n dpx-n$k route add default via 172.16.$k.1
  ip -n dpx-n$k addr add 10.$k.0.1/24 dev hv; ip -n dpx-n$k -6 addr add fd00:$k::1/64 dev hv nodad
  ip -n dpx-n$k link set hv up
  ns dpx-n$k sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  ip -n dpx-h$k addr add 10.$k.0.2/24 dev eth0; ip -n dpx-h$k -6 addr add fd00:$k::2/64 dev eth0 nodad
  ip -n dpx-h$k link set eth0 up
  ip -n dpx-h$k route add default via 10.$k.0.1; ip -n dpx-h$k -6 route add default via fd00:$k::1
done
