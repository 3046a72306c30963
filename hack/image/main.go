// Command image builds the operator's container image without Docker or a
// registry (`make image`): it cross-compiles the static manager binary per
// platform and assembles, on an empty base, an image equal in use to the
// Dockerfile's distroless one:
//
//   - layer 1: /etc/ssl/certs/ca-certificates.crt (the build host's CA bundle,
//     which the vendor HTTPS clients need) and /tmp (mode 1777);
//   - layer 2: /manager (mode 0755, owner 65532:65532);
//   - config: User 65532:65532, Entrypoint ["/manager"], WorkingDir "/" and
//     the OCI labels source, revision, version, title, created (and licenses
//     when a LICENSE file names a known licence).
//
// It writes two outputs:
//
//   - -out (bin/usersync-operator.tar): a docker-archive ("docker save"
//     format) of ONE image, the -load-platform one (the host's architecture
//     by default), tagged -tag. For `docker load -i`, `ctr images import`,
//     `podman load` and `crane push`. Those accept one platform only.
//   - -oci (bin/usersync-operator-oci/): an OCI image layout whose index.json
//     holds one multi-platform image index (linux/amd64 and linux/arm64 by
//     default) named -tag. For `crane push` (pushes the index) and
//     `skopeo copy --all oci:...`.
//
// The layers' timestamps and the config's created time are the last commit's
// time (SOURCE_DATE_EPOCH overrides it), so the same checkout, Go version and
// CA bundle give the same digests.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image facts shared by the Dockerfile.
const (
	sourceURL  = "https://github.com/usersync/usersync-operator"
	title      = "usersync-operator"
	binaryPath = "manager" // in the image: /manager
	nonRoot    = 65532
	caPath     = "etc/ssl/certs/ca-certificates.crt"
)

// caCandidates are where Linux distributions (and macOS) keep the PEM bundle
// of trusted CAs; the same list crypto/x509 searches on Linux.
var caCandidates = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/tls/cacert.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// Metadata is what the image's labels and timestamps say.
type Metadata struct {
	Revision string    // git rev-parse HEAD, or "unknown"
	Version  string    // git describe --tags --always --dirty, or "dev"
	Licenses string    // SPDX expression, or "" for no label
	Created  time.Time // layer file times and config created
}

// Labels returns the image config's OCI labels.
func (m Metadata) Labels() map[string]string {
	l := map[string]string{
		"org.opencontainers.image.source":   sourceURL,
		"org.opencontainers.image.revision": m.Revision,
		"org.opencontainers.image.version":  m.Version,
		"org.opencontainers.image.title":    title,
		"org.opencontainers.image.created":  m.Created.UTC().Format(time.RFC3339),
	}
	if m.Licenses != "" {
		l["org.opencontainers.image.licenses"] = m.Licenses
	}
	return l
}

func main() {
	var (
		c         Config
		platforms string
		loadPlat  string
	)
	flag.StringVar(&c.Tag, "tag", "ghcr.io/usersync/usersync-operator:dev", "Image name and tag written into the tarball and the OCI layout.")
	flag.StringVar(&c.Out, "out", "bin/usersync-operator.tar", "docker-archive of the -load-platform image, for docker load / ctr images import / crane push; empty skips it.")
	flag.StringVar(&c.OCIDir, "oci", "bin/usersync-operator-oci", "OCI image layout directory with the multi-platform index, for crane push / skopeo copy --all oci:DIR; empty skips it.")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "Comma-separated platforms of the OCI layout's index.")
	flag.StringVar(&loadPlat, "load-platform", "linux/"+runtime.GOARCH, "Platform of the docker-archive (-out); the host's architecture by default.")
	flag.StringVar(&c.CACerts, "ca-certs", "", "PEM CA bundle to put at /"+caPath+"; default: the first of the host's usual paths that exists.")
	flag.StringVar(&c.Pkg, "pkg", ".", "Go package of the manager, relative to -dir.")
	flag.StringVar(&c.Dir, "dir", ".", "Module root, where go build and git run.")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("image: ")

	var err error
	if c.Platforms, err = parsePlatforms(platforms); err != nil {
		log.Fatal(err)
	}
	lp, err := v1.ParsePlatform(loadPlat)
	if err != nil {
		log.Fatal(err)
	}
	c.LoadPlatform = *lp
	if c.Meta, err = ReadMetadata(c.Dir); err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	if err := Run(context.Background(), c, log.Printf); err != nil {
		log.Fatal(err)
	}
	log.Printf("done in %s", time.Since(start).Round(100*time.Millisecond))
}

