# Helm chart targets. The main Makefile includes this fragment:
#
#   include hack/helm.mk
#
# It needs LOCALBIN (the directory of the project's tools), which the main
# Makefile defines before the include; the default below only serves
# `make -f hack/helm.mk ...` on its own.
#
# Helm is built from the Go module proxy (no release tarball download), so it
# installs wherever `go install` works.

LOCALBIN ?= $(CURDIR)/bin
HELM_VERSION ?= v3.22.0
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)

HELM_OPERATOR_CHART ?= charts/usersync-operator
HELM_EXAMPLE_CHARTS ?= charts/examples/team-users
HELM_CRD_SOURCES ?= config/crd/bases

##@ Helm
.PHONY: helm
helm: $(HELM) ## Install helm into bin/ (from the Go module proxy).
$(HELM):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/helm $@

.PHONY: helm-crds
helm-crds: ## Copy the generated CRDs (config/crd/bases) into the chart's crds/.
	@mkdir -p $(HELM_OPERATOR_CHART)/crds
	rm -f $(HELM_OPERATOR_CHART)/crds/*.yaml
	cp $(HELM_CRD_SOURCES)/*.yaml $(HELM_OPERATOR_CHART)/crds/

.PHONY: helm-lint
helm-lint: $(HELM) ## helm lint --strict the operator chart and the example charts.
	$(HELM) lint --strict $(HELM_OPERATOR_CHART)
	$(HELM) lint --strict $(HELM_OPERATOR_CHART) --set watchNamespaces='{team-a,team-b}' --set serviceMonitor.enabled=true --set monitoring.grafanaDashboard.enabled=true --set monitoring.prometheusRule.enabled=true
	@for c in $(HELM_EXAMPLE_CHARTS); do echo $(HELM) lint --strict $$c; $(HELM) lint --strict $$c || exit 1; done

.PHONY: helm-test
helm-test: helm-lint ## Lint the charts and run their render tests (test/chart).
	HELM=$(HELM) go test ./test/chart/... ./test/monitoring/... ./test/chartrbac/... -count=1
