# shellcheck shell=bash
# Sourced by the setup scripts that build commands of k8s.io/kubernetes from
# the Go module proxy (setup-envtest.sh, setup-kubectl.sh, e2e/setup-node.sh),
# after hack/lib/progress.sh (for quiet).

# k8s_module MODULE CMD...: makes the current directory a Go module MODULE
# that requires k8s.io/kubernetes v${K8S_VERSION} and imports
# k8s.io/kubernetes/cmd/<CMD> for each CMD (in tools.go), ready for go build.
# k8s.io/kubernetes replaces its staging modules with ./staging/src/...; a
# dependent module must replace each with the published v0.x release.
k8s_module() {
  local module=$1 json gomod staging cmd
  shift
  quiet go mod init "${module}"
  # (go mod download -json reports a failure in its JSON, on stdout.)
  if ! json=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}"); then
    printf '%s\n' "${json}" >&2; return 1
  fi
  gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"${json}")
  staging="v0.${K8S_VERSION#1.}"
  {
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/src/.*#\t\1 => \1 '"${staging}"'#p' "${gomod}"
    echo ")"
  } >> go.mod
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for cmd in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${cmd}"; done
    printf ')\n'
  } > tools.go
  quiet go mod tidy
}
