// Command crdpatch finishes the generated UserSync CRD where controller-gen
// markers cannot reach: the schema of an attribute value. The value is any
// JSON scalar, so its schema has no type (x-kubernetes-preserve-unknown-fields),
// and CEL cannot type-check an untyped map value. OpenAPI value validations
// apply by the value's kind, so maxLength bounds strings only, and
// maxProperties/maxItems 0 reject non-empty objects and arrays. (Empty {} and
// [] pass the API server; the operator fails such a record with a reason.)
//
// Usage: go run ./hack/crdpatch config/crd/bases/users.usersync.io_usersyncs.yaml
package main

import (
	"fmt"
	"os"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "crdpatch:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		return err
	}
	for i := range crd.Spec.Versions {
		s := crd.Spec.Versions[i].Schema.OpenAPIV3Schema
		spec := s.Properties["spec"]
		users := spec.Properties["users"]
		attrs := users.Items.Schema.Properties["attributes"]
		if attrs.AdditionalProperties == nil || attrs.AdditionalProperties.Schema == nil {
			return fmt.Errorf("%s: spec.users[].attributes has no value schema", path)
		}
		v := attrs.AdditionalProperties.Schema
		v.MaxLength = ptr(int64(64))
		v.MaxProperties = ptr(int64(0))
		v.MaxItems = ptr(int64(0))
		v.Description = "a JSON scalar: a string (at most 64 characters), a number or a boolean"
		users.Items.Schema.Properties["attributes"] = attrs
		spec.Properties["users"] = users
		// spec.defaults.attributes holds the same values.
		defaults := spec.Properties["defaults"]
		dattrs := defaults.Properties["attributes"]
		if dattrs.AdditionalProperties == nil || dattrs.AdditionalProperties.Schema == nil {
			return fmt.Errorf("%s: spec.defaults.attributes has no value schema", path)
		}
		dattrs.AdditionalProperties.Schema = v.DeepCopy()
		defaults.Properties["attributes"] = dattrs
		spec.Properties["defaults"] = defaults
		s.Properties["spec"] = spec
	}
	out, err := yaml.Marshal(&crd)
	if err != nil {
		return err
	}
	// Keep controller-gen's document header.
	return os.WriteFile(path, append([]byte("---\n"), out...), 0o644)
}

func ptr[T any](v T) *T { return &v }
