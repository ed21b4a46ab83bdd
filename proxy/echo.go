package proxy

import (
	"encoding/json"
	"net/http"
)

// Echo is the demo upstream: it answers every request with what it
// received, as JSON: {"method","path","headers":{name:[values]}}. Used by
// `serve --demo` and the tests to show what reaches a VM.
func Echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply := struct {
			Method  string              `json:"method"`
			Path    string              `json:"path"`
			Headers map[string][]string `json:"headers"`
		}{r.Method, r.URL.Path, r.Header}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(reply)
	})
}
