// Package testenv starts the control plane the operator's tests run
// against: kube-apiserver and etcd of controller-runtime's envtest, with the
// operator's CRDs installed. The controller suite and the crash tests share
// it; the manager binary never links it.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// RepoRoot is the repository's root directory (this source file's
// ../../), whatever the working directory of the test.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// AssetsDir is where kube-apiserver and etcd are: KUBEBUILDER_ASSETS (what
// make test sets), else the cache hack/setup-envtest.sh fills (bin/k8s), else
// "" (envtest then looks in its default places).
func AssetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	matches, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", "k8s", "*", "kube-apiserver"))
	if len(matches) == 0 {
		return ""
	}
	return filepath.Dir(matches[0])
}

// New returns an environment that installs the operator's CRDs
// (config/crd/bases) and fails when they are missing.
func New() *envtest.Environment {
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: AssetsDir(),
	}
}

// Scheme holds the built-in types and the operator's API.
func Scheme() (*k8sruntime.Scheme, error) {
	s := k8sruntime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(s), usersv1.AddToScheme(s)); err != nil {
		return nil, err
	}
	return s, nil
}

// WriteKubeconfig adds a user of system:masters named name to the started
// env and writes its kubeconfig to dir/kubeconfig, for a process the test
// starts (the operator binary, kubectl). It returns the file's path.
func WriteKubeconfig(env *envtest.Environment, name, dir string) (string, error) {
	user, err := env.AddUser(envtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

// Start starts env and returns its config and a client with Scheme.
func Start(env *envtest.Environment) (*rest.Config, client.Client, error) {
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting kube-apiserver and etcd (run 'make envtest' or set KUBEBUILDER_ASSETS): %w", err)
	}
	scheme, err := Scheme()
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, err
	}
	return cfg, c, nil
}
