// Command apidocs writes docs/api.md, the API reference, from the generated
// CRDs: every field of every kind with its type, validation and the
// documentation written on the Go types. `make manifests` runs it, so the
// reference never drifts from the API.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: apidocs <crd dir> <out.md>")
		os.Exit(2)
	}
	files, err := filepath.Glob(filepath.Join(os.Args[1], "*.yaml"))
	if err != nil {
		fail(err)
	}
	sort.Strings(files)
	var b strings.Builder
	b.WriteString("# API reference: `users.usersync.io/v1alpha1`\n\n")
	b.WriteString("Generated from the CRDs by `make manifests` (hack/apidocs); the descriptions are the Go types' comments, also shown by `kubectl explain`.\n")
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			fail(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			fail(fmt.Errorf("%s: %w", f, err))
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			root := v.Schema.OpenAPIV3Schema
			fmt.Fprintf(&b, "\n## %s (%s, %s)\n\n%s\n", crd.Spec.Names.Kind, v.Name, strings.ToLower(string(crd.Spec.Scope)), oneLine(root.Description))
			for _, rule := range root.XValidations {
				fmt.Fprintf(&b, "\n- Rule: %s\n", rule.Message)
			}
			b.WriteString("\n| Field | Type | Validation | Description |\n|---|---|---|---|\n")
			for _, top := range []string{"spec", "status"} {
				if p, ok := root.Properties[top]; ok {
					walk(&b, top, p, contains(root.Required, top))
				}
			}
		}
	}
	if err := os.WriteFile(os.Args[2], []byte(b.String()), 0o644); err != nil {
		fail(err)
	}
}

func walk(b *strings.Builder, path string, s apiextensionsv1.JSONSchemaProps, required bool) {
	fmt.Fprintf(b, "| `%s`%s | %s | %s | %s |\n", path, req(required), typeOf(s), validation(s), cell(s.Description))
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		walk(b, path+"."+n, s.Properties[n], contains(s.Required, n))
	}
	if s.Items != nil && s.Items.Schema != nil {
		item := *s.Items.Schema
		for _, n := range sortedKeys(item.Properties) {
			walk(b, path+"[]."+n, item.Properties[n], contains(item.Required, n))
		}
	}
}

func sortedKeys(m map[string]apiextensionsv1.JSONSchemaProps) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func typeOf(s apiextensionsv1.JSONSchemaProps) string {
	switch {
	case s.Type == "array" && s.Items != nil && s.Items.Schema != nil:
		return "[]" + typeOf(*s.Items.Schema)
	case s.Type == "object" && s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil:
		return "map[string]" + typeOf(*s.AdditionalProperties.Schema)
	case s.XIntOrString:
		return "int-or-string"
	case s.Type == "" && s.XPreserveUnknownFields != nil:
		return "JSON scalar"
	case s.Type == "":
		return "any"
	}
	return s.Type
}

func validation(s apiextensionsv1.JSONSchemaProps) string {
	var v []string
	if len(s.Enum) > 0 {
		var vals []string
		for _, e := range s.Enum {
			vals = append(vals, strings.Trim(string(e.Raw), `"`))
		}
		v = append(v, "one of "+strings.Join(vals, ", "))
	}
	if s.Default != nil {
		v = append(v, "default "+string(s.Default.Raw))
	}
	if s.MinLength != nil && *s.MinLength > 0 {
		v = append(v, fmt.Sprintf("min length %d", *s.MinLength))
	}
	if s.MaxLength != nil {
		v = append(v, fmt.Sprintf("max length %d", *s.MaxLength))
	}
	if s.Minimum != nil {
		v = append(v, fmt.Sprintf("≥ %g", *s.Minimum))
	}
	if s.Maximum != nil {
		v = append(v, fmt.Sprintf("≤ %g", *s.Maximum))
	}
	if s.MinItems != nil && *s.MinItems > 0 {
		v = append(v, fmt.Sprintf("min %d items", *s.MinItems))
	}
	if s.MaxItems != nil {
		v = append(v, fmt.Sprintf("max %d items", *s.MaxItems))
	}
	if s.MaxProperties != nil {
		v = append(v, fmt.Sprintf("max %d entries", *s.MaxProperties))
	}
	if s.Pattern != "" {
		v = append(v, "pattern `"+strings.ReplaceAll(s.Pattern, "|", `\|`)+"`")
	}
	if s.XListType != nil && *s.XListType == "map" {
		v = append(v, "unique by "+strings.Join(s.XListMapKeys, ", "))
	}
	for _, r := range s.XValidations {
		v = append(v, "rule: "+r.Message)
	}
	return cell(strings.Join(v, "; "))
}

func req(required bool) string {
	if required {
		return " (required)"
	}
	return ""
}

func cell(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "apidocs:", err)
	os.Exit(1)
}
