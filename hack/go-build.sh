#!/usr/bin/env bash
# go build that shows its progress when it compiles (hack/lib/progress.sh):
#
#   hack/go-build.sh TAG [build flags] PKG     e.g. hack/go-build.sh demo -o bin/demo ./hack/demo
#
# prints "[TAG m:ss] PKG: compiling ..." on stderr at the first package it
# compiles, a line a minute, and "PKG: built in D"; nothing when the build
# cache holds every package (go build then takes about a second, and
# relinks nothing when -o names an up-to-date binary).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=hack/lib/progress.sh
source "${ROOT}/hack/lib/progress.sh"
progress_init "$1"
shift
trap 'progress_exit $?' EXIT

pkg="${!#}"
go_build "${pkg#./}" "" "${pkg}" "${@:1:$#-1}"
