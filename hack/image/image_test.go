package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var (
	testTag  = "example.test/usersync/usersync-operator:t1"
	testMeta = Metadata{Revision: "0123abc", Version: "v0.1.0-3-g0123abc", Created: time.Unix(1700000000, 0).UTC()}
	amd64    = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64    = v1.Platform{OS: "linux", Architecture: "arm64"}
)

// writeFake writes a fake binary per platform and returns their paths.
func writeFake(t *testing.T, ps ...v1.Platform) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range ps {
		f := filepath.Join(t.TempDir(), "manager")
		if err := os.WriteFile(f, []byte("fake manager for "+p.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		out[p.String()] = f
	}
	return out
}

func buildImage(t *testing.T, bin string, p v1.Platform) v1.Image {
	t.Helper()
	base, err := BaseLayer([]byte("-----BEGIN CERTIFICATE-----\n"), testMeta.Created)
	if err != nil {
		t.Fatal(err)
	}
	img, err := NewImage(base, bin, p, testMeta)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// layerFiles lists a layer's tar entries by name.
func layerFiles(t *testing.T, l v1.Layer) map[string]*tar.Header {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out["/"+strings.TrimPrefix(h.Name, "/")] = h
	}
}

// readManager returns /manager's bytes from the image's last layer, checking
// that the layer holds exactly that file, mode 0755, owned by 65532.
func readManager(t *testing.T, img v1.Image) []byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want 2 (base, manager)", len(layers))
	}
	base := layerFiles(t, layers[0])
	for _, f := range []string{"/etc/ssl/certs/ca-certificates.crt", "/tmp/"} {
		if base[f] == nil {
			t.Errorf("base layer lacks %s; has %v", f, base)
		}
	}
	if h := base["/tmp/"]; h != nil && h.Mode != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", h.Mode)
	}
	files := layerFiles(t, layers[1])
	h := files["/manager"]
	if len(files) != 1 || h == nil {
		t.Fatalf("manager layer holds %v, want exactly /manager", files)
	}
	if h.Mode != 0o755 || h.Uid != nonRoot || h.Gid != nonRoot || h.Typeflag != tar.TypeReg {
		t.Errorf("/manager: mode %o uid %d gid %d type %c, want 755 65532 65532 regular", h.Mode, h.Uid, h.Gid, h.Typeflag)
	}
	rc, err := layers[1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkConfig(t *testing.T, img v1.Image, p v1.Platform, m Metadata) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/manager"}) || c.WorkingDir != "/" {
		t.Errorf("config User %q Entrypoint %q WorkingDir %q", c.User, c.Entrypoint, c.WorkingDir)
	}
	if cf.OS != p.OS || cf.Architecture != p.Architecture {
		t.Errorf("platform %s/%s, want %s", cf.OS, cf.Architecture, p)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.source":   "https://github.com/usersync/usersync-operator",
		"org.opencontainers.image.revision": m.Revision,
		"org.opencontainers.image.version":  m.Version,
		"org.opencontainers.image.title":    "usersync-operator",
	} {
		if got := c.Labels[k]; got != want || want == "" {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if !cf.Created.Equal(m.Created) {
		t.Errorf("created %s, want %s", cf.Created, m.Created)
	}
}

// TestOutputs assembles images of fake binaries and reads both outputs back
// the way docker load (the docker-archive) and crane/skopeo (the layout) do.
func TestOutputs(t *testing.T) {
	bins := writeFake(t, amd64, arm64)
	dir := t.TempDir()
	tag, err := name.NewTag(testTag)
	if err != nil {
		t.Fatal(err)
	}
	amdImg, armImg := buildImage(t, bins[amd64.String()], amd64), buildImage(t, bins[arm64.String()], arm64)
	tarPath := filepath.Join(dir, "out", "image.tar")
	if err := WriteDockerArchive(tarPath, tag, amdImg); err != nil {
		t.Fatal(err)
	}
	ociDir := filepath.Join(dir, "oci")
	// Twice: a rerun replaces the layout instead of adding a second index.
	for range 2 {
		if err := WriteLayout(ociDir, tag, []v1.Image{amdImg, armImg}); err != nil {
			t.Fatal(err)
		}
	}

	img, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, img, amd64, testMeta)
	if got := string(readManager(t, img)); got != "fake manager for linux/amd64" {
		t.Errorf("/manager holds %q", got)
	}

	lp, err := layout.FromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || !tm.Manifests[0].MediaType.IsIndex() ||
		tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "t1" {
		t.Fatalf("index.json: %+v, want one image index named t1", tm.Manifests)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		got = append(got, d.Platform.String())
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkConfig(t, img, *d.Platform, testMeta)
		if got, want := string(readManager(t, img)), "fake manager for "+d.Platform.String(); got != want {
			t.Errorf("/manager holds %q, want %q", got, want)
		}
	}
	if !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("index platforms %v, want linux/amd64, linux/arm64", got)
	}
	checkCraneLoad(t, tarPath, amdImg)
}

// checkCraneLoad reads the tarball as crane push does: without a tag, which
// works when it holds exactly one image. A docker-archive keeps the config
// and the layers but not the manifest (docker load writes its own), so the
// config digest is what must match.
func checkCraneLoad(t *testing.T, tarPath string, want v1.Image) {
	t.Helper()
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if w, err := want.ConfigName(); err != nil || got != w {
		t.Errorf("tarball image config %s, want %s (%v)", got, w, err)
	}
}

// TestReproducible: the same inputs give the same digest.
func TestReproducible(t *testing.T) {
	bin := writeFake(t, amd64)[amd64.String()]
	a, b := buildImage(t, bin, amd64), buildImage(t, bin, amd64)
	da, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Errorf("digests differ: %s, %s", da, db)
	}
}

func TestClearLayoutRefusesOtherDirectories(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := clearLayout(dir); err == nil {
		t.Fatal("clearLayout removed a directory that is not an OCI layout")
	}
	if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
		t.Fatal(err)
	}
}

// TestRealManager builds the real manager for the host's architecture with
// Run, loads the docker-archive and runs the extracted /manager --help.
func TestRealManager(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the manager")
	}
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skip("runs a linux/amd64 or linux/arm64 binary")
	}
	host := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadMetadata(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "usersync-operator.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := Config{Tag: testTag, Out: tarPath, LoadPlatform: host, Pkg: ".", Dir: root, Meta: m}
	if err := Run(ctx, c, t.Logf); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(testTag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, img, host, m)
	bin := filepath.Join(dir, "manager")
	if err := os.WriteFile(bin, readManager(t, img), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "--help")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 2) {
		t.Fatalf("/manager --help: %v\n%s", err, out.String())
	}
	for _, flag := range []string{"-metrics-bind-address", "-health-probe-bind-address", "-leader-elect"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("/manager --help lacks %s:\n%s", flag, out.String())
		}
	}
}
