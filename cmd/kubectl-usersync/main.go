// Command kubectl-usersync is the kubectl plugin of the usersync-operator
// (kubectl usersync ...): it shows a UserSync's per-user results, approves
// its plan or its held deletions, and computes offline, with the operator's
// own planner, what the operator would send for a manifest.
//
// Exit codes: 0 success (plan: nothing to do), 2 (plan) changes to make,
// 1 any error.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func main() {
	os.Exit(run(os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
}

// exitCode is an error that ends the command with a code of its own and,
// when msg is empty, prints nothing.
type exitCode struct {
	code int
	msg  string
}

func (e *exitCode) Error() string { return e.msg }

// errChanges ends plan with code 2: the operator would change something.
var errChanges = &exitCode{code: 2}

// run executes the plugin with args and returns the process's exit code.
func run(args []string, streams genericiooptions.IOStreams) int {
	cmd := newRootCmd(streams)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return exitStatus(err, streams.ErrOut)
}

func exitStatus(err error, errOut io.Writer) int {
	if err == nil {
		return 0
	}
	var ec *exitCode
	if errors.As(err, &ec) {
		if ec.msg != "" {
			_, _ = fmt.Fprintln(errOut, "error: "+ec.msg)
		}
		return ec.code
	}
	_, _ = fmt.Fprintln(errOut, "error: "+err.Error())
	return 1
}
