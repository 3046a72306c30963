// Command pause is the sandbox ("pause") process of the Pods of the real-node
// e2e test (make e2e): containerd starts it first in every Pod to hold the
// Pod's namespaces. No registry is reachable there, so test/e2e builds this
// static binary into an image and imports it into containerd, which is told
// to use it as its sandbox image. Like registry.k8s.io/pause it blocks until
// SIGTERM or SIGINT and reaps the children it inherits.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		// As PID 1 of the Pod's PID namespace it inherits orphans: reap
		// every child that has exited, without blocking.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