func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := v1.ParsePlatform(f)
		if err != nil {
			return nil, err
		}
		out = append(out, *p)
	}
	return out, nil
}

// Config says what Run builds and where it writes it.
type Config struct {
	Tag          string
	Out          string        // docker-archive path; "" skips it
	OCIDir       string        // OCI layout directory; "" skips it
	Platforms    []v1.Platform // of the OCI layout
	LoadPlatform v1.Platform   // of the docker-archive
	CACerts      string        // "" finds the host's bundle
	Pkg          string        // package of the manager, relative to Dir
	Dir          string        // module root
	Meta         Metadata
}

// Run builds the binaries of the platforms it needs and writes the outputs.
func Run(ctx context.Context, c Config, logf func(string, ...any)) error {
	need := []v1.Platform{}
	if c.OCIDir != "" {
		need = append(need, c.Platforms...)
	}
	if c.Out != "" && !hasPlatform(need, c.LoadPlatform) {
		need = append(need, c.LoadPlatform)
	}
	if len(need) == 0 {
		return errors.New("nothing to do: -out and -oci are both empty")
	}
	ca, err := readCACerts(c.CACerts)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "usersync-image-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	binaries, err := BuildBinaries(ctx, c.Dir, c.Pkg, need, tmp, logf)
	if err != nil {
		return err
	}
	images := map[string]v1.Image{}
	base, err := BaseLayer(ca, c.Meta.Created)
	if err != nil {
		return err
	}
	for _, p := range need {
		img, err := NewImage(base, binaries[p.String()], p, c.Meta)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		images[p.String()] = img
	}
	tag, err := name.NewTag(c.Tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	if c.Out != "" {
		if err := WriteDockerArchive(c.Out, tag, images[c.LoadPlatform.String()]); err != nil {
			return err
		}
		logf("wrote %s (%s, %s): docker load -i / ctr images import / crane push", c.Out, c.LoadPlatform, tag)
	}
	if c.OCIDir != "" {
		imgs := make([]v1.Image, 0, len(c.Platforms))
		for _, p := range c.Platforms {
			imgs = append(imgs, images[p.String()])
		}
		if err := WriteLayout(c.OCIDir, tag, imgs); err != nil {
			return err
		}
		logf("wrote %s (index of %s, %s): crane push / skopeo copy --all oci:", c.OCIDir, platformList(c.Platforms), tag)
	}
	return nil
}

func hasPlatform(ps []v1.Platform, p v1.Platform) bool {
	for _, q := range ps {
		if q.String() == p.String() {
			return true
		}
	}
	return false
}

func platformList(ps []v1.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func readCACerts(path string) ([]byte, error) {
	if path != "" {
		return os.ReadFile(path)
	}
	for _, p := range caCandidates {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return b, nil
		}
	}
	return nil, fmt.Errorf("no CA bundle found in %s: pass -ca-certs (the operator needs one to call the vendors over HTTPS)", strings.Join(caCandidates, ", "))
}

// BuildBinaries cross-compiles the static manager for each platform into
// dir/<os>-<arch>/manager, concurrently, and returns the paths by platform.
func BuildBinaries(ctx context.Context, moduleDir, pkg string, ps []v1.Platform, dir string, logf func(string, ...any)) (map[string]string, error) {
	out := make(map[string]string, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		bin, err := filepath.Abs(filepath.Join(dir, p.OS+"-"+p.Architecture+p.Variant, "manager"))
		if err != nil {
			return nil, err
		}
		out[p.String()] = bin
		wg.Go(func() {
			start := time.Now()
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
			cmd.Dir = moduleDir
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
			if p.Variant != "" && p.Architecture == "arm" {
				cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
			}
			if b, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build for %s: %w\n%s", p, err, b)
				return
			}
			logf("built the manager for %s in %s", p, time.Since(start).Round(100*time.Millisecond))
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

type tarEntry struct {
	hdr  tar.Header
	body []byte
}

func layerOf(created time.Time, entries ...tarEntry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.ModTime = created
		h.Format = tar.FormatPAX
		h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// BaseLayer holds what distroless/static gives the manager: the CA bundle and
// a world-writable /tmp. It is the same for every platform.
func BaseLayer(caBundle []byte, created time.Time) (v1.Layer, error) {
	dir := func(n string, mode int64) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: mode}}
	}
	return layerOf(created,
		dir("etc/", 0o755), dir("etc/ssl/", 0o755), dir("etc/ssl/certs/", 0o755),
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: caPath, Mode: 0o644}, body: caBundle},
		dir("tmp/", 0o1777),
	)
}

