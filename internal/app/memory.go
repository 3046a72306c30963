package app

import (
	"fmt"
	"os"
	"runtime/debug"

	"k8s.io/apimachinery/pkg/api/resource"
)

// MemoryLimitEnv holds the container's memory limit (the Helm chart sets it
// from resources.limits.memory). The operator then keeps its Go heap under
// memoryLimitShare of it.
const MemoryLimitEnv = "USERSYNC_MEMORY_LIMIT"

// memoryLimitShare of the container limit goes to the Go heap: the rest is
// the binary, goroutine stacks and the runtime's own memory, which
// GOMEMLIMIT does not count. With GOMEMLIMIT set to the whole limit, the
// process outgrows its container at a GC peak and is OOM-killed.
const memoryLimitShare = 85

// SetMemoryLimit sets the Go runtime's soft memory limit from MemoryLimitEnv
// (bytes, or a quantity such as 256Mi), unless GOMEMLIMIT is set, which
// wins. It returns the limit set, 0 if none.
func SetMemoryLimit() (int64, error) {
	v := os.Getenv(MemoryLimitEnv)
	if v == "" || os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %w", MemoryLimitEnv, v, err)
	}
	limit := q.Value() / 100 * memoryLimitShare
	if limit <= 0 {
		return 0, fmt.Errorf("%s=%q is not a memory size", MemoryLimitEnv, v)
	}
	debug.SetMemoryLimit(limit)
	return limit, nil
}
