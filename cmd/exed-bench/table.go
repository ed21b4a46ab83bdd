package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// row is one line of the results table.
type row struct {
	scenario string // "1 verify", "2 proxy c=32", …
	what     string
	result   string // the median, with its unit
	p50, p99 string
	ratio    string
	target   string
	met      string // "yes", "**no** (…)", or "" when there is no target
}

// writeTable prints rows as one markdown table.
func writeTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| scenario | measurement | median | p50 | p99 | ratio | target | met |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.scenario, r.what, r.result, r.p50, r.p99, r.ratio, r.target, r.met)
	}
}

// median returns the median of xs (the mean of the middle two for an even
// count), or NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianDur is median for durations.
func medianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// percentile returns the p-th percentile (0 < p < 1) of sorted latencies,
// nearest-rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// fmtDur prints a latency with three significant digits in a fitting unit.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond)) + " µs"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + " ms"
	}
	return sig3(d.Seconds()) + " s"
}

// sig3 prints x with three significant digits (more for large numbers,
// grouped in thousands).
func sig3(x float64) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case x >= 999.5:
		return group(int64(math.Round(x)))
	case x >= 99.95:
		return fmt.Sprintf("%.0f", x)
	case x >= 9.995:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// group prints n with thin-space-free comma thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtRatio prints a ratio as "0.93×".
func fmtRatio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x)
}

// fmtRatios prints the median of per-round ratios and, for several
// rounds, their range: "0.93× bare (0.88–0.97)".
func fmtRatios(xs []float64, of string) string {
	s := fmtRatio(median(xs)) + " " + of
	if len(xs) > 1 {
		s += fmt.Sprintf(" (%.2f–%.2f)", slices.Min(xs), slices.Max(xs))
	}
	return s
}

// judge says whether ratio x meets a target of at most (atMost) or at
// least limit, and by how much it misses.
func judge(x, limit float64, atMost bool) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case atMost && x <= limit, !atMost && x >= limit:
		return "yes"
	}
	off := (x/limit - 1) * 100
	if math.Abs(off) < 10 {
		return fmt.Sprintf("**no**: %+.1f%% vs target", off)
	}
	return fmt.Sprintf("**no**: %+.0f%% vs target", off)
}

// judgeCount is judge for a count that must be at most limit.
func judgeCount(n, limit int) string {
	if n <= limit {
		return "yes"
	}
	return fmt.Sprintf("**no**: %d over", n-limit)
}
