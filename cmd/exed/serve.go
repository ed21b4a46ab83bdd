package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/certs"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/metrics"
	"github.com/exed-dev/exed/netlimit"
	"github.com/exed-dev/exed/proxy"
	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/sshserver"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

// The default domains are .localhost names: curl, git and browsers resolve
// them to this machine without DNS, so a token made with the defaults
// never reaches a real service by mistake. They are siblings, never parent
// and child, so that a VM cannot set a cookie for the API host; a
// deployment sets its own two, and exe.dev's are exe.dev and exe.xyz.
const (
	defaultDomain   = "exe.localhost"
	defaultVMDomain = "vm.localhost"
)

// defaultSSHPerSource bounds SSH connections from one address: far more
// than a person or a CI runner behind one address opens at once, far fewer
// than a flood needs to matter.
const defaultSSHPerSource = 64

// adminMaxConns bounds the admin listener (health checks and scrapes).
const adminMaxConns = 64

// acmeConfig is serve's --acme flags.
type acmeConfig struct {
	on               bool
	email, directory string
	rate             int
}

// serveConfig is everything `exed serve` takes from flags or environment.
type serveConfig struct {
	data, db          string
	sshAddr, httpAddr string
	adminAddr         string
	domain, vmDomain  string
	hostKey           string
	tlsCert, tlsKey   string
	acme              acmeConfig
	redirectAddr      string
	forwardAuthAddr   string
	publicURL         string
	demo              bool
	logFormat         string
	shutdownTimeout   time.Duration
	cacheTTL          time.Duration
	sshMaxConns       int
	sshMaxPerSource   int
	httpMaxConns      int
	assertion         bool
	assertionTTL      time.Duration
	assertionRefresh  time.Duration
	secretKeyFile     string
	lastUsedInterval  time.Duration
}

func (a *app) serveFlags() (*pflag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := a.flagSet("serve", "serve [flags]\n\nEvery flag can also be set in the environment: EXED_ + its name in capitals, - as _\n(e.g. EXED_HTTP_ADDR=0.0.0.0:8080). A flag given on the command line wins.\n\n"+
		"SIGTERM or SIGINT: stop accepting, let requests and SSH sessions finish (up to --shutdown-timeout),\nthen exit 0; a second signal exits at once. SIGHUP: re-read the TLS certificate files\n(also done by itself when they change).")
	fs.StringVar(&c.data, "data", "./exed-data", "data directory: SQLite file and host key")
	fs.StringVar(&c.db, "db", "", "registry DSN (postgres://…); default: SQLite in --data")
	fs.StringVar(&c.sshAddr, "ssh-addr", "127.0.0.1:2222", "SSH listen address")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP(S) listen address")
	fs.StringVar(&c.adminAddr, "admin-addr", "", "admin listen address for /healthz, /readyz and Prometheus /metrics (e.g. 127.0.0.1:9090); off when empty")
	fs.StringVar(&c.domain, "domain", defaultDomain, "API host, and the API namespace v0@DOMAIN (exe.dev's: exe.dev)")
	fs.StringVar(&c.vmDomain, "vm-domain", defaultVMDomain, "VM hosts NAME.VM-DOMAIN and namespaces v0@NAME.VM-DOMAIN (exe.dev's: exe.xyz)")
	fs.StringVar(&c.hostKey, "host-key", "", "SSH host key file (default: DATA/"+hostKeyFile+", created on first start)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (with --tls-key: serve HTTPS); re-read when it changes")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file")
	fs.BoolVar(&c.acme.on, "acme", false, "obtain and renew TLS certificates over ACME for DOMAIN and each existing VM host (HTTPS on --http-addr, TLS-ALPN-01 there); instead of --tls-cert")
	fs.StringVar(&c.acme.email, "acme-email", "", "the ACME account's contact email (required with --acme)")
	fs.StringVar(&c.acme.directory, "acme-directory", certs.LetsEncrypt, "ACME directory URL; using it agrees to that CA's terms of service")
	fs.IntVar(&c.acme.rate, "acme-rate", certs.DefaultRate, "at most this many new names ordered per hour, across every instance sharing the registry (renewals do not count)")
	fs.StringVar(&c.redirectAddr, "http-redirect-addr", "", "plain-HTTP listen address (e.g. :80): ACME HTTP-01 challenges, and a 308 to HTTPS for every other request; needs --acme or --tls-cert")
	fs.StringVar(&c.forwardAuthAddr, "forward-auth-addr", "", "forward-auth listen address for a front proxy of your own (nginx auth_request, Caddy forward_auth, Traefik forwardAuth: docs/forward-auth.md), e.g. 127.0.0.1:9091; loopback or a private network only; off when empty")
	fs.StringVar(&c.publicURL, "public-url", "", "the URL users reach the main host at when a front proxy stands before exed (e.g. https://exe.example.com): the links and URLs the commands print take its scheme and port (default: --http-addr's)")
	fs.BoolVar(&c.demo, "demo", false, "create a demo user, key and VM (with a built-in echo upstream) and print commands to try")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests and sessions may take to finish on SIGTERM")
	fs.DurationVar(&c.cacheTTL, "cache-ttl", time.Second, "how long a verified token is trusted without asking the registry again")
	fs.IntVar(&c.sshMaxConns, "ssh-max-conns", 0, "SSH connections open at once, authenticated or not; 0: a quarter of the open-file limit left after a reserve")
	fs.IntVar(&c.sshMaxPerSource, "ssh-max-conns-per-source", defaultSSHPerSource, "SSH connections open at once from one address (an IPv6 /64)")
	fs.IntVar(&c.httpMaxConns, "http-max-conns", 0, "HTTP connections open at once; 0: a quarter of the open-file limit left after a reserve")
	fs.BoolVar(&c.assertion, "assertion", true, "sign each request forwarded with an identity (X-ExeDev-Jwt-Assertion) and serve the JWKS")
	fs.DurationVar(&c.assertionTTL, "assertion-ttl", assertion.DefaultTTL, "lifetime of an identity assertion (whole seconds, at most 10m)")
	fs.StringVar(&c.secretKeyFile, "secret-key-file", "", "server secret sealing the assertion signing keys (default: DATA/"+secretKeyFile+", created on first start); instances sharing a database must share it")
	// How often the signing keys are read again (rotation, keys added by
	// other instances). Hidden: the tests shorten it; operators have no
	// reason to.
	fs.DurationVar(&c.assertionRefresh, "assertion-refresh", assertion.DefaultRefresh, "how often the assertion signing keys are read again")
	fs.MarkHidden("assertion-refresh")
	// How often last-used times (of keys, of browser sessions) are written,
	// and so at most how often each one's is. Hidden: the spec says a
	// minute; the tests that watch a "last used" change shorten it.
	fs.DurationVar(&c.lastUsedInterval, "last-used-interval", time.Minute, "how often last-used times are written")
	fs.MarkHidden("last-used-interval")
	return fs, c
}

