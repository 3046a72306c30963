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
#      module), about 5 minutes on 2 cores, cached in bin/k8s/<version>/.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.1}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${ROOT}/bin/k8s/${K8S_VERSION}-$(go env GOOS)-$(go env GOARCH)"

log() { echo "setup-envtest: $*" >&2; }
have() { [ -x "$1/kube-apiserver" ] && [ -x "$1/etcd" ]; }

# kubectl for test/kubectl, built here (once) so that go test does not build
# it while the other packages' tests run. Not fatal: that test fails alone.
K8S_VERSION="${K8S_VERSION}" "${ROOT}/hack/setup-kubectl.sh" >/dev/null ||
  log "kubectl could not be built (hack/setup-kubectl.sh); test/kubectl will fail"

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
flock 9
if have "${DEST}"; then
  echo "${DEST}"; exit 0
fi

if [ -z "${SKIP_SETUP_ENVTEST:-}" ]; then
  log "trying setup-envtest ${K8S_VERSION}"
  if dir=$(GOTOOLCHAIN=local timeout 120 go run sigs.k8s.io/controller-runtime/tools/setup-envtest@release-0.22 \
        use "${K8S_VERSION}" --bin-dir "${ROOT}/bin/k8s/setup-envtest" -p path 2>/dev/null) && have "${dir}"; then
    cp "${dir}/kube-apiserver" "${dir}/etcd" "${DEST}/"
    echo "${DEST}"; exit 0
  fi
  log "setup-envtest could not download; building from the Go module proxy"
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

build_etcd() {
  local d="${work}/etcd"
  mkdir -p "${d}" && cd "${d}"
  go mod init envtest/etcd >/dev/null 2>&1
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >/dev/null 2>&1
  go mod tidy >/dev/null 2>&1
  go build -trimpath -o "${DEST}/etcd" go.etcd.io/etcd/server/v3
}

build_apiserver() {
  local d="${work}/apiserver"
  mkdir -p "${d}" && cd "${d}"
  go mod init envtest/apiserver >/dev/null 2>&1
  # k8s.io/kubernetes replaces its staging modules with ./staging/src/...;
  # a dependent module must replace each with the published v0.x release.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local staging="v0.${K8S_VERSION#1.}"
  {
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/src/.*#\t\1 => \1 '"${staging}"'#p' "${gomod}"
    echo ")"
  } >> go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' > tools.go
  go mod tidy >/dev/null
  go build -trimpath -o "${DEST}/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
}

log "building etcd v${ETCD_VERSION}"
( build_etcd )
log "building kube-apiserver v${K8S_VERSION} (about 5 minutes the first time)"
( build_apiserver )
have "${DEST}" || { log "build finished without both binaries in ${DEST}"; exit 1; }
echo "${DEST}"
