package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/providers"
)

// providerView is a UserProvider or a ClusterUserProvider seen the same way.
type providerView struct {
	key      providerKey
	obj      client.Object
	spec     *usersv1.ProviderSpec
	status   *usersv1.ProviderStatus
	selector *metav1.LabelSelector // ClusterUserProvider only
	// secret is where the credentials live.
	secret types.NamespacedName
}

// getProvider returns nil, nil when the provider does not exist.
func (r *ProviderReconciler) getProvider(ctx context.Context, key providerKey) (*providerView, error) {
	v := &providerView{key: key}
	switch key.Kind {
	case usersv1.KindClusterUserProvider:
		p := &usersv1.ClusterUserProvider{}
		if err := r.Get(ctx, types.NamespacedName{Name: key.Name}, p); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		v.obj, v.spec, v.status, v.selector = p, &p.Spec.ProviderSpec, &p.Status, p.Spec.NamespaceSelector
		v.secret = types.NamespacedName{Namespace: p.Spec.CredentialsRef.Namespace, Name: p.Spec.CredentialsRef.Name}
	default:
		p := &usersv1.UserProvider{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, p); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		v.obj, v.spec, v.status = p, &p.Spec, &p.Status
		v.secret = types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.CredentialsRef.Name}
	}
	if !v.obj.GetDeletionTimestamp().IsZero() {
		return nil, nil
	}
	return v, nil
}

// permits says whether a UserSync of namespace ns may use the provider, and
// if not, why.
func (r *ProviderReconciler) permits(ctx context.Context, p *providerView, ns string) (bool, string, error) {
	if p.key.Kind == usersv1.KindUserProvider {
		// The key is built from the UserSync's own namespace; a UserSync
		// cannot name another namespace's UserProvider.
		return p.key.Namespace == ns, "a UserSync may only use UserProviders of its own namespace", nil
	}
	if p.selector == nil {
		return true, "", nil
	}
	sel, err := metav1.LabelSelectorAsSelector(p.selector)
	if err != nil {
		return false, fmt.Sprintf("ClusterUserProvider %s has an invalid namespaceSelector: %s", p.key.Name, err.Error()), nil
	}
	nsObj := &corev1.Namespace{}
	if err := r.Get(ctx, types.NamespacedName{Name: ns}, nsObj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, "namespace " + ns + " not found", nil
		}
		return false, "", fmt.Errorf("getting namespace %s: %w", ns, err)
	}
	if !sel.Matches(labels.Set(nsObj.Labels)) {
		return false, fmt.Sprintf("ClusterUserProvider %s does not admit namespace %s: its namespaceSelector does not match the namespace's labels", p.key.Name, ns), nil
	}
	return true, "", nil
}

// notReady explains why a provider cannot be written to now.
type notReady struct {
	Reason  string
	Message string
}

func (n *notReady) Error() string { return n.Reason + ": " + n.Message }

// clientCache keeps one vendor client per provider, rebuilt when the
// provider's generation or its Secret changes, and one rate-limited transport
// per provider, which outlives its clients.
type clientCache struct {
	mu      sync.Mutex
	entries map[types.UID]*cachedClient
}

type cachedClient struct {
	// unverified: built from new credentials or spec, not yet checked.
	unverified  bool
	fingerprint string
	client      providers.Client
	// mapping is the provider's attributeMapping compiled for the client's
	// generation, or mappingErr why it cannot be used.
	mapping    *declared.Mapping
	mappingErr error
	transport  *limitedTransport
	limit      string
}

