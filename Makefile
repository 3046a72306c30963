# usersync-operator. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
export GOTOOLCHAIN ?= local

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN_VERSION ?= v0.21.0
KUSTOMIZE_VERSION ?= v5.8.2
GOLANGCI_LINT_VERSION ?= v2.15.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
IMG ?= ghcr.io/usersync/usersync-operator:dev
# Timeout for the whole test run; CI gives 90 minutes including the first
# kube-apiserver build.
TEST_TIMEOUT ?= 20m

include hack/helm.mk

.PHONY: all
all: build

##@ General
.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development
.PHONY: manifests
manifests: controller-gen ## Generate the CRDs and RBAC into config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	go run ./hack/crdpatch config/crd/bases/users.usersync.io_usersyncs.yaml
	@$(MAKE) --no-print-directory helm-crds >/dev/null
	go run ./hack/apidocs config/crd/bases docs/api.md

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml: formatting, static checks, the import rules of the architecture).
	$(GOLANGCI_LINT) run ./...

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply the fixes it can (formatting, imports).
	$(GOLANGCI_LINT) run --fix ./...

.PHONY: envtest
envtest: ## Provide kube-apiserver and etcd for envtest in bin/k8s (built from the Go module proxy when they cannot be downloaded).
	@./hack/setup-envtest.sh >/dev/null

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when the committed CRDs, RBAC or DeepCopy are stale.
	@if [ -n "$$(git status --porcelain -- config api charts/usersync-operator/crds docs/api.md)" ]; then \
		echo "generated files are stale; run 'make manifests generate' and commit:"; git status --porcelain -- config api charts/usersync-operator/crds docs/api.md; exit 1; fi

.PHONY: test
test: manifests generate vet lint envtest helm-lint kustomize ## Run every test: lint, unit, emulator, envtest against a real kube-apiserver and etcd, the Helm charts, the kustomize config, and the demo.
	$(KUSTOMIZE) build config/default >/dev/null
	HELM=$(HELM) KUBEBUILDER_ASSETS="$$(./hack/setup-envtest.sh)" go test ./... -race -count=1 -timeout $(TEST_TIMEOUT)
	$(MAKE) fuzz
	$(MAKE) demo-check

# Fuzz targets (package:target) run for FUZZTIME each by `make test`; the
# seed corpus under testdata/fuzz also replays in every plain `go test`.
FUZZTIME ?= 10s
FUZZ_TARGETS ?= internal/providers/hubspot:FuzzDecodeBatchResponse internal/providers/hubspot:FuzzErrorBody \
	internal/providers/propel:FuzzApplyAnswer internal/providers/propel:FuzzPointerIndex \
	internal/providers/usercom:FuzzApplyAnswer internal/planner:FuzzCompute internal/planner:FuzzHash \
	internal/providers/scim:FuzzDecodeBulkResponse internal/providers/scim:FuzzDecodeListResponse

# A target fails when go test -fuzz fails having written a failing input to
# testdata/fuzz. Go 1.26's fuzz coordinator can also fail a target with a bare
# "context deadline exceeded" when -fuzztime ends while a worker is mid-input
# (go.dev/issue/75804, fixed in Go 1.27): that writes no input and finds
# nothing, so it is reported and not counted.
.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 10s).
	@mkdir -p $(LOCALBIN); for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; dir=$$pkg/testdata/fuzz/$$name; \
		echo "go test ./$$pkg -run '^$$' -fuzz '^$$name$$' -fuzztime $(FUZZTIME)"; \
		before=$$(ls $$dir 2>/dev/null | wc -l || true); \
		if ! go test ./$$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s 2>&1 | tee $(LOCALBIN)/fuzz.log; then \
			after=$$(ls $$dir 2>/dev/null | wc -l || true); \
			if [ "$$after" -gt "$$before" ] || ! grep -q '^    context deadline exceeded$$' $(LOCALBIN)/fuzz.log; then \
				echo "$$name failed: see the input written to $$dir"; exit 1; fi; \
			echo "$$name: the fuzz coordinator's deadline race (go.dev/issue/75804), no failing input: not a finding"; \
		fi; done

.PHONY: bench
bench: envtest ## Scale benchmark (hack/bench): the operator binary, a real API server and the HubSpot emulator; prints the table (BENCH_ARGS, e.g. -out docs/benchmarks.md).
	KUBEBUILDER_ASSETS="$$(./hack/setup-envtest.sh)" go run ./hack/bench $(BENCH_ARGS)

