package proxy

import (
	"net/http"
	"net/http/cgi"
)

// GitBackend is the demo's git upstream: `git http-backend` run as CGI,
// serving the repositories under root (clone and push, HTTP smart
// protocol). gitPath is the git binary. Every repository under root is
// exported; pushes need http.receivepack set in the repository's config.
// It trusts whoever reaches it: exed's proxy in front decides who does.
func GitBackend(gitPath, root string) http.Handler {
	return &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Dir:  root,
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"HOME=" + root,          // no user's git config
			"GIT_CONFIG_NOSYSTEM=1", // nor the system's
		},
		InheritEnv: []string{"PATH"},
	}
}
