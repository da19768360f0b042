# A lab in network namespaces for the delivery test and benchmark
# (tests/lab/delivery_netns.sh, bench/delivery.sh): one bridge in a namespace
# of its own (nothing is added to the host's network), a server namespace and
# N receiver namespaces, each joined to the bridge by a veth pair, addresses
# 10.77.0.1 (server) and 10.77.0.(10+i) (receiver i) on 10.77.0.0/24.
#
# Every name made here starts with a prefix unique to this run (the PID), so
# two runs never meet and the cleanup removes only what this run made.
# Source it, set NETNS_PREFIX if wanted, call netns_up N [RATE], and trap
# netns_down on EXIT.

NETNS_PREFIX=${NETNS_PREFIX:-td$$}
NETNS_MADE=()

netns_bridge() { echo "${NETNS_PREFIX}b"; }
netns_server() { echo "${NETNS_PREFIX}s"; }
netns_receiver() { echo "${NETNS_PREFIX}r$1"; }
netns_receiver_ip() { echo "10.77.0.$((10 + $1))"; }
NETNS_SERVER_IP=10.77.0.1

# tc rate limit on an interface's egress (a token bucket, the model of one
# switch port): RATE such as 200mbit, or "" for none.
netns_limit() {
  local ns=$1 dev=$2 rate=$3
  [ -n "$rate" ] || return 0
  ip netns exec "$ns" tc qdisc replace dev "$dev" root tbf rate "$rate" burst 256kb latency 100ms
}

# One namespace on the bridge: veth "eth0" inside, "p<name>" on the bridge;
# the port's egress (towards the machine) and the machine's egress both limited.
netns_attach() {
  local ns=$1 ip=$2 rate=$3 port
  port=p${ns#"$NETNS_PREFIX"}
  ip netns add "$ns"
  NETNS_MADE+=("$ns")
  ip -n "$(netns_bridge)" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$(netns_bridge)" link set "$port" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$ip/24" brd + dev eth0
  ip -n "$ns" link set eth0 up
  # Multicast leaves by eth0 (the default route is there).
  ip -n "$ns" route add default dev eth0
  netns_limit "$(netns_bridge)" "$port" "$rate"
  netns_limit "$ns" eth0 "$rate"
}

# netns_up N [RATE]: the bridge, the server and N receivers.
netns_up() {
  local count=$1 rate=${2:-} i
  ip netns add "$(netns_bridge)"
  NETNS_MADE+=("$(netns_bridge)")
  ip -n "$(netns_bridge)" link add br0 type bridge
  # No IGMP snooping on this bridge: every port gets every group, as on an
  # unmanaged switch (docs/delivery.md); a querier-less snooping bridge
  # would drop the groups after its timeout.
  ip -n "$(netns_bridge)" link set br0 type bridge mcast_snooping 0
  ip -n "$(netns_bridge)" link set br0 up
  netns_attach "$(netns_server)" "$NETNS_SERVER_IP" "$rate"
  for ((i = 1; i <= count; i++)); do
    netns_attach "$(netns_receiver "$i")" "$(netns_receiver_ip "$i")" "$rate"
  done
}

# netns_subnet2 I: a second subnet, 10.78.0.0/24 on a second bridge: the
# server gets eth1 (10.78.0.1) and receiver I (10.78.0.(10+I)) lives there
# only, as a classroom behind another router interface would.
NETNS_SERVER_IP2=10.78.0.1
netns_subnet2() {
  local i=$1 ns
  ns=$(netns_receiver "$i")
  ip -n "$(netns_bridge)" link add br1 type bridge
  ip -n "$(netns_bridge)" link set br1 type bridge mcast_snooping 0
  ip -n "$(netns_bridge)" link set br1 up
  ip -n "$(netns_bridge)" link add ps2 type veth peer name eth1 netns "$(netns_server)"
  ip -n "$(netns_bridge)" link set ps2 master br1 up
  ip -n "$(netns_server)" addr add "$NETNS_SERVER_IP2/24" brd + dev eth1
  ip -n "$(netns_server)" link set eth1 up
  ip netns add "$ns"
  NETNS_MADE+=("$ns")
  ip -n "$(netns_bridge)" link add "p2r$i" type veth peer name eth0 netns "$ns"
  ip -n "$(netns_bridge)" link set "p2r$i" master br1 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "10.78.0.$((10 + i))/24" brd + dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default dev eth0
}

# Bytes the server's interface has sent so far.
netns_server_tx_bytes() {
  ip netns exec "$(netns_server)" cat /sys/class/net/eth0/statistics/tx_bytes
}

# Kills what runs in the namespaces this run made, then removes them (the
# veth pairs and the bridge go with them). Safe to call twice.
netns_down() {
  local ns pid
  for ns in "${NETNS_MADE[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  for ns in "${NETNS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  NETNS_MADE=()
}
