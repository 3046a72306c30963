#!/usr/bin/env bash
# Provides kubectl of the envtest Kubernetes version and prints its path
# (the test of the printed kubectl commands, test/kubectl, runs it).
#
# Order of preference:
#   1. KUBECTL, if it is set and executable;
#   2. a cached build in bin/k8s/<version>/ (next to kube-apiserver);
#   3. a build of k8s.io/kubernetes/cmd/kubectl from the Go module proxy
#      (the module hack/setup-envtest.sh builds kube-apiserver from), a few
#      minutes on 2 cores, cached in bin/k8s/<version>/.
# A kubectl on PATH is not used: its version is whatever the machine has.
#
# stdout is the path alone; a build prints a line per step with the time
# since the start on stderr (hack/lib/progress.sh); a cached kubectl prints
# nothing.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${ROOT}/bin/k8s/${K8S_VERSION}-$(go env GOOS)-$(go env GOARCH)"
# shellcheck source=hack/lib/progress.sh
source "${ROOT}/hack/lib/progress.sh"
# shellcheck source=hack/lib/k8s-module.sh
source "${ROOT}/hack/lib/k8s-module.sh"
progress_init setup-kubectl

if [ -n "${KUBECTL:-}" ] && [ -x "${KUBECTL}" ]; then
  echo "${KUBECTL}"; exit 0
fi
if [ -x "${DEST}/kubectl" ]; then
  echo "${DEST}/kubectl"; exit 0
fi
mkdir -p "${DEST}"
# The lock hack/setup-envtest.sh takes: one build at a time in bin/k8s.
exec 9>"${DEST}.lock"
if ! flock -n 9; then
  waited=$(progress_now)
  say "waiting for another build in bin/k8s to finish (it holds ${DEST#"${ROOT}"/}.lock)..."
  flock 9
  say "the other build finished; waited $(progress_duration $(($(progress_now) - waited)))"
fi
if [ -x "${DEST}/kubectl" ]; then
  echo "${DEST}/kubectl"; exit 0
fi

work="$(mktemp -d)"
trap 'rc=$?; rm -rf "${work}"; progress_exit "${rc}"' EXIT
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

label="kubectl v${K8S_VERSION}"
cd "${work}"
begin "${label}" "downloading k8s.io/kubernetes and its dependencies"
k8s_module envtest/kubectl kubectl
end downloaded
# The version k8s.io/kubernetes' build stamps (kubectl version, and its
# version-skew warning, read it).
v="v${K8S_VERSION}" minor="${K8S_VERSION#*.}"
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X ${pkg}.gitVersion=${v} -X ${pkg}.gitMajor=${K8S_VERSION%%.*} -X ${pkg}.gitMinor=${minor%%.*}"
done
# Build beside it and rename: a killed build leaves no half-written
# kubectl that the next run would take as cached.
go_build "${label}" "a few minutes on 2 cores" k8s.io/kubernetes/cmd/kubectl \
  -trimpath -ldflags "${ldflags}" -o "${DEST}/kubectl.partial"
mv "${DEST}/kubectl.partial" "${DEST}/kubectl"
[ -x "${DEST}/kubectl" ] || { say "build finished without ${DEST}/kubectl"; exit 1; }
echo "${DEST}/kubectl"
