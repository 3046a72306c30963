#!/usr/bin/env bash
# The real-node end-to-end test (make e2e): builds what it needs, then runs
# test/e2e (go test -tags e2e) inside a network namespace of its own, where
# that test starts a one-node cluster (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd and the kubelet),
# imports the operator image of `make image`, installs the chart with Helm
# and checks the operator's Pods. Afterwards it stops every process of the
# run by its PID, removes the namespace and its cgroups, and restores what
# the kubelet changed on the host (docs: CONTRIBUTING.md; what is known to
# work on these machines: real-node.md of the project's reference notes).
#
#   hack/e2e/run.sh          the test (root, Linux)
#   hack/e2e/run.sh --clean  only the clean-up, e.g. after a run was killed
#
# Needs root and, from the distribution, containerd, runc, the CNI plugins
# and iptables (installed with apt-get when missing). Environment: HELM,
# IMG and IMAGE_TAR (from the Makefile), E2E_TIMEOUT (go test -timeout of
# the test itself, default 20m), E2E_ARGS (more go test flags, e.g.
# -ginkgo.focus=...), E2E_KEEP_LOGS (where the logs of the run are copied,
# default bin/e2e/logs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${ROOT}/bin/e2e"
STATE="${STATE_DIR}/host-state"
RUN_DIR="/tmp/usersync-e2e"
LOGS="${E2E_KEEP_LOGS:-${STATE_DIR}/logs}"

# The network namespace, and the addresses inside it: the node's address on
# a veth interface (the API server, the kubelet and the vendor emulators
# listen on it), the Pods' bridge network, and the Service network whose
# first address (the kubernetes Service) is sent to the API server by a
# DNAT rule in the namespace: there is no kube-proxy.
NETNS=usersync-e2e
NODE_IF=e2e0
NODE_IP=10.213.0.1
POD_CIDR=10.214.0.0/24
SERVICE_CIDR=10.215.0.0/24
KUBERNETES_SVC_IP=10.215.0.1
API_PORT=6443
# The cgroup of the run: every process the test starts lands in
# <hierarchy>/usersync-e2e/run (so the clean-up finds each by its PID even
# when its parent died), and the kubelet's cgroupRoot is /usersync-e2e (its
# Pods in /usersync-e2e/kubepods).
CGROUP=usersync-e2e
# What the kubelet changes on the host, and a test must put back: kernel
# tunables it sets at start, and fixed paths it (or containerd and the CNI
# plugins) creates whatever their configuration says.
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
FIXED_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni
  /run/containerd /opt/containerd /etc/cni /run/netns)
# Top-level cgroups the run may create: its own, and containerd's default
# parent for containers that name none.
CGROUP_NAMES=("${CGROUP}" k8s.io)

log() { echo "e2e: $*" >&2; }
die() { log "$*"; exit 1; }

cgroup_v2() { [ -f /sys/fs/cgroup/cgroup.controllers ]; }

