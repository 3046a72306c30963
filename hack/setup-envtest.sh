#!/usr/bin/env bash
# Provides kube-apiserver and etcd for envtest and prints the directory that
# holds them (use it as KUBEBUILDER_ASSETS); provides kubectl too
# (hack/setup-kubectl.sh).
#
# Order of preference:
#   1. KUBEBUILDER_ASSETS, if it is set and holds both binaries;
#   2. a cached build in bin/k8s/<version>/;
#   3. setup-envtest (needs the envtest release storage, which is not reachable
#      everywhere);
#   4. a build from the Go module proxy (k8s.io/kubernetes and etcd's server
#      module), about 10 minutes on 2 cores, cached in bin/k8s/<version>/.
#
# stdout is the directory alone (callers read it with $(...)); a first run
# prints a line per step with the time since the start on stderr
# (hack/lib/progress.sh), e.g.
#   [setup-envtest  2:51] kube-apiserver v1.37.1: compiling 2080 packages (first run only; ...)...
#   [setup-envtest  3:51] kube-apiserver v1.37.1: 212/2080 packages compiled
#   [setup-envtest 12:03] kube-apiserver v1.37.1: built in 9m12s
# A cached run prints nothing and takes milliseconds.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.1}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${ROOT}/bin/k8s/${K8S_VERSION}-$(go env GOOS)-$(go env GOARCH)"
# shellcheck source=hack/lib/progress.sh
source "${ROOT}/hack/lib/progress.sh"
# shellcheck source=hack/lib/k8s-module.sh
source "${ROOT}/hack/lib/k8s-module.sh"
progress_init setup-envtest

have() { [ -x "$1/kube-apiserver" ] && [ -x "$1/etcd" ]; }

# kubectl for test/kubectl, built here (once) so that go test does not build
# it while the other packages' tests run. Not fatal: that test fails alone.
K8S_VERSION="${K8S_VERSION}" "${ROOT}/hack/setup-kubectl.sh" >/dev/null ||
  say "kubectl could not be built (hack/setup-kubectl.sh); test/kubectl will fail"

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have "${KUBEBUILDER_ASSETS}"; then
  echo "${KUBEBUILDER_ASSETS}"; exit 0
fi
if have "${DEST}"; then
  echo "${DEST}"; exit 0
fi
mkdir -p "${DEST}"
# One build at a time: parallel test runs (go test of several packages, or
# several shells) wait for the first and then use its binaries.
exec 9>"${DEST}.lock"
if ! flock -n 9; then
  waited=$(progress_now)
  say "waiting for another build in bin/k8s to finish (it holds ${DEST#"${ROOT}"/}.lock)..."
  flock 9
  say "the other build finished; waited $(progress_duration $(($(progress_now) - waited)))"
fi
if have "${DEST}"; then
  echo "${DEST}"; exit 0
fi

work="$(mktemp -d)"
trap 'rc=$?; rm -rf "${work}"; progress_exit "${rc}"' EXIT

if [ -z "${SKIP_SETUP_ENVTEST:-}" ]; then
  begin "setup-envtest ${K8S_VERSION}" "downloading from the envtest release storage (at most 2 minutes)"
  if dir=$(GOTOOLCHAIN=local timeout 120 go run sigs.k8s.io/controller-runtime/tools/setup-envtest@release-0.22 \
        use "${K8S_VERSION}" --bin-dir "${ROOT}/bin/k8s/setup-envtest" -p path 2>/dev/null) && have "${dir}"; then
    cp "${dir}/kube-apiserver" "${dir}/etcd" "${DEST}/"
    end downloaded
    echo "${DEST}"; exit 0
  fi
  say "setup-envtest ${K8S_VERSION}: could not download (after $(progress_step_duration)); building from the Go module proxy instead (SKIP_SETUP_ENVTEST=1 skips the attempt)"
  PROGRESS_STEP=""
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod

# etcd's server module, built in ${work}/etcd (kept when only the
# kube-apiserver build failed last time).
if [ ! -x "${DEST}/etcd" ]; then
  label="etcd v${ETCD_VERSION}"
  mkdir -p "${work}/etcd" && cd "${work}/etcd"
  begin "${label}" "downloading go.etcd.io/etcd/server/v3 and its dependencies"
  quiet go mod init envtest/etcd
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  quiet go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
  quiet go mod tidy
  end downloaded
  # Built beside its place and renamed, as the others: a killed build leaves
  # no half-written binary that the next run would take as cached.
  go_build "${label}" "a minute or two on 2 cores" go.etcd.io/etcd/server/v3 \
    -trimpath -o "${DEST}/etcd.partial"
  mv "${DEST}/etcd.partial" "${DEST}/etcd"
fi

# kube-apiserver of k8s.io/kubernetes, built in ${work}/apiserver.
label="kube-apiserver v${K8S_VERSION}"
mkdir -p "${work}/apiserver" && cd "${work}/apiserver"
begin "${label}" "downloading k8s.io/kubernetes and its dependencies"
k8s_module envtest/apiserver kube-apiserver
end downloaded
go_build "${label}" "about 10 minutes on 2 cores" k8s.io/kubernetes/cmd/kube-apiserver \
  -trimpath -o "${DEST}/kube-apiserver.partial"
mv "${DEST}/kube-apiserver.partial" "${DEST}/kube-apiserver"

have "${DEST}" || { say "build finished without both binaries in ${DEST}"; exit 1; }
say "kube-apiserver v${K8S_VERSION} and etcd v${ETCD_VERSION} are cached in ${DEST#"${ROOT}"/}: later runs use them at once"
echo "${DEST}"
