//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pauseImage is the sandbox image containerd is told to use; the test
// imports it (no registry is reachable).
const pauseImage = "usersync-e2e.local/pause:1"

// Where Debian's containernetworking-plugins are.
const cniBinDir = "/usr/lib/cni"

// containerdConfig keeps every path of containerd in the run directory,
// and sets what these machines need (real-node.md of the reference notes):
// root lacks CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj unless
// containerd restricts it, and there is no AppArmor.
func (c *cluster) containerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = "%[3]s.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  # Pod network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = %[6]q

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = %[7]q
  conf_dir = %[8]q
  max_conf_num = 1
`, c.path("containerd", "root"), c.path("containerd", "state"), c.sock, c.path("containerd", "opt"),
		pauseImage, c.path("containerd", "runc"), cniBinDir, c.path("cni", "net.d"))
}

// cniConfig is a bridge network with host-local addresses (kept in the run
// directory), the bridge being the Pods' gateway; no masquerading (no
// traffic leaves the namespace).
func (c *cluster) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "usersync-e2e",
  "plugins": [{
    "type": "bridge",
    "bridge": "e2ebr0",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": %q}]],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": %q
    }
  }]
}
`, c.cfg.podCIDR, c.path("cni", "ipam"))
}

func (c *cluster) startContainerd(ctx context.Context) error {
	c.sock = c.path("containerd", "containerd.sock")
	cfgFile := c.path("containerd", "config.toml")
	if err := os.WriteFile(cfgFile, []byte(c.containerdConfig()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("cni", "net.d", "10-usersync-e2e.conflist"), []byte(c.cniConfig()), 0o644); err != nil {
		return err
	}
	p, err := c.run("containerd", "containerd", "--config", cfgFile)
	if err != nil {
		return err
	}
	return waitFor(ctx, "containerd answers", time.Minute, p, func(ctx context.Context) error {
		_, err := c.ctr(ctx, "version")
		return err
	})
}

// ctr runs containerd's CLI against the run's containerd, in the namespace
// of the CRI plugin.
func (c *cluster) ctr(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.sock, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// importImages imports the pause image and the operator's (make image's
// docker-archive) into containerd: the Pods use them with
// imagePullPolicy Never, and the sandbox image is never pulled.
func (c *cluster) importImages(ctx context.Context) error {
	pauseTar := c.path("pause.tar")
	if err := writePauseImage(c.cfg.pause, pauseTar); err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	for _, tar := range []string{pauseTar, c.cfg.imageTar} {
		start := time.Now()
		out, err := c.ctr(ctx, "images", "import", tar)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(GinkgoWriter, "imported %s in %s: %s", tar, time.Since(start).Round(time.Millisecond), out)
	}
	out, err := c.ctr(ctx, "images", "list", "--quiet")
	if err != nil {
		return err
	}
	for _, ref := range []string{pauseImage, c.cfg.image} {
		if !strings.Contains(string(out), ref) {
			return fmt.Errorf("%s is not in containerd after the import; it has:\n%s", ref, out)
		}
	}
	return nil
}

// writePauseImage writes a docker-archive of an image holding only the
// static pause binary, as /pause, run as 65535 like registry.k8s.io/pause.
func writePauseImage(binary, out string) error {
	b, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "pause", Mode: 0o755, Size: int64(len(b))}); err != nil {
		return err
	}
	if _, err := tw.Write(b); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tag, err := name.NewTag(pauseImage)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, tag, img)
}
