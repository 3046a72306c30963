#!/usr/bin/env bash
# Provides the Kubernetes binaries of the real-node e2e test (make e2e) and
# prints the directory that holds them: etcd, kube-apiserver and kubectl
# (hack/setup-envtest.sh), and kubelet, kube-controller-manager and
# kube-scheduler, built here from the Go module proxy the way
# hack/setup-envtest.sh builds kube-apiserver (a module requiring
# k8s.io/kubernetes with a replace for each staging module), under the same
# lock, cached next to kube-apiserver in bin/k8s/<version>/.
#
# stdout is the directory alone; a first run prints a line per step on
# stderr (hack/lib/progress.sh). A cached run prints nothing.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${ROOT}/bin/k8s/${K8S_VERSION}-$(go env GOOS)-$(go env GOARCH)"
NODE_BINARIES=(kubelet kube-controller-manager kube-scheduler)
# shellcheck source=hack/lib/progress.sh
source "${ROOT}/hack/lib/progress.sh"
# shellcheck source=hack/lib/k8s-module.sh
source "${ROOT}/hack/lib/k8s-module.sh"
progress_init setup-node

have() {
  local b
  for b in etcd kube-apiserver kubectl "${NODE_BINARIES[@]}"; do [ -x "${DEST}/${b}" ] || return 1; done
}

if have; then
  echo "${DEST}"; exit 0
fi
# etcd, kube-apiserver and kubectl: the envtest ones, in the same directory
# (KUBEBUILDER_ASSETS is ignored: every binary comes from bin/k8s).
assets="$(KUBEBUILDER_ASSETS='' K8S_VERSION="${K8S_VERSION}" "${ROOT}/hack/setup-envtest.sh")"
[ "${assets}" = "${DEST}" ] || { say "hack/setup-envtest.sh answered ${assets}, not ${DEST}"; exit 1; }
K8S_VERSION="${K8S_VERSION}" "${ROOT}/hack/setup-kubectl.sh" >/dev/null

# The lock hack/setup-envtest.sh takes: one build at a time in bin/k8s.
exec 9>"${DEST}.lock"
if ! flock -n 9; then
  waited=$(progress_now)
  say "waiting for another build in bin/k8s to finish (it holds ${DEST#"${ROOT}"/}.lock)..."
  flock 9
  say "the other build finished; waited $(progress_duration $(($(progress_now) - waited)))"
fi
if have; then
  echo "${DEST}"; exit 0
fi

work="$(mktemp -d)"
trap 'rc=$?; rm -rf "${work}"; progress_exit "${rc}"' EXIT
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

label="node binaries v${K8S_VERSION}"
cd "${work}"
begin "${label}" "downloading k8s.io/kubernetes and its dependencies"
k8s_module e2e/node "${NODE_BINARIES[@]}"
end downloaded
# The version k8s.io/kubernetes' build stamps: without it they report
# v0.0.0-master, which the version checks take as very old.
v="v${K8S_VERSION}" minor="${K8S_VERSION#*.}"
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X ${pkg}.gitVersion=${v} -X ${pkg}.gitMajor=${K8S_VERSION%%.*} -X ${pkg}.gitMinor=${minor%%.*}"
done
# One after the other, sharing the build cache (and kube-apiserver's): the
# kubelet is the long one. Built beside their place and renamed: a killed
# build leaves no half-written binary that the next run would take as cached.
for b in "${NODE_BINARIES[@]}"; do
  estimate="a few minutes on 2 cores"
  [ "${b}" = kubelet ] && estimate="about 10 minutes on 2 cores"
  go_build "${b} v${K8S_VERSION}" "${estimate}" "k8s.io/kubernetes/cmd/${b}" \
    -trimpath -ldflags "${ldflags}" -o "${DEST}/${b}.partial"
  mv "${DEST}/${b}.partial" "${DEST}/${b}"
done

have || { say "build finished without ${NODE_BINARIES[*]} in ${DEST}"; exit 1; }
say "${NODE_BINARIES[*]} v${K8S_VERSION} are cached in ${DEST#"${ROOT}"/}: later runs use them at once"
echo "${DEST}"