// applyEnv sets every flag not given on the command line from EXED_<NAME>.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "EXED_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", name, e)
			}
		}
	})
	return err
}

func (a *app) serve(ctx context.Context, args []string, stop func()) error {
	fs, c := a.serveFlags()
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, a.getenv); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return errors.New("serve: --tls-cert and --tls-key go together")
	}
	if err := checkTLSFlags(fs, c); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if c.assertion {
		if err := assertion.CheckTTL(c.assertionTTL); err != nil {
			return fmt.Errorf("serve: --assertion-ttl: %w", err)
		}
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return fmt.Errorf("serve: --log-format must be text or json, not %q", c.logFormat)
	}
	logOut := newLogWriter(a.stderr)
	defer logOut.Close()
	log := slog.New(slog.NewTextHandler(logOut, nil))
	if c.logFormat == "json" {
		log = slog.New(slog.NewJSONHandler(logOut, nil))
	}

	rawStore, err := sqlstore.Open(ctx, c.db, c.data)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer rawStore.Close()
	// On PostgreSQL, hear the other instances' writes (and the admin
	// commands'), so that followChanges forgets what they changed at once
	// rather than when its TTL runs out. Stopped by Close.
	rawStore.Listen(log)

	hostKey, err := sshserver.LoadOrCreateHostKey(hostKeyPath(c.hostKey, c.data))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	var (
		reloader  *certReloader
		tlsConfig *tls.Config
	)
	if c.tlsCert != "" {
		if reloader, err = newCertReloader(c.tlsCert, c.tlsKey, log); err != nil {
			return fmt.Errorf("serve: tls: %w", err)
		}
		tlsConfig = &tls.Config{GetCertificate: reloader.GetCertificate, MinVersion: tls.VersionTLS12}
	}

	lns, err := listen(c)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	bounds := limitListeners(lns, c, log)

	// Metrics exist only where they can be read: with --admin-addr. A nil
	// *metrics.Metrics records nothing.
	var m *metrics.Metrics
	if lns.admin != nil {
		m = metrics.New()
	}
	st := m.Store(rawStore)

	// The server secret seals what the store must hold but a copy of the
	// database must not yield: assertion signing keys, ACME private keys.
	var secret *assertion.Secret
	if c.assertion || c.acme.on {
		if secret, err = assertion.LoadOrCreateSecret(secretKeyPath(c.secretKeyFile, c.data)); err != nil {
			lns.closeAll()
			return fmt.Errorf("serve: %w", err)
		}
	}
	var acme *certs.Manager
	if c.acme.on {
		if acme, err = newACME(c, st, lns, secret, log); err != nil {
			lns.closeAll()
			return fmt.Errorf("serve: %w", err)
		}
		defer acme.Stop() // after the listeners have drained
		tlsConfig = acme.TLSConfig()
		m.WatchCertificates(func() metrics.CertStatus { return metrics.CertStatus(acme.Status()) })
	}
	vmURL := vmURLFunc(c.vmDomain, lns.http.Addr(), tlsConfig != nil)
	apiURL := hostURL(c.domain, lns.http.Addr(), tlsConfig != nil)
	if c.publicURL != "" {
		if apiURL, vmURL, err = publicURLs(c.publicURL, c.domain, c.vmDomain); err != nil {
			lns.closeAll()
			return fmt.Errorf("serve: --public-url: %w", err)
		}
	}
	verifier := tokens.NewVerifier(tokens.Config{Registry: st, CacheTTL: c.cacheTTL, OnVerify: m.TokenVerified})
	m.WatchVerifierCache(verifier.CacheStats)
	lastUsed := store.NewLastUsedWriter(st, c.lastUsedInterval, time.Now)
	m.WatchLastUsedBacklog(lastUsed.Backlog)
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	lastUsedDone := make(chan error, 1)
	go func() { lastUsedDone <- lastUsed.Run(runCtx) }()

	sessionLastUsed, stopSessions := runSessionUpkeep(st, c.lastUsedInterval, log)
	defer stopSessions()
	suite := sshcmd.New(sshcmd.Env{
		Store: st, Verifier: verifier, Domain: c.domain, VMDomain: c.vmDomain,
		VMURL: vmURL, APIURL: apiURL, Now: time.Now, Log: log,
	})
	sshSrv := sshserver.NewServer(sshserver.ServerConfig{
		Suite: suite, Store: st, HostKey: hostKey, Log: log, LastUsed: lastUsed, Metrics: m,
	})
	var issuer *assertion.Issuer
	if c.assertion {
		if issuer, err = startAssertions(ctx, runCtx, st, secret, c, log); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	sshHost, sshPort := sshPublicAddr(c.domain, lns.ssh.Addr())
	front := proxy.New(proxy.Config{
		Store: st, Verifier: verifier, Suite: suite, LastUsed: lastUsed,
		Domain: c.domain, VMDomain: c.vmDomain, Log: log, Now: time.Now, Metrics: m,
		AccessLog: logOut, AccessLogJSON: c.logFormat == "json", // access lines straight into log's buffer
		HSTS:       tlsConfig != nil,
		Assertions: issuer,
		Sessions:   st, SessionLastUsed: sessionLastUsed, SSHHost: sshHost, SSHPort: sshPort,
	})
	defer followChanges(st, verifier, front, acme)()
	httpSrv := &http.Server{
		Handler: front,
		// Header, idle and (for /exec, per route) body timeouts; no
		// global read or write timeout, which would cut long proxied
		// streams (git pushes, server-sent events, WebSocket).
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}

	// serving is true from when every listener is up until shutdown
	// begins: /readyz then tells load balancers to stop sending.
	var serving atomic.Bool
	ready := func(ctx context.Context) error {
		if !serving.Load() {
			return errors.New("not serving (starting or shutting down)")
		}
		if err := rawStore.Ping(ctx); err != nil {
			return errors.New("store unreachable") // the driver's text may name hosts and users
		}
		return nil
	}
	var warnings func() []string
	if acme != nil {
		warnings = acme.Warnings
	}
	var adminSrv *http.Server
	if lns.admin != nil {
		adminSrv = &http.Server{
			Handler:           m.Handler(ready, warnings),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}

	var redirectSrv *http.Server
	if lns.redirect != nil {
		redirectSrv = &http.Server{
			Handler:           redirectHandler(acme, lns.http.Addr()),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}

	// The forward-auth listener: the front proxy's questions, and what it
	// forwards to exed, with the origin it says the browser used.
	var faSrv *http.Server
	if lns.forwardAuth != nil {
		faSrv = &http.Server{
			Handler:           front.ForwardAuth(),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}

	errc := make(chan error, 5) // one per listener
	go func() { errc <- sshSrv.Serve(lns.ssh) }()
	go func() {
		if tlsConfig != nil {
			errc <- httpSrv.ServeTLS(lns.http, "", "")
		} else {
			errc <- httpSrv.Serve(lns.http)
		}
	}()
	if redirectSrv != nil {
		go func() { errc <- redirectSrv.Serve(lns.redirect) }()
	}
	if faSrv != nil {
		go func() { errc <- faSrv.Serve(lns.forwardAuth) }()
	}
	if acme != nil {
		acme.Start() // the main host's certificate: the listeners answer its challenges
	}
	if adminSrv != nil {
		go func() { errc <- adminSrv.Serve(lns.admin) }()
	}
	if a.notify != nil {
		hup := make(chan os.Signal, 1)
		a.notify(hup, syscall.SIGHUP)
		go reloadOnHangup(runCtx, hup, reloader, log)
	}

	stopDemo := func() {}
	if c.demo {
		stopDemo, err = a.setupDemo(ctx, st, c, hostKey, lns.ssh.Addr(), lns.http.Addr(), vmURL)
		if err != nil {
			sshSrv.Shutdown(context.Background())
			httpSrv.Close()
			for _, srv := range []*http.Server{redirectSrv, faSrv} {
				if srv != nil {
					srv.Close()
				}
			}
			if adminSrv != nil {
				adminSrv.Close()
			}
			return fmt.Errorf("serve: demo: %w", err)
		}
	}
	serving.Store(true)
	attrs := []any{"ssh", lns.ssh.Addr().String(), "http", lns.http.Addr().String(),
		"ssh_max_conns", bounds.ssh.Total, "ssh_max_conns_per_source", bounds.ssh.PerSource, "http_max_conns", bounds.http.Total}
	if lns.admin != nil {
		attrs = append(attrs, "admin", lns.admin.Addr().String())
	}
	if lns.redirect != nil {
		attrs = append(attrs, "http_redirect", lns.redirect.Addr().String())
	}
	if lns.forwardAuth != nil {
		attrs = append(attrs, "forward_auth", lns.forwardAuth.Addr().String())
	}
	log.Info("exed serving", append(attrs, "tls", tlsConfig != nil, "acme", acme != nil,
		"host_key", keys.Fingerprint(hostKey.PublicKey()), "domain", c.domain, "vm_domain", c.vmDomain)...)

	select {
	case <-ctx.Done():
	case err = <-errc:
		log.Error("listener failed", "err", err)
	}
	stop() // a second signal now ends the process at once
	serving.Store(false)
	log.Info("shutting down", "timeout", c.shutdownTimeout)
	shutdown(c.shutdownTimeout, log, httpSrv, []*http.Server{redirectSrv, faSrv}, sshSrv, stopDemo)
	cancelRun() // the last-used writer flushes what it holds, then returns
	stopSessions()
	if ferr := <-lastUsedDone; ferr != nil {
		log.Warn("flush last-used", "err", ferr)
	}
	if adminSrv != nil {
		adminSrv.Close() // last, so that a scrape can watch the drain
	}
	log.Info("stopped")
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// startAssertions opens the signing keys under the server secret, adding
// the first when there is none, and keeps them fresh until runCtx is done.
// A secret that does not open the keys in the store stops the start.
func startAssertions(ctx, runCtx context.Context, st store.AssertionKeyStore, secret *assertion.Secret, c *serveConfig, log *slog.Logger) (*assertion.Issuer, error) {
	issuer, err := assertion.NewIssuer(ctx, assertion.Config{
		Store: st, Secret: secret, Domain: c.domain, VMDomain: c.vmDomain, TTL: c.assertionTTL, Log: log,
	})
	if err != nil {
		return nil, err
	}
	go issuer.Run(runCtx, c.assertionRefresh)
	return issuer, nil
}

// followChanges subscribes this instance's caches to the store's change
// feed: a key written through this instance (removed, above all) leaves the
// Verifier's cache, a VM (or its shares) the proxy's, and an ended browser
// session (or the sessions of a removed key or VM) the proxy's session
// cache, before the write returns. On PostgreSQL, writes by other instances
// and by the admin commands are announced too, a moment after they commit
// (sqlstore's Listen), and AllChanged whenever some may have gone unheard;
// on SQLite they are not. The caches' TTLs bound how long what goes unheard
// takes to be seen.
func followChanges(c store.Changes, v *tokens.Verifier, front *proxy.Handler, acme *certs.Manager) (cancel func()) {
	return c.Subscribe(func(ch store.Change) {
		front.ForgetSessions(ch)
		switch ch.Kind {
		case store.KeyChanged:
			v.Forget(ch.ID)
		case store.VMChanged:
			front.ForgetVM(ch.ID)
			if acme != nil {
				acme.Forget(ch.ID) // a removed VM's certificate is neither served nor renewed
			}
		case store.ShareChanged:
			front.ForgetVM(ch.ID) // who may reach it changed
		case store.UserChanged:
			v.ForgetUser(ch.ID)
		case store.AllChanged:
			// Changes from other instances may have gone unheard (the
			// listener reconnected): drop everything cached from the
			// registry. certs' sweep finds removed VMs by itself.
			v.ForgetAll()
			front.ForgetAll()
		}
	})
}

// bounds are the connection limits serve put on its listeners.
type bounds struct{ ssh, http netlimit.Limits }

// limitListeners bounds the listeners' connections, sized from the
// open-file limit (raised to its hard limit first) unless the flags say:
// SSH in total and per source address, HTTP in total, the admin listener
// to adminMaxConns, with a reserve for everything else, so that idle
// connections piling up on one cannot take the others' file descriptors.
// Refusals are logged at most once a second.
func limitListeners(lns *listeners, c *serveConfig, log *slog.Logger) bounds {
	files, err := netlimit.RaiseFileLimit()
	if err != nil {
		log.Warn("open-file limit unknown: sizing connection bounds for 1024", "err", err)
		files = 1024
	}
	sshMax, httpMax := netlimit.Budget(files)
	if c.sshMaxConns > 0 {
		sshMax = c.sshMaxConns
	}
	if c.httpMaxConns > 0 {
		httpMax = c.httpMaxConns
	}
	var last atomic.Int64
	refuse := func(listener string) func(string) {
		return func(reason string) {
			if now := time.Now().Unix(); last.Swap(now) != now {
				log.Warn("connection refused: at its bound", "listener", listener, "bound", reason)
			}
		}
	}
	b := bounds{
		ssh:  netlimit.Limits{Total: sshMax, PerSource: c.sshMaxPerSource, OnRefuse: refuse("ssh")},
		http: netlimit.Limits{Total: httpMax, OnRefuse: refuse("http")},
	}
	lns.ssh = netlimit.Listen(lns.ssh, b.ssh)
	lns.http = netlimit.Listen(lns.http, b.http)
	if lns.admin != nil {
		lns.admin = netlimit.Listen(lns.admin, netlimit.Limits{Total: adminMaxConns, OnRefuse: refuse("admin")})
	}
	log.Info("connection bounds", "open_files", files, "ssh_max_conns", sshMax, "ssh_max_conns_per_source", c.sshMaxPerSource, "http_max_conns", httpMax, "admin_max_conns", adminMaxConns)
	return b
}

// listeners are serve's open sockets; admin is nil without --admin-addr.
// checkTLSFlags checks the TLS flags against each other: certificate
// files or ACME, not both; the --acme-* flags only with --acme; a
// plain-HTTP listener only when there is HTTPS to send it to.
func checkTLSFlags(fs *pflag.FlagSet, c *serveConfig) error {
	if c.acme.on {
		switch {
		case c.tlsCert != "":
			return errors.New("--acme and --tls-cert/--tls-key are exclusive: exed either obtains its certificates itself or serves the files given")
		case c.acme.email == "":
			return errors.New("--acme needs --acme-email (the ACME account's contact)")
		case c.acme.rate < 1:
			return fmt.Errorf("--acme-rate must be at least 1, not %d", c.acme.rate)
		case c.acme.directory == "":
			return errors.New("--acme-directory must not be empty")
		}
	} else {
		for _, name := range []string{"acme-email", "acme-directory", "acme-rate"} {
			if fs.Changed(name) {
				return fmt.Errorf("--%s is only for --acme", name)
			}
		}
	}
	if c.redirectAddr != "" && !c.acme.on && c.tlsCert == "" {
		return errors.New("--http-redirect-addr sends plain HTTP to HTTPS: it needs --acme or --tls-cert")
	}
	return nil
}

// acmeSealInfo names the server secret's key for ACME private keys.
const acmeSealInfo = "exed acme private keys v1"

// newACME builds the certificate manager for --acme, on the registry and
// the listeners already open.
func newACME(c *serveConfig, st store.Store, lns *listeners, secret *assertion.Secret, log *slog.Logger) (*certs.Manager, error) {
	sealer, err := secret.Sealer(acmeSealInfo)
	if err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	cc := certs.Config{
		Store: st, Registry: st,
		Domain: c.domain, VMDomain: c.vmDomain,
		Email: c.acme.email, Directory: c.acme.directory, Rate: c.acme.rate,
		TLSAddr: lns.http.Addr().String(),
		Sealer:  sealer, // the account's and certificates' private keys
		Log:     log,
	}
	if lns.redirect != nil {
		cc.HTTPAddr = lns.redirect.Addr().String()
	}
	mgr, err := certs.New(cc)
	if err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	return mgr, nil
}

// redirectHandler serves --http-redirect-addr: with ACME, HTTP-01
// challenges and the redirect; with certificate files, the redirect.
func redirectHandler(acme *certs.Manager, https net.Addr) http.Handler {
	if acme != nil {
		return acme.HTTPHandler()
	}
	port := 443
	if a, ok := https.(*net.TCPAddr); ok {
		port = a.Port
	}
	return certs.RedirectHandler(port)
}

// listeners are serve's open sockets; admin is nil without --admin-addr,
// redirect without --http-redirect-addr, forwardAuth without
// --forward-auth-addr.
type listeners struct {
	ssh, http, admin, redirect, forwardAuth net.Listener
}

// closeAll closes the listeners that are open.
func (lns *listeners) closeAll() {
	for _, ln := range []net.Listener{lns.ssh, lns.http, lns.admin, lns.redirect, lns.forwardAuth} {
		if ln != nil {
			ln.Close()
		}
	}
}

// listen opens every listener c asks for, or none.
func listen(c *serveConfig) (*listeners, error) {
	var lns listeners
	closeAll := lns.closeAll
	var err error
	if lns.ssh, err = net.Listen("tcp", c.sshAddr); err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	if lns.http, err = net.Listen("tcp", c.httpAddr); err != nil {
		closeAll()
		return nil, fmt.Errorf("http: %w", err)
	}
	if c.adminAddr != "" {
		if lns.admin, err = net.Listen("tcp", c.adminAddr); err != nil {
			closeAll()
			return nil, fmt.Errorf("admin: %w", err)
		}
	}
	if c.redirectAddr != "" {
		if lns.redirect, err = net.Listen("tcp", c.redirectAddr); err != nil {
			closeAll()
			return nil, fmt.Errorf("http redirect: %w", err)
		}
	}
	if c.forwardAuthAddr != "" {
		if lns.forwardAuth, err = net.Listen("tcp", c.forwardAuthAddr); err != nil {
			closeAll()
			return nil, fmt.Errorf("forward auth: %w", err)
		}
	}
	return &lns, nil
}

// shutdown stops both fronts at once: no new connections, then in-flight
// HTTP requests and SSH sessions get until timeout to finish. Past it,
// what is left is cut; that is logged, and the process still exits 0,
// since the operator chose the timeout. The side listeners (the plain-HTTP
// redirect, forward auth; nil when off) drain alongside. The demo's
// upstreams go last (stopDemo), once nothing is proxied to them.
func shutdown(timeout time.Duration, log *slog.Logger, httpSrv *http.Server, side []*http.Server, sshSrv *sshserver.Server, stopDemo func()) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		wg              sync.WaitGroup
		httpErr, sshErr error
	)
	wg.Go(func() { httpErr = httpSrv.Shutdown(ctx) })
	for _, srv := range side {
		if srv != nil {
			wg.Go(func() {
				if srv.Shutdown(ctx) != nil {
					srv.Close()
				}
			})
		}
	}
	wg.Go(func() { sshErr = sshSrv.Shutdown(ctx) }) // closes what is left itself
	wg.Wait()
	if httpErr != nil {
		httpSrv.Close()
	}
	if httpErr != nil || sshErr != nil {
		log.Warn("shutdown timeout passed: closed the connections still open", "http_err", httpErr, "ssh_err", sshErr)
	}
	stopDemo()
}

// reloadOnHangup re-reads the TLS certificate files on each SIGHUP until
// ctx is done.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, reloader *certReloader, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if reloader == nil {
				log.Info("SIGHUP: no TLS certificate to reload")
				continue
			}
			reloader.Reload()
		}
	}
}

