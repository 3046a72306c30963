package monitoring

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// targetLabels are the labels Prometheus (and the Prometheus Operator's
// ServiceMonitor) adds to every scraped series.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

// series are the names a scrape makes queryable, each with its label names:
// a counter or gauge by its name, a histogram as <name>_bucket (with le),
// <name>_sum and <name>_count, a summary as <name> (with quantile), _sum and
// _count.
type series map[string]map[string]bool

func seriesOf(fams map[string]*dto.MetricFamily) series {
	out := series{}
	add := func(name string, names []string, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
			for _, l := range append(slices.Clone(targetLabels), extra...) {
				out[name][l] = true
			}
		}
		for _, l := range names {
			out[name][l] = true
		}
	}
	for name, f := range fams {
		var names []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			add(name+"_bucket", names, "le")
			add(name+"_sum", names)
			add(name+"_count", names)
		case dto.MetricType_SUMMARY:
			add(name, names, "quantile")
			add(name+"_sum", names)
			add(name+"_count", names)
		default:
			add(name, names)
		}
	}
	return out
}

// family maps a queryable name back to the family the operator exports.
func family(name string, fams map[string]*dto.MetricFamily) string {
	if fams[name] != nil {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] != nil {
			return base
		}
	}
	return name
}

// metricsOf returns the metric names an expression selects.
func metricsOf(expr parser.Expr) []string {
	var out []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, selectorName(vs))
		}
		return nil
	})
	return out
}

// selectorName is a selector's metric name, also when given as a
// __name__ matcher; "" when it selects no single metric.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// problems lists what q uses that the scrape does not have: metrics, the
// labels its selectors match on, and the labels its aggregations group by
// (which must belong to a series aggregated).
func problems(q query, have series) []string {
	expr, err := promql.ParseExpr(q.expr)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", q.where, err)}
	}
	var out []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := selectorName(n)
			switch {
			case name == "":
				out = append(out, fmt.Sprintf("%s: %s selects no single metric by name", q.where, n))
			case have[name] == nil:
				out = append(out, fmt.Sprintf("%s: metric %s is not exported", q.where, name))
			default:
				for _, m := range n.LabelMatchers {
					if m.Name != model.MetricNameLabel && !have[name][m.Name] {
						out = append(out, fmt.Sprintf("%s: %s has no label %q", q.where, name, m.Name))
					}
				}
			}
		case *parser.AggregateExpr:
			if n.Without {
				break
			}
			known := map[string]bool{}
			for _, name := range metricsOf(n.Expr) {
				if have[name] == nil {
					return nil // reported at its selector
				}
				for l := range have[name] {
					known[l] = true
				}
			}
			for _, l := range n.Grouping {
				if !known[l] {
					out = append(out, fmt.Sprintf("%s: %s groups by %q, a label of none of its series", q.where, n.Op, l))
				}
			}
		}
		return nil
	})
	return out
}

func TestMetricsExist(t *testing.T) {
	fams := scrapeOperator(t)
	have := seriesOf(fams)
	d := loadDashboard(t)
	queries := append(ruleQueries(loadRules(t)), dashboardQueries(t, d)...)

	var missing []string
	for _, q := range queries {
		missing = append(missing, problems(q, have)...)
	}
	if len(missing) > 0 {
		names := make([]string, 0, len(have))
		for n := range have {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Errorf("the rules and the dashboard use what the operator does not export:\n  %s\nthe operator exports:\n  %s",
			strings.Join(missing, "\n  "), strings.Join(names, "\n  "))
	}

	// The other way round: every metric of the operator's own is on the
	// dashboard, so a new one (drift, say) is not forgotten there.
	shown := map[string]bool{}
	for _, q := range dashboardQueries(t, d) {
		if expr, err := promql.ParseExpr(q.expr); err == nil {
			for _, name := range metricsOf(expr) {
				shown[family(name, fams)] = true
			}
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, "usersync_") && !shown[name] {
			t.Errorf("the operator exports %s, which no dashboard panel shows", name)
		}
	}
}

// TestProblems checks the checker on a made-up scrape, so that a rule the
// real scrape would refuse cannot pass because the checker looked away.
func TestProblems(t *testing.T) {
	counter, histogram := dto.MetricType_COUNTER, dto.MetricType_HISTOGRAM
	lbl := func(names ...string) []*dto.Metric {
		m := &dto.Metric{}
		for _, n := range names {
			m.Label = append(m.Label, &dto.LabelPair{Name: &n})
		}
		return []*dto.Metric{m}
	}
	have := seriesOf(map[string]*dto.MetricFamily{
		"calls_total":  {Type: &counter, Metric: lbl("provider", "code")},
		"loop_seconds": {Type: &histogram, Metric: lbl("provider")},
	})
	cases := map[string]int{ // expression: problems expected
		`sum by (provider, code) (rate(calls_total{code="429", job=~"x"}[5m]))`:          0,
		`{__name__="calls_total", provider="a"}`:                                         0,
		`histogram_quantile(0.9, sum by (le, provider) (rate(loop_seconds_bucket[5m])))`: 0,
		`rate(loop_seconds_sum[5m]) / rate(loop_seconds_count[5m])`:                      0,
		`calls`:                        1, // not exported
		`loop_seconds`:                 1, // a histogram is queried by its series
		`{__name__=~"calls.*"}`:        1, // no single metric
		`{__name__="nope"}`:            1,
		`calls_total{state="Failed"}`:  1, // no such label
		`sum by (state) (calls_total)`: 1, // nor to group by
		`sum by (le) (rate(calls_total[5m])) + rate(nope_total[1m])`: 2,
	}
	for expr, want := range cases {
		if got := problems(query{where: "case", expr: expr}, have); len(got) != want {
			t.Errorf("%s: %d problems, want %d: %q", expr, len(got), want, got)
		}
	}
}
