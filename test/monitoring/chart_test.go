package monitoring

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// rendered is one manifest of `helm template`.
type rendered struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
	Spec json.RawMessage   `json:"spec"`
}

// helmTemplate renders the operator chart with values (--set) and returns
// its manifests by kind/name. The helm binary is $HELM, as in test/chart;
// without it the test is skipped.
func helmTemplate(t *testing.T, args ...string) map[string]rendered {
	t.Helper()
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Skip("HELM is not set: `make test` (and `make helm-test`) install helm into bin/ and set HELM")
	}
	cmd := exec.Command(helm, append([]string{"template", "uso", chartDir, "-n", "usersync-system"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	out := map[string]rendered{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(&stdout))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var m rendered
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("a rendered manifest does not decode: %v\n%s", err, doc)
		}
		if m.Kind != "" {
			out[m.Kind+"/"+m.Metadata.Name] = m
		}
	}
	return out
}

const (
	dashboardCM = "ConfigMap/uso-usersync-operator-dashboard"
	ruleName    = "PrometheusRule/uso-usersync-operator"
)

func TestChartMonitoring(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		objs := helmTemplate(t)
		for _, k := range []string{dashboardCM, ruleName} {
			if _, ok := objs[k]; ok {
				t.Errorf("%s is rendered with the default values", k)
			}
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		cm, ok := helmTemplate(t, "--set", "monitoring.grafanaDashboard.enabled=true",
			"--set", "monitoring.grafanaDashboard.annotations.grafana_folder=Operators")[dashboardCM]
		if !ok {
			t.Fatalf("no %s", dashboardCM)
		}
		if cm.Metadata.Labels["grafana_dashboard"] != "1" || cm.Metadata.Annotations["grafana_folder"] != "Operators" {
			t.Errorf("labels %v, annotations %v: want grafana_dashboard: \"1\" and the folder annotation",
				cm.Metadata.Labels, cm.Metadata.Annotations)
		}
		want, err := os.ReadFile(dashboardFile)
		if err != nil {
			t.Fatal(err)
		}
		if !sameJSON(t, []byte(cm.Data["usersync-operator.json"]), want) {
			t.Errorf("the ConfigMap's usersync-operator.json is not dashboards/usersync-operator.json")
		}

		cm = helmTemplate(t, "--set", "monitoring.grafanaDashboard.enabled=true",
			"--set", "monitoring.grafanaDashboard.label=dashboards.example.com/grafana",
			"--set", "monitoring.grafanaDashboard.labelValue=yes",
			"--set", "monitoring.grafanaDashboard.namespace=grafana")[dashboardCM]
		if cm.Metadata.Labels["dashboards.example.com/grafana"] != "yes" || cm.Metadata.Labels["grafana_dashboard"] != "" ||
			cm.Metadata.Namespace != "grafana" {
			t.Errorf("namespace %q, labels %v: want the configured label only, in namespace grafana", cm.Metadata.Namespace, cm.Metadata.Labels)
		}
	})

	t.Run("rules", func(t *testing.T) {
		pr, ok := helmTemplate(t, "--set", "monitoring.prometheusRule.enabled=true",
			"--set", "monitoring.prometheusRule.labels.release=kube-prometheus-stack")[ruleName]
		if !ok {
			t.Fatalf("no %s", ruleName)
		}
		if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Metadata.Labels["release"] != "kube-prometheus-stack" {
			t.Errorf("apiVersion %s, labels %v", pr.APIVersion, pr.Metadata.Labels)
		}
		file, err := os.ReadFile(alertsFile)
		if err != nil {
			t.Fatal(err)
		}
		want, err := yaml.YAMLToJSON(file)
		if err != nil {
			t.Fatal(err)
		}
		if !sameJSON(t, pr.Spec, want) {
			t.Errorf("the PrometheusRule's spec is not files/alerts.yaml:\n%s", pr.Spec)
		}
		// What the Prometheus Operator hands Prometheus parses as well.
		spec, err := yaml.JSONToYAML(pr.Spec)
		if err != nil {
			t.Fatal(err)
		}
		parseRules(t, spec)
	})

	t.Run("lint", func(t *testing.T) {
		helm := os.Getenv("HELM")
		if helm == "" {
			t.Skip("HELM is not set")
		}
		out, err := exec.Command(helm, "lint", "--strict", chartDir, "--set", "monitoring.grafanaDashboard.enabled=true",
			"--set", "monitoring.prometheusRule.enabled=true", "--set", "serviceMonitor.enabled=true").CombinedOutput()
		if err != nil {
			t.Errorf("helm lint --strict with the monitoring on: %v\n%s", err, out)
		}
	})
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %.200s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %.200s", err, b)
	}
	return reflect.DeepEqual(x, y)
}