// certCheckInterval is how often, at most, a TLS handshake looks at the
// certificate files again: a renewed certificate is served within seconds
// without a signal, and a busy server does not stat two files per
// handshake.
const certCheckInterval = 2 * time.Second

// certReloader serves the certificate in two files and re-reads them when
// their size or modification time changes (checked on a handshake, at most
// every certCheckInterval) or on Reload. Connections already open keep the
// certificate they were made with. A pair that fails to load (a renewal
// half-written: new certificate, old key) is logged and the previous one
// kept until the files change again.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   certStamp // of the files when last loaded (or tried)
	checked time.Time // last look at the files
}

// certStamp is the size and modification time of the two files.
type certStamp [2]struct{ size, mtime int64 }

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadLocked(); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= certCheckInterval {
		r.checked = now
		if st, err := r.statLocked(); err == nil && st != r.stamp {
			r.reloadLocked()
		}
	}
	return r.cert, nil
}

// Reload re-reads the files now, changed or not (SIGHUP).
func (r *certReloader) Reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked = time.Now()
	r.reloadLocked()
}

func (r *certReloader) reloadLocked() {
	if err := r.loadLocked(); err != nil {
		r.log.Warn("tls: reload certificate: keeping the previous one", "err", err)
	}
}

// loadLocked reads the pair and, if it loads, serves it from now on.
func (r *certReloader) loadLocked() error {
	st, err := r.statLocked()
	if err != nil {
		return err
	}
	r.stamp = st // a pair that fails is tried again once the files change
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert = &cert
	r.log.Info("tls certificate loaded", "file", r.certFile,
		"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter.UTC())
	return nil
}

func (r *certReloader) statLocked() (certStamp, error) {
	var st certStamp
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return st, err
		}
		st[i].size, st[i].mtime = fi.Size(), fi.ModTime().UnixNano()
	}
	return st, nil
}

