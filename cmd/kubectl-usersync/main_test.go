package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/usersync/usersync-operator/internal/testenv"
)

// The tests run the plugin in-process against a real kube-apiserver
// (envtest) holding the operator's CRDs; no operator runs, so the tests
// write the statuses the operator would, except agree_test.go, which runs
// the operator (internal/app) against a HubSpot emulator.
var (
	k8s        client.Client
	restConfig *rest.Config
	kubeconfig string
	ctx        = context.Background()
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	env := testenv.New()
	cfg, c, err := testenv.Start(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8s, restConfig = c, cfg
	dir, err := os.MkdirTemp("", "kubectl-usersync-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if kubeconfig, err = testenv.WriteKubeconfig(env, "admin", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// plugin runs kubectl usersync with args (and the test's kubeconfig),
// stdin as its input, and returns its output and exit code.
func plugin(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(append([]string{"--kubeconfig", kubeconfig}, args...),
		genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	return out.String(), errOut.String(), code
}
