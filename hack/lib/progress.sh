# Progress lines of the hack/ scripts that build on a first run
# (setup-envtest.sh, setup-kubectl.sh, go-build.sh): one line per step on
# stderr, tagged with the script and the time since it started (m:ss), e.g.
#
#   [setup-envtest  2:51] kube-apiserver v1.37.1: compiling 2080 packages (first run only; about 10 minutes on 2 cores)...
#   [setup-envtest  3:51] kube-apiserver v1.37.1: 212/2080 packages compiled
#   ...
#   [setup-envtest 12:03] kube-apiserver v1.37.1: built in 9m12s
#
# stdout is left alone: the scripts print their result there and callers
# read it with $(...). Source this file, then call progress_init <tag>.

# progress_init TAG: names the lines. A script started by another one
# (setup-envtest.sh runs setup-kubectl.sh) keeps the first one's clock.
progress_init() {
  PROGRESS_TAG=$1
  PROGRESS_STEP=""
  if [ -z "${USERSYNC_PROGRESS_START:-}" ]; then
    USERSYNC_PROGRESS_START=$(progress_now)
  fi
  export USERSYNC_PROGRESS_START
}

progress_now() { printf '%(%s)T' -1; }

# progress_duration SECONDS: 42s, 9m12s.
progress_duration() {
  if [ "$1" -ge 60 ]; then printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); else printf '%ds' "$1"; fi
}

# say MESSAGE: one progress line.
say() {
  local s=$(($(progress_now) - USERSYNC_PROGRESS_START))
  printf '[%s %2d:%02d] %s\n' "${PROGRESS_TAG}" $((s / 60)) $((s % 60)) "$*" >&2
}

# begin LABEL [WHAT] / end [DONE]: a step, printed as "LABEL: WHAT..." (or
# "LABEL...") then "LABEL: DONE in D" (DONE: "done" unless given). A step
# still open when the script exits unsuccessfully is reported by
# progress_exit as "LABEL: failed after D".
begin() {
  PROGRESS_STEP=$1
  PROGRESS_STEP_START=$(progress_now)
  say "$1${2:+: $2}..."
}
end() {
  say "${PROGRESS_STEP}: ${1:-done} in $(progress_step_duration)"
  PROGRESS_STEP=""
}
progress_step_duration() { progress_duration $(($(progress_now) - PROGRESS_STEP_START)); }

# quiet CMD...: runs CMD with its output (go's "go: downloading ..." lines)
# held back, and shows it only when CMD fails.
quiet() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [ "${rc}" -ne 0 ]; then printf '%s\n' "${out}" >&2; fi
  return "${rc}"
}

# progress_exit RC: call it from the script's EXIT trap with $?.
progress_exit() {
  if [ "$1" -ne 0 ] && [ -n "${PROGRESS_STEP}" ]; then
    say "${PROGRESS_STEP}: failed after $(progress_step_duration) (exit status $1; the output above says why)"
  fi
}

# go_build LABEL ESTIMATE PKG [flags...]: go build of PKG (-o OUT among the
# flags) as a step, with a line a minute (USERSYNC_PROGRESS_INTERVAL seconds)
# counting the packages compiled so far against the packages PKG needs.
# go build -v names each package it compiles, and not one that the build
# cache holds, so a build the cache helps ends below the total. ESTIMATE is how long a first build takes, for
# the first line. Without ESTIMATE ("") the step is announced only when a
# package is compiled: a build from the cache prints nothing. Lines that are
# not package paths (compiler errors) go to stderr as they are.
go_build() {
  local label=$1 estimate=$2 pkg=$3 total="" started rc=0
  shift 3
  if [ -n "${estimate}" ]; then
    total=$(go list -deps "${pkg}" | wc -l)
    total=$((total))
    begin "${label}" "compiling ${total} packages (first run only; ${estimate})"
  fi
  # The pipeline prints the start of a step it announced itself, if any.
  started=$(go build -v "$@" "${pkg}" 2>&1 | {
    n=0
    last=$(progress_now)
    while IFS= read -r line; do
      if ! [[ ${line} =~ ^[A-Za-z0-9_.~/-]+$ ]]; then
        printf '%s\n' "${line}" >&2
        continue
      fi
      n=$((n + 1))
      if [ -z "${total}" ]; then
        total=$(go list -deps "${pkg}" 2>/dev/null | wc -l)
        total=$((total))
        say "${label}: compiling what the build cache lacks of its ${total} packages..."
        progress_now
      elif [ $(($(progress_now) - last)) -ge "${USERSYNC_PROGRESS_INTERVAL:-60}" ]; then
        last=$(progress_now)
        say "${label}: ${n}/${total} packages compiled"
      fi
    done
  }) || rc=$?
  if [ -n "${started}" ]; then
    PROGRESS_STEP=${label}
    PROGRESS_STEP_START=${started}
  fi
  if [ "${rc}" -ne 0 ]; then return "${rc}"; fi
  if [ -n "${PROGRESS_STEP}" ]; then end built; fi
}