// publicURLs are the main host's URL and the VMs' under --public-url: its
// scheme and port (dropped when the scheme's default), on DOMAIN and
// NAME.VM-DOMAIN. Its host must be DOMAIN, and it has no path.
func publicURLs(raw, domain, vmDomain string) (api string, vm func(string) string, err error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", nil, err
	case u.Scheme != "http" && u.Scheme != "https":
		return "", nil, fmt.Errorf("%q: the scheme must be http or https", raw)
	case !strings.EqualFold(u.Hostname(), domain):
		return "", nil, fmt.Errorf("%q: the host must be --domain, %s", raw, domain)
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return "", nil, fmt.Errorf("%q: only scheme://%s[:port]", raw, domain)
	}
	port := u.Port()
	if port == "443" && u.Scheme == "https" || port == "80" && u.Scheme == "http" {
		port = ""
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", nil, fmt.Errorf("%q: bad port", raw)
		}
		port = ":" + port
	}
	return u.Scheme + "://" + domain + port, func(name string) string {
		return u.Scheme + "://" + name + "." + vmDomain + port
	}, nil
}

// vmURLFunc returns the URL at which users reach a VM through this server:
// hostURL of NAME.VMDOMAIN.
func vmURLFunc(vmDomain string, httpAddr net.Addr, tls bool) func(string) string {
	return func(name string) string {
		return hostURL(name+"."+vmDomain, httpAddr, tls)
	}
}

// hostURL is http(s)://HOST with the listener's port, unless it is the
// scheme's default: where users reach host through this server.
func hostURL(host string, httpAddr net.Addr, tls bool) string {
	scheme, defPort := "http", 80
	if tls {
		scheme, defPort = "https", 443
	}
	port := ""
	if a, ok := httpAddr.(*net.TCPAddr); ok && a.Port != defPort {
		port = ":" + strconv.Itoa(a.Port)
	}
	return scheme + "://" + host + port
}

// ensureDir makes sure dir exists with owner-only permissions.
func ensureDir(dir string) error {
	return os.MkdirAll(dir, 0o700)
}
