// Package promtest reads what a Prometheus /metrics endpoint serves, for
// tests that check exed's counters move by exactly what was done. It is
// apart from testkit so that the tests of the packages that know nothing
// of Prometheus (keys, tokens, store) do not link it either. Like testkit,
// it is for *_test.go files only.
package promtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Accept is the Accept header that asks /metrics for the text format
// Series parses.
const Accept = "text/plain; version=0.0.4"

// Series parses the text exposition format with Prometheus's own parser
// and flattens it to "name{k=v,…}" → value, labels sorted (a histogram
// gives name_count and name_sum; a series without labels is "name{}").
func Series(t testing.TB, r io.Reader) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := make(map[string]float64)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(labels)
			key := func(n string) string { return n + "{" + strings.Join(labels, ",") + "}" }
			switch {
			case m.Counter != nil:
				out[key(name)] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key(name)] = m.Gauge.GetValue()
			case m.Untyped != nil:
				out[key(name)] = m.Untyped.GetValue()
			case m.Histogram != nil:
				out[key(name+"_count")] = float64(m.Histogram.GetSampleCount())
				out[key(name+"_sum")] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

// Scrape fetches /metrics from an admin handler in the text format and
// returns its Series.
func Scrape(t testing.TB, h http.Handler) map[string]float64 {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.Header.Set("Accept", Accept)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return Series(t, rec.Body)
}