# The directories of a top-level cgroup in every hierarchy (v1), or the one
# of the unified hierarchy (v2).
cgroup_dirs() {
  local name="$1" d
  if cgroup_v2; then
    [ -d "/sys/fs/cgroup/${name}" ] && echo "/sys/fs/cgroup/${name}"
    return 0
  fi
  for d in /sys/fs/cgroup/*/; do
    [ -d "${d}${name}" ] && echo "${d%/}/${name}"
  done
  return 0
}

# The PIDs in the cgroup trees of the run.
run_pids() {
  local name dir
  for name in "${CGROUP_NAMES[@]}"; do
    grep -qx "cgroup ${name}" "${STATE}" 2>/dev/null || [ "${name}" = "${CGROUP}" ] || continue
    while read -r dir; do
      find "${dir}" -name cgroup.procs -exec cat {} + 2>/dev/null
    done < <(cgroup_dirs "${name}")
  done | sort -un
}

# Stops every process of the run by its PID: SIGTERM, then SIGKILL for those
# still there after 10 s. The test stops what it started itself; this finds
# what it could not (its own death, containerd's shims, containers).
stop_run_processes() {
  local pids i
  pids="$(run_pids)"
  [ -z "${pids}" ] && return 0
  log "stopping the processes left in the run's cgroup: $(echo ${pids})"
  kill -TERM ${pids} 2>/dev/null || true
  for i in $(seq 1 100); do
    pids="$(run_pids)"; [ -z "${pids}" ] && return 0; sleep 0.1
  done
  log "killing: $(echo ${pids})"
  kill -KILL ${pids} 2>/dev/null || true
  for i in $(seq 1 100); do
    pids="$(run_pids)"; [ -z "${pids}" ] && return 0; sleep 0.1
  done
  log "WARNING: processes remain in the run's cgroup: $(echo ${pids})"
}

remove_cgroups() {
  local name dir
  for name in "${CGROUP_NAMES[@]}"; do
    grep -qx "cgroup ${name}" "${STATE}" 2>/dev/null || [ "${name}" = "${CGROUP}" ] || continue
    while read -r dir; do
      # Deepest first: a cgroup is removed with rmdir once it is empty.
      find "${dir}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ -d "${dir}" ] && log "WARNING: cgroup ${dir} could not be removed"
    done < <(cgroup_dirs "${name}")
  done
  return 0
}

# Mounts of the host below a path, deepest first.
mounts_below() {
  findmnt -rn -o TARGET | awk -v p="$1" '$0 == p || index($0, p "/") == 1' | sort -r
}

unmount_below() {
  local m
  while read -r m; do
    [ -n "${m}" ] || continue
    log "unmounting ${m}"
    umount "${m}" 2>/dev/null || umount -l "${m}" || log "WARNING: cannot unmount ${m}"
  done < <(mounts_below "$1")
}

# The clean-up: safe to run at any time, and again. It reads what the host
# looked like before the run from ${STATE}.
clean() {
  set +e # best effort: one step failing must not skip the others
  [ -f "${STATE}" ] || { ip netns list 2>/dev/null | grep -q "^${NETNS}\b" && ip netns del "${NETNS}"; return 0; }
  log "cleaning up"
  stop_run_processes
  remove_cgroups
  if ip netns list 2>/dev/null | grep -q "^${NETNS}\b"; then
    ip netns del "${NETNS}" || log "WARNING: cannot remove network namespace ${NETNS}"
  fi
  # The test runs in a mount namespace of its own, so the kubelet's and
  # containerd's mounts end with its last process; nothing should be left.
  unmount_below "${RUN_DIR}"
  local line key value now path
  while read -r line; do
    case "${line}" in
      sysctl\ *)
        key="${line#sysctl }"; value="${key#*=}"; key="${key%%=*}"
        now="$(sysctl -n "${key}" 2>/dev/null || true)"
        if [ -n "${now}" ] && [ "${now}" != "${value}" ]; then
          log "restoring ${key} = ${value} (was set to ${now})"
          sysctl -q -w "${key}=${value}" >/dev/null || log "WARNING: cannot restore ${key}"
        fi ;;
      newpath\ *)
        path="${line#newpath }"
        [ -e "${path}" ] || continue
        if [ "${path}" = /run/netns ]; then
          # ip netns add made it a mount point; keep it while other
          # namespaces live there.
          if [ -z "$(ls -A /run/netns)" ]; then
            unmount_below /run/netns; rmdir /run/netns 2>/dev/null || true
          fi
          continue
        fi
        unmount_below "${path}"
        log "removing ${path} (created by the run)"
        rm -rf "${path}" ;;
    esac
  done < "${STATE}"
  if [ -d "${RUN_DIR}/logs" ]; then
    rm -rf "${LOGS}" && mkdir -p "${LOGS}" && cp -r "${RUN_DIR}/logs/." "${LOGS}/" 2>/dev/null || true
    log "logs of the run: ${LOGS}"
  fi
  rm -rf "${RUN_DIR}"
  rm -f "${STATE}"
}

# Records what the clean-up restores, before anything changes.
record_host_state() {
  local k p name
  mkdir -p "${STATE_DIR}"
  {
    for k in "${SYSCTLS[@]}"; do
      if v="$(sysctl -n "${k}" 2>/dev/null)"; then echo "sysctl ${k}=${v}"; fi
    done
    for p in "${FIXED_PATHS[@]}"; do [ -e "${p}" ] || echo "newpath ${p}"; done
    for name in "${CGROUP_NAMES[@]}"; do
      [ -n "$(cgroup_dirs "${name}")" ] || echo "cgroup ${name}"
    done
  } > "${STATE}.tmp"
  mv "${STATE}.tmp" "${STATE}"
}

# One run at a time on a machine: the namespace, cgroup and run directory
# have fixed names.
mkdir -p "${STATE_DIR}"
exec 8>"${STATE_DIR}/lock"
flock -n 8 || die "another make e2e runs (${STATE_DIR}/lock)"

[ "$(uname -s)" = Linux ] || die "needs Linux (a kubelet, containerd and network namespaces)"
[ "$(id -u)" = 0 ] || die "needs root: it starts containerd and a kubelet, creates a network namespace and cgroups"

if [ "${1:-}" = --clean ]; then
  clean
  exit 0
fi
# A run that was killed before its clean-up left its state: restore the
# host from it first, or its changed values would be recorded as originals.
if [ -f "${STATE}" ] || ip netns list 2>/dev/null | grep -q "^${NETNS}\b"; then
  log "a previous run did not clean up; cleaning up after it first"
  clean
fi

# Distribution packages.
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
if [ "${#need[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${need[*]}: install them (Debian package names) and run again"
  log "installing ${need[*]} with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
    die "apt-get install ${need[*]} failed"
fi

# What the test needs, built before the namespace exists (the builds use the
# Go module proxy; nothing inside the namespace reaches the network).
t0=$(date +%s)
HELM="${HELM:?set by make e2e}"
IMG="${IMG:?set by make e2e}"
IMAGE_TAR="$(cd "$(dirname "${IMAGE_TAR:?set by make e2e}")" && pwd)/$(basename "${IMAGE_TAR}")"
[ -f "${IMAGE_TAR}" ] || die "${IMAGE_TAR} is missing: make image writes it"
log "providing the Kubernetes binaries (hack/e2e/setup-node.sh; about 10 minutes the first time)"
K8S_DIR="$(nice -n 19 "${ROOT}/hack/e2e/setup-node.sh")"
log "building the test and the pause binary"
(cd "${ROOT}" && nice -n 19 go test -c -tags e2e -o "${STATE_DIR}/e2e.test" ./test/e2e)
(cd "${ROOT}" && CGO_ENABLED=0 nice -n 19 go build -trimpath -ldflags "-s -w" -o "${STATE_DIR}/pause" ./hack/e2e/pause)
log "binaries ready in $(( $(date +%s) - t0 ))s"

# From here on the host changes: record it, and clean up on every exit. A
# signal lets the test (in the foreground) stop what it started first.
record_host_state
trap 'rc=$?; clean; exit ${rc}' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rm -rf "${RUN_DIR}"
mkdir -p "${RUN_DIR}/logs"

log "creating network namespace ${NETNS} (node ${NODE_IP}, Pods ${POD_CIDR}, Services ${SERVICE_CIDR})"
ip netns add "${NETNS}"
nsx() { nsenter --net="/run/netns/${NETNS}" "$@"; }
nsx ip link set lo up
# The node's address on one end of a veth pair whose both ends stay in the
# namespace (this kernel has no dummy interfaces). No default route: what
# is not in the namespace is unreachable.
nsx ip link add "${NODE_IF}" type veth peer name "${NODE_IF}peer"
nsx ip addr add "${NODE_IP}/24" dev "${NODE_IF}"
nsx ip link set "${NODE_IF}peer" up
nsx ip link set "${NODE_IF}" up
# The kubernetes Service, which the operator's in-cluster config names
# (KUBERNETES_SERVICE_HOST), is the API server: the one rule kube-proxy
# would write for it, from the Pods (PREROUTING) and from the node (OUTPUT).
for chain in PREROUTING OUTPUT; do
  nsx iptables -t nat -A "${chain}" -d "${KUBERNETES_SVC_IP}/32" -p tcp --dport 443 \
    -j DNAT --to-destination "${NODE_IP}:${API_PORT}" -m comment --comment "usersync-e2e: kubernetes Service"
done

# The run's cgroup; the kubelet needs its cgroupRoot in every hierarchy, and
# the cpuset hierarchy needs cpus and mems before a process may join.
if cgroup_v2; then
  mkdir -p "/sys/fs/cgroup/${CGROUP}/run"
  procs="/sys/fs/cgroup/${CGROUP}/run/cgroup.procs"
else
  for d in /sys/fs/cgroup/*/; do
    [ -f "${d}cgroup.procs" ] || continue
    case "${d}" in */unified/) continue ;; esac
    mkdir -p "${d}${CGROUP}/run"
    if [ -f "${d}cpuset.cpus" ]; then
      for f in cpuset.cpus cpuset.mems; do
        cat "${d}${f}" > "${d}${CGROUP}/${f}"; cat "${d}${f}" > "${d}${CGROUP}/run/${f}"
      done
    fi
  done
  procs="/sys/fs/cgroup/pids/${CGROUP}/run/cgroup.procs"
  [ -f "${procs}" ] || procs="$(ls -d /sys/fs/cgroup/*/"${CGROUP}"/run/cgroup.procs | head -1)"
