//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// pki is the cluster's credentials: a CA, the API server's serving
// certificate signed by it (for the addresses the Pods, the kubelet and the
// test use), the service-account signing key, and a static token per
// client.
type pki struct {
	caCert, servingCert, servingKey, saKey, tokens string
	adminToken, kubeletToken                       string
	controllerManagerToken, schedulerToken         string
}

func newPKI(dir string, cfg config) (pki, error) {
	p := pki{
		caCert: filepath.Join(dir, "ca.crt"), servingCert: filepath.Join(dir, "apiserver.crt"),
		servingKey: filepath.Join(dir, "apiserver.key"), saKey: filepath.Join(dir, "sa.key"),
		tokens: filepath.Join(dir, "tokens.csv"),
	}
	svcIP, err := firstServiceIP(cfg.serviceCIDR)
	if err != nil {
		return p, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "usersync-e2e-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return p, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	// The Pods connect to the kubernetes Service's address (their
	// KUBERNETES_SERVICE_HOST) and verify it against kube-root-ca.crt.
	servingTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{svcIP, net.ParseIP(cfg.nodeIP), net.ParseIP("127.0.0.1")},
		DNSNames: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local", "localhost"},
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return p, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	if err := writePEM(p.caCert, "CERTIFICATE", caDER); err != nil {
		return p, err
	}
	if err := writePEM(p.servingCert, "CERTIFICATE", servingDER); err != nil {
		return p, err
	}
	if err := writeECKey(p.servingKey, key); err != nil {
		return p, err
	}
	if err := writeECKey(p.saKey, saKey); err != nil {
		return p, err
	}
	return p, p.writeTokens()
}

// writeTokens writes the API server's --token-auth-file: token, user, uid,
// groups. The control plane's own clients are system:masters, as a
// kubeadm cluster's super-admin is; the kubelet is a Node.
func (p *pki) writeTokens() error {
	var lines []string
	for _, t := range []struct {
		token  *string
		user   string
		groups string
	}{
		{&p.adminToken, "usersync-e2e-admin", "system:masters"},
		{&p.kubeletToken, "system:node:" + nodeName, "system:nodes"},
		{&p.controllerManagerToken, "system:kube-controller-manager", "system:masters"},
		{&p.schedulerToken, "system:kube-scheduler", "system:masters"},
	} {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		*t.token = hex.EncodeToString(b)
		lines = append(lines, fmt.Sprintf("%s,%s,%s,%q", *t.token, t.user, t.user, t.groups))
	}
	return os.WriteFile(p.tokens, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func firstServiceIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	ip := n.IP.To4()
	if ip == nil {
		return nil, fmt.Errorf("service CIDR %s: IPv4 only", cidr)
	}
	out := make(net.IP, 4)
	copy(out, ip)
	out[3]++
	return out, nil
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

func writeECKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

// writeKubeconfig writes a kubeconfig for server, verified with caFile,
// authenticated with token.
func writeKubeconfig(path, server, caFile, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["e2e"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e"}
	cfg.CurrentContext = "e2e"
	return clientcmd.WriteToFile(*cfg, path)
}

// insecureHTTPClient is for the control plane's own health endpoints and
// the kubelet's, whose certificates they make themselves.
func insecureHTTPClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// Self-signed endpoints of the test's own cluster.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
}

// httpGet returns the status and body of a GET.
func httpGet(ctx context.Context, hc *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// httpOK is a check that a GET of url answers 200.
func httpOK(hc *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		code, body, err := httpGet(ctx, hc, url)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET %s: %d %s", url, code, strings.TrimSpace(body))
		}
		return nil
	}
}
