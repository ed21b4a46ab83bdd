package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/proxy"
	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// serveConfig is everything `exed serve` takes from flags or environment.
type serveConfig struct {
	data, db          string
	sshAddr, httpAddr string
	domain, vmDomain  string
	hostKey           string
	tlsCert, tlsKey   string
	demo              bool
	logFormat         string
	shutdownTimeout   time.Duration
	cacheTTL          time.Duration
}

func (a *app) serveFlags() (*pflag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := a.flagSet("serve", "serve [flags]\n\nEvery flag can also be set in the environment: EXED_ + its name in capitals, - as _\n(e.g. EXED_HTTP_ADDR=0.0.0.0:8080). A flag given on the command line wins.")
	fs.StringVar(&c.data, "data", "./exed-data", "data directory: SQLite file and host key")
	fs.StringVar(&c.db, "db", "", "registry DSN (postgres://…); default: SQLite in --data")
	fs.StringVar(&c.sshAddr, "ssh-addr", "127.0.0.1:2222", "SSH listen address")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP(S) listen address")
	fs.StringVar(&c.domain, "domain", "exe.dev", "API host, and the API namespace v0@DOMAIN")
	fs.StringVar(&c.vmDomain, "vm-domain", "exe.xyz", "VM hosts NAME.VM-DOMAIN and namespaces v0@NAME.VM-DOMAIN")
	fs.StringVar(&c.hostKey, "host-key", "", "SSH host key file (default: DATA/"+hostKeyFile+", created on first start)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (with --tls-key: serve HTTPS)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file")
	fs.BoolVar(&c.demo, "demo", false, "create a demo user, key and VM (with a built-in echo upstream) and print commands to try")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests and sessions may take to finish on SIGTERM")
	fs.DurationVar(&c.cacheTTL, "cache-ttl", time.Second, "how long a verified token is trusted without asking the registry again")
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
	var log *slog.Logger
	switch c.logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(a.stderr, nil))
	case "json":
		log = slog.New(slog.NewJSONHandler(a.stderr, nil))
	default:
		return fmt.Errorf("serve: --log-format must be text or json, not %q", c.logFormat)
	}

	st, err := store.Open(ctx, c.db, c.data)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer st.Close()

	hostKey, err := sshcmd.LoadOrCreateHostKey(hostKeyPath(c.hostKey, c.data))
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	sshLn, err := net.Listen("tcp", c.sshAddr)
	if err != nil {
		return fmt.Errorf("serve: ssh: %w", err)
	}
	httpLn, err := net.Listen("tcp", c.httpAddr)
	if err != nil {
		sshLn.Close()
		return fmt.Errorf("serve: http: %w", err)
	}
	var tlsConfig *tls.Config
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return fmt.Errorf("serve: tls: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	vmURL := vmURLFunc(c.vmDomain, httpLn.Addr(), tlsConfig != nil)

	verifier := tokens.NewVerifier(tokens.Config{Registry: st, CacheTTL: c.cacheTTL})
	lastUsed := store.NewLastUsedWriter(st, time.Minute, time.Now)
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	lastUsedDone := make(chan struct{})
	go func() { defer close(lastUsedDone); lastUsed.Run(runCtx) }()

	suite := sshcmd.New(sshcmd.Env{
		Store: st, Verifier: verifier, Domain: c.domain, VMDomain: c.vmDomain,
		VMURL: vmURL, Now: time.Now, Log: log,
	})
	sshSrv := sshcmd.NewServer(sshcmd.ServerConfig{Suite: suite, Store: st, HostKey: hostKey, Log: log, LastUsed: lastUsed})
	handler := proxy.New(proxy.Config{
		Store: st, Verifier: verifier, Suite: suite, LastUsed: lastUsed,
		Domain: c.domain, VMDomain: c.vmDomain, Log: log, Now: time.Now,
	})
	httpSrv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}

	errc := make(chan error, 3)
	go func() { errc <- sshSrv.Serve(sshLn) }()
	go func() {
		if tlsConfig != nil {
			errc <- httpSrv.ServeTLS(httpLn, "", "")
		} else {
			errc <- httpSrv.Serve(httpLn)
		}
	}()

	var echoSrv *http.Server
	if c.demo {
		echoSrv, err = a.setupDemo(ctx, st, c, sshLn.Addr(), httpLn.Addr(), vmURL)
		if err != nil {
			sshSrv.Shutdown(context.Background())
			httpSrv.Close()
			return fmt.Errorf("serve: demo: %w", err)
		}
	}
	log.Info("exed serving",
		"ssh", sshLn.Addr().String(), "http", httpLn.Addr().String(), "tls", tlsConfig != nil,
		"host_key", keys.Fingerprint(hostKey.PublicKey()), "domain", c.domain, "vm_domain", c.vmDomain)

	select {
	case <-ctx.Done():
	case err = <-errc:
		log.Error("listener failed", "err", err)
	}
	stop() // a second signal now ends the process at once
	log.Info("shutting down", "timeout", c.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	httpErr := httpSrv.Shutdown(sctx)
	sshErr := sshSrv.Shutdown(sctx)
	if echoSrv != nil {
		echoSrv.Shutdown(sctx)
	}
	cancelRun()
	<-lastUsedDone
	if ferr := lastUsed.Flush(sctx); ferr != nil {
		log.Warn("flush last-used", "err", ferr)
	}
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return errors.Join(httpErr, sshErr)
}

// vmURLFunc returns the URL at which users reach a VM through this server:
// https://NAME.VMDOMAIN, with the listener's port unless it is the
// scheme's default.
func vmURLFunc(vmDomain string, httpAddr net.Addr, tls bool) func(string) string {
	scheme, defPort := "http", 80
	if tls {
		scheme, defPort = "https", 443
	}
	port := ""
	if a, ok := httpAddr.(*net.TCPAddr); ok && a.Port != defPort {
		port = ":" + strconv.Itoa(a.Port)
	}
	return func(name string) string {
		return scheme + "://" + name + "." + vmDomain + port
	}
}

// ensureDir makes sure dir exists with owner-only permissions.
func ensureDir(dir string) error {
	return os.MkdirAll(dir, 0o700)
}