.PHONY: bench-go
bench-go: ## Go benchmarks of the planner and the vendor clients at 1k, 10k and 100k records.
	go test ./internal/... -run '^$$' -bench . -benchmem

##@ Demo
.PHONY: demo
demo: manifests envtest ## Run the operator locally against a local control plane and the vendor emulators; Ctrl-C stops it.
	@./hack/go-build.sh demo -o $(LOCALBIN)/demo ./hack/demo
	KUBEBUILDER_ASSETS="$$(./hack/setup-envtest.sh)" $(LOCALBIN)/demo

.PHONY: demo-check
demo-check: manifests envtest ## Run the demo non-interactively until it converges (CI).
	@./hack/go-build.sh demo -o $(LOCALBIN)/demo ./hack/demo
	KUBEBUILDER_ASSETS="$$(./hack/setup-envtest.sh)" $(LOCALBIN)/demo --exit-when-converged --timeout 3m --kubeconfig-out bin/demo-check.kubeconfig | tee bin/demo-check.log
	@grep -q '^==> converged in' bin/demo-check.log
	@grep -q 'Failed record: UserSync default/sales-team, provider UserProvider/hubspot, user quinn' bin/demo-check.log

##@ Build
.PHONY: build
build: manifests generate ## Build the manager binary.
	go build -o bin/manager .
	go build -o bin/kubectl-usersync ./cmd/kubectl-usersync

# `make image` writes, without Docker or a registry (hack/image):
#   $(IMAGE_TAR)  docker-archive of the linux/<host arch> image tagged $(IMG),
#       for docker load -i / ctr -n k8s.io images import / crane push;
#   $(IMAGE_OCI)/  OCI layout with the multi-arch index ($(IMAGE_PLATFORMS)),
#       for crane push / skopeo copy --all oci:.
IMAGE_TAR ?= bin/usersync-operator.tar
IMAGE_OCI ?= bin/usersync-operator-oci
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: image
image: ## Build the image without Docker: bin/usersync-operator.tar (docker load / ctr import / crane push, host arch) and bin/usersync-operator-oci/ (amd64+arm64 index, crane push / skopeo).
	go run ./hack/image -tag $(IMG) -out $(IMAGE_TAR) -oci $(IMAGE_OCI) -platforms $(IMAGE_PLATFORMS)

.PHONY: run
run: manifests generate ## Run the operator against the cluster of the current kubeconfig.
	go run . 

##@ Deployment
.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Remove the CRDs.
	$(KUSTOMIZE) build config/crd | kubectl delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator with config/default.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove the operator.
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found -f -

##@ Tools
.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(LOCALBIN)/controller-gen $@

.PHONY: kustomize
kustomize: $(KUSTOMIZE)
$(KUSTOMIZE):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(LOCALBIN)/kustomize $@

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/golangci-lint $@

##@ End-to-end
# The operator as real Pods on a real node (hack/e2e/run.sh; CONTRIBUTING.md):
# root on Linux. The first run builds the kubelet, kube-controller-manager and
# kube-scheduler into bin/k8s (about 10 minutes after kube-apiserver's build,
# 25 for all of bin/k8s from nothing); later runs take about 1.5 minutes.
# Not part of `make test`.
E2E_TIMEOUT ?= 20m

.PHONY: e2e
e2e: ## Real-node e2e (root): a one-node cluster with kubelet and containerd in a network namespace of its own, the image of `make image` installed with the chart; probes, leader fail-over, /metrics, UserSyncs.
	@[ "$$(uname -s)" = Linux ] && [ "$$(id -u)" = 0 ] || { echo "make e2e needs root on Linux (CONTRIBUTING.md)"; exit 1; }
	$(MAKE) --no-print-directory image helm
	HELM=$(HELM) IMG=$(IMG) IMAGE_TAR=$(IMAGE_TAR) E2E_TIMEOUT=$(E2E_TIMEOUT) ./hack/e2e/run.sh

.PHONY: e2e-clean
e2e-clean: ## Undo what an interrupted `make e2e` left on the host: its processes, network namespace, cgroups, the kubelet's sysctls and paths.
	./hack/e2e/run.sh --clean