fi

log "running test/e2e in ${NETNS} (logs in ${RUN_DIR}/logs, kept in ${LOGS})"
t1=$(date +%s)
set +e
(
  echo "${BASHPID}" > "${procs}"
  exec 8>&- # the lock is the wrapper's: it ends when the wrapper ends
  cd "${ROOT}/test/e2e"
  # A mount namespace of its own, receiving the host's mounts but giving
  # none back: the kubelet's and containerd's mounts end with the run.
  exec env \
    E2E_K8S_DIR="${K8S_DIR}" E2E_HELM="${HELM}" E2E_IMAGE="${IMG}" E2E_IMAGE_TAR="${IMAGE_TAR}" \
    E2E_PAUSE="${STATE_DIR}/pause" E2E_RUN_DIR="${RUN_DIR}" E2E_NODE_IP="${NODE_IP}" \
    E2E_POD_CIDR="${POD_CIDR}" E2E_SERVICE_CIDR="${SERVICE_CIDR}" E2E_API_PORT="${API_PORT}" \
    E2E_CGROUP_ROOT="/${CGROUP}" E2E_CHART="${ROOT}/charts/usersync-operator" \
    unshare --mount --propagation slave \
    nsenter --net="/run/netns/${NETNS}" \
    "${STATE_DIR}/e2e.test" -test.v -test.count=1 -test.timeout="${E2E_TIMEOUT:-20m}" \
    -ginkgo.v ${E2E_ARGS:-}
)
rc=$?
set -e
log "test/e2e finished in $(( $(date +%s) - t1 ))s with status ${rc}"
exit "${rc}"
