package controller

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/declared"
)

var _ = Describe("Samples", func() {
	It("are all accepted by the API server as they are shipped in config/samples", func() {
		ns := newNamespace(nil)
		files, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		applied := 0
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			raw, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
			for {
				doc, err := dec.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				Expect(err).NotTo(HaveOccurred(), f)
				obj := &unstructured.Unstructured{}
				Expect(utilyaml.Unmarshal(doc, &obj.Object)).To(Succeed(), f)
				if len(obj.Object) == 0 {
					continue
				}
				obj.SetNamespace(ns)
				Expect(k8s.Create(ctx, obj, client.DryRunAll)).To(Succeed(), "%s: %s %s", f, obj.GetKind(), obj.GetName())
				if obj.GetKind() == "UserProvider" {
					// Its attributeMapping compiles as the operator compiles it.
					p := &usersv1.UserProvider{}
					Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, p)).To(Succeed())
					_, err := declared.Compile(&p.Spec, nil)
					Expect(err).NotTo(HaveOccurred(), f)
				}
				applied++
			}
		}
		Expect(applied).To(BeNumerically(">=", 6), "every sample file holds at least one object")
	})
})