// clientFor returns the provider's vendor client, its compiled attribute
// mapping and its transport, or a *notReady saying why there is none.
func (r *ProviderReconciler) clientFor(ctx context.Context, p *providerView) (providers.Client, *declared.Mapping, *limitedTransport, error) {
	factory, ok := r.Registry.Get(string(p.spec.Type))
	if !ok {
		return nil, nil, nil, &notReady{usersv1.ReasonUnsupportedType,
			fmt.Sprintf("provider type %s is not supported by this operator (supported: %s)", p.spec.Type, strings.Join(r.Registry.Types(), ", "))}
	}
	secret, err := r.credentials(ctx, p)
	if err != nil {
		return nil, nil, nil, err
	}

	requests, period := factory.DefaultRateLimit()
	if rl := p.spec.RateLimit; rl != nil {
		requests, period = int(rl.Requests), rl.Period.Duration
	}
	limit := fmt.Sprintf("%d/%s", requests, period)
	fingerprint := strconv.FormatInt(p.obj.GetGeneration(), 10) + "/" + string(secret.UID) + "/" + secret.ResourceVersion

	r.clients.mu.Lock()
	defer r.clients.mu.Unlock()
	if r.clients.entries == nil {
		r.clients.entries = map[types.UID]*cachedClient{}
	}
	e := r.clients.entries[p.obj.GetUID()]
	if e == nil {
		e = &cachedClient{transport: newLimitedTransport(r.baseTransport(), requests, period,
			metricLabels{provider: p.key.index(), vendor: string(p.spec.Type)}), limit: limit}
		r.clients.entries[p.obj.GetUID()] = e
	}
	if e.limit != limit {
		e.transport.setLimit(requests, period)
		e.limit = limit
	}
	if e.client == nil || e.fingerprint != fingerprint {
		c, err := factory.New(r.clientConfig(p, secret, e.transport))
		if err != nil {
			if errors.Is(err, providers.ErrInvalidConfig) {
				return nil, nil, nil, &notReady{usersv1.ReasonInvalidConfig, err.Error()}
			}
			return nil, nil, nil, fmt.Errorf("building %s client: %w", p.spec.Type, err)
		}
		targets, _ := c.(providers.AttributeTargets)
		e.mapping, e.mappingErr = declared.Compile(p.spec, targets)
		e.client, e.fingerprint, e.unverified = c, fingerprint, true
	}
	if e.mappingErr != nil {
		// Nothing is written with a half-applied mapping: the provider is
		// not ready until the mapping is fixed (a new generation).
		return nil, nil, nil, &notReady{usersv1.ReasonInvalidMapping, providers.Truncate(e.mappingErr.Error(), maxConditionMessage-100)}
	}
	return e.client, e.mapping, e.transport, nil
}

// clientConfig is what the vendor's Factory builds a client from. The
// Secret's data is passed whole (a vendor may read several keys, such as an
// OAuth client id), with the key credentialsRef selects as "token".
func (r *ProviderReconciler) clientConfig(p *providerView, secret *corev1.Secret, tr http.RoundTripper) providers.Config {
	creds := make(map[string][]byte, len(secret.Data)+1)
	for k, v := range secret.Data {
		creds[k] = v
	}
	creds["token"] = secret.Data[p.spec.CredentialsRef.Key]
	cfg := providers.Config{
		Endpoint:    p.spec.Endpoint,
		Credentials: creds,
		Spec:        *p.spec,
		HTTPClient:  &http.Client{Transport: tr, Timeout: r.VendorTimeout},
		Now:         r.Clock.Now,
	}
	if p.spec.BatchSize != nil {
		cfg.BatchSize = int(*p.spec.BatchSize)
	}
	return cfg
}

// credentials reads the provider's Secret, or says with a *notReady why it
// cannot be used. The Secret is read through the API server, not a cache:
// the operator does not keep Secrets in memory, and watches only their
// metadata.
func (r *ProviderReconciler) credentials(ctx context.Context, p *providerView) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, p.secret, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &notReady{usersv1.ReasonSecretNotFound, fmt.Sprintf("Secret %s not found", p.secret)}
		}
		if apierrors.IsForbidden(err) {
			return nil, &notReady{usersv1.ReasonSecretNotFound, fmt.Sprintf("the operator may not read Secret %s", p.secret)}
		}
		return nil, fmt.Errorf("getting Secret %s: %w", p.secret, err)
	}
	if len(secret.Data[p.spec.CredentialsRef.Key]) == 0 {
		return nil, &notReady{usersv1.ReasonSecretKeyNotFound,
			fmt.Sprintf("Secret %s has no key %q, or it is empty", p.secret, p.spec.CredentialsRef.Key)}
	}
	return secret, nil
}

// takeUnverified reports whether the provider's client was built from new
// credentials or spec since the last check, and clears it.
func (c *clientCache) takeUnverified(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[uid]
	if e == nil || !e.unverified {
		return false
	}
	e.unverified = false
	return true
}

func (r *ProviderReconciler) baseTransport() http.RoundTripper {
	if r.Transport != nil {
		return r.Transport
	}
	return http.DefaultTransport.(*http.Transport).Clone()
}

// ownsMissing decides who reports a provider this operator's cache does not
// hold: with a provider selector, a provider that exists but does not match
// belongs to another operator release, which reports on it. A provider that
// does not exist at all is reported by every release alike.
func (r *ProviderReconciler) ownsMissing(ctx context.Context, key providerKey) (bool, error) {
	if r.ProviderSelector == nil || r.ProviderSelector.Empty() {
		return true, nil
	}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(usersv1.GroupVersion.WithKind(string(key.Kind)))
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, m); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("reading %s: %w", key.index(), err)
	}
	return r.ProviderSelector.Matches(labels.Set(m.GetLabels())), nil
}