// ManagerLayer holds the binary at /manager, mode 0755, owned by 65532.
func ManagerLayer(binary []byte, created time.Time) (v1.Layer, error) {
	return layerOf(created, tarEntry{hdr: tar.Header{
		Typeflag: tar.TypeReg, Name: binaryPath, Mode: 0o755, Uid: nonRoot, Gid: nonRoot,
	}, body: binary})
}

// NewImage assembles the image of one platform from the base layer and the
// manager binary at binaryFile.
func NewImage(base v1.Layer, binaryFile string, p v1.Platform, m Metadata) (v1.Image, error) {
	b, err := os.ReadFile(binaryFile)
	if err != nil {
		return nil, err
	}
	mgr, err := ManagerLayer(b, m.Created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: m.Created}, CreatedBy: "usersync-operator hack/image: CA certificates, /tmp"}},
		mutate.Addendum{Layer: mgr, History: v1.History{Created: v1.Time{Time: m.Created}, CreatedBy: "usersync-operator hack/image: /manager"}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: m.Created}
	cf.Config.User = fmt.Sprintf("%d:%d", nonRoot, nonRoot)
	cf.Config.Entrypoint = []string{"/" + binaryPath}
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/" + caPath}
	cf.Config.Labels = m.Labels()
	return mutate.ConfigFile(img, cf)
}

// WriteDockerArchive writes img tagged tag as a docker-archive ("docker save"
// format) at path, through a temporary file so a failed run leaves no
// half-written tarball.
func WriteDockerArchive(path string, tag name.Tag, img v1.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// WriteLayout replaces dir with an OCI image layout whose index.json holds one
// image index of imgs (each with its platform), annotated with the tag's name.
func WriteLayout(dir string, tag name.Tag, imgs []v1.Image) error {
	if err := clearLayout(dir); err != nil {
		return err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		}})
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		// The OCI convention (skopeo's oci:DIR:dev) and containerd's.
		"org.opencontainers.image.ref.name": tag.TagStr(),
		"io.containerd.image.name":          tag.Name(),
	}))
}

// clearLayout removes a previous layout at dir; it refuses to remove a
// non-empty directory that is not an OCI layout.
func clearLayout(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("%s exists and is not an OCI layout; not overwriting it", dir)
	}
	return os.RemoveAll(dir)
}

// ReadMetadata reads the revision, version and commit time from git in dir
// (with fallbacks outside a git checkout), SOURCE_DATE_EPOCH, and the licence
// from dir/LICENSE.
func ReadMetadata(dir string) (Metadata, error) {
	m := Metadata{
		Revision: gitOr(dir, "unknown", "rev-parse", "HEAD"),
		Version:  gitOr(dir, "dev", "describe", "--tags", "--always", "--dirty"),
		Licenses: licenseOf(filepath.Join(dir, "LICENSE")),
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		epoch = gitOr(dir, "0", "log", "-1", "--format=%ct")
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return m, fmt.Errorf("SOURCE_DATE_EPOCH or commit time %q: %w", epoch, err)
	}
	m.Created = time.Unix(sec, 0).UTC()
	return m, nil
}

func gitOr(dir, fallback string, args ...string) string {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return s
	}
	return fallback
}

// licenseOf names the licence of a LICENSE file by its usual first words, or
// returns "" (no label) when there is none or it is not recognised.
func licenseOf(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	var head strings.Builder
	sc := bufio.NewScanner(f)
	for i := 0; i < 5 && sc.Scan(); i++ {
		head.WriteString(sc.Text() + " ")
	}
	h := head.String()
	switch {
	case strings.Contains(h, "Apache License") && strings.Contains(h, "Version 2.0"):
		return "Apache-2.0"
	case strings.Contains(h, "MIT License"):
		return "MIT"
	case strings.Contains(h, "Mozilla Public License") && strings.Contains(h, "2.0"):
		return "MPL-2.0"
	case strings.Contains(h, "BSD 3-Clause"):
		return "BSD-3-Clause"
	}
	return ""
}
