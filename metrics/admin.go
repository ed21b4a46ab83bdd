package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyTimeout bounds one readiness check: a load balancer probes every few
// seconds and must get an answer before its own timeout (often 1–5 s).
const readyTimeout = 2 * time.Second

// Handler is the admin endpoint, for a listener of its own:
//
//	/healthz  200 while the process is up
//	/readyz   200 when ready(ctx) returns nil (store reachable, listeners
//	          up, not shutting down), else 503 with its error's text;
//	          either way followed by the lines of warnings(), if any
//	          ("warning: …"): what needs an operator without making the
//	          process unready (a TLS certificate close to expiry)
//	/metrics  every collector, in the Prometheus exposition formats
//
// ready's error text and the warnings are shown to the caller: they must
// hold no secret. warnings may be nil.
func (m *Metrics) Handler(ready func(context.Context) error, warnings func() []string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		status, msg := http.StatusOK, "ok"
		if err := ready(ctx); err != nil {
			status, msg = http.StatusServiceUnavailable, "not ready: "+err.Error()
		}
		if warnings != nil {
			for _, line := range warnings() {
				msg += "\nwarning: " + line
			}
		}
		writeText(w, status, msg)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}
