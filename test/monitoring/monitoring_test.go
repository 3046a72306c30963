// Package monitoring checks what users install to watch the operator: the
// alerting rules (charts/usersync-operator/files/alerts.yaml, the one source
// of the chart's PrometheusRule) parsed with Prometheus' own rule parser,
// the Grafana dashboard (charts/usersync-operator/dashboards), their
// runbooks and panel descriptions in docs/operations.md, that every metric
// and label they query is one the operator exports (scraped from the
// operator binary after a sync against the HubSpot emulator), and that the
// chart renders both (with $HELM, as test/chart).
package monitoring

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/usersync/usersync-operator/internal/testenv"
)

var (
	chartDir      = filepath.Join(testenv.RepoRoot(), "charts", "usersync-operator")
	alertsFile    = filepath.Join(chartDir, "files", "alerts.yaml")
	dashboardFile = filepath.Join(chartDir, "dashboards", "usersync-operator.json")
	operationsDoc = filepath.Join(testenv.RepoRoot(), "docs", "operations.md")

	// runbookBase is where every alert's runbook_url points: docs/operations.md
	// on the project's repository (the chart's home, Chart.yaml).
	runbookBase = "https://github.com/usersync/usersync-operator/blob/main/docs/operations.md#"

	promql = parser.NewParser(parser.Options{})
)

// query is one PromQL expression of the rules or of the dashboard.
type query struct {
	where string // the alert, or the panel and its target
	expr  string // dashboard variables substituted
}

// loadRules parses the alerts with Prometheus' rule parser, exactly as
// Prometheus loads a rule file (unknown fields are errors, every expression
// and annotation template is checked).
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	return parseRules(t, b)
}

func parseRules(t *testing.T, b []byte) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.Parse(b, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("rulefmt: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return groups
}

func ruleQueries(groups *rulefmt.RuleGroups) []query {
	var out []query
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			out = append(out, query{where: "alert " + r.Alert, expr: r.Expr})
		}
	}
	return out
}

// dashboard is the part of Grafana's dashboard model the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens the rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var (
	// Grafana's interval variables stand where PromQL wants a duration.
	intervalVar = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)
	// Any other variable ($job, ${provider}, ${provider:regex}) stands in a
	// label value.
	otherVar    = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(:[A-Za-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*`)
	labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)
)

// substitute makes a dashboard expression parseable PromQL.
func substitute(expr string) string {
	return otherVar.ReplaceAllString(intervalVar.ReplaceAllString(expr, "5m"), "x")
}

// dashboardQueries returns every panel target's expression, and the series
// selectors of the query variables (label_values(selector, label)).
func dashboardQueries(t *testing.T, d dashboard) []query {
	t.Helper()
	var out []query
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, query{where: fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), expr: substitute(tg.Expr)})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			// Older Grafana stores the query as a plain string.
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("variable %s: query: %v", v.Name, err)
			}
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(selector, label)", v.Name, q.Query)
		}
		// The label must be one of the selected series': group by it.
		out = append(out, query{where: "variable " + v.Name, expr: fmt.Sprintf("group by (%s) (%s)", m[2], substitute(m[1]))})
	}
	return out
}

// githubAnchors returns the anchors GitHub gives the headings of a
// Markdown file: lower case, punctuation dropped, spaces to hyphens.
func githubAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		a := strings.ReplaceAll(strings.ToLower(drop.ReplaceAllString(h, "")), " ", "-")
		out[a] = true
	}
	return out
}

func TestAlertRules(t *testing.T) {
	var chart struct {
		Home string `json:"home"`
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &chart); err != nil {
		t.Fatal(err)
	}
	if want := chart.Home + "/blob/main/docs/operations.md#"; runbookBase != want {
		t.Errorf("runbooks are looked for under %s, the chart's home gives %s", runbookBase, want)
	}
	groups := loadRules(t)
	anchors := githubAnchors(t, operationsDoc)
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			n++
			name := r.Alert
			if name == "" {
				t.Errorf("group %s: record %q: the rules are alerts only", g.Name, r.Record)
				continue
			}
			if r.For == 0 {
				t.Errorf("alert %s: no `for`: a single evaluation would page", name)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", name, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s: no %s annotation", name, a)
				}
			}
			url := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, runbookBase)
			switch {
			case !ok:
				t.Errorf("alert %s: runbook_url %q is not under %s", name, url, runbookBase)
			case anchor != strings.ToLower(name):
				t.Errorf("alert %s: runbook_url anchor %q, want its own section #%s", name, anchor, strings.ToLower(name))
			case !anchors[anchor]:
				t.Errorf("alert %s: docs/operations.md has no heading with the anchor #%s", name, anchor)
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s holds no rule", alertsFile)
	}
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a uid and a title (uid %q, title %q)", d.UID, d.Title)
	}
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || p.Description == "" {
			t.Errorf("panel %q: every panel has a query and a description", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: its data source must be the dashboard's ${datasource} variable", p.Title)
		}
		if !strings.Contains(string(doc), p.Title) {
			t.Errorf("panel %q is not described in docs/operations.md", p.Title)
		}
	}
	for _, q := range dashboardQueries(t, d) {
		if _, err := promql.ParseExpr(q.expr); err != nil {
			t.Errorf("%s: %q: %v", q.where, q.expr, err)
		}
	}
}
