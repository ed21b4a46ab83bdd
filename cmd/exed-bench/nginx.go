package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Scenario 2's nginx rows, when nginx is installed: nginx as a plain
// reverse proxy to the upstream, and nginx asking exed's forward-auth
// listener about each request (auth_request) before proxying it, without
// and with nginx's cache of the answers. One nginx process serves the
// three on three ports, its workers as many as the cores (as Go's
// GOMAXPROCS), with keep-alive connections to the upstream and to exed
// as exed's own transport keeps them.

// nginxFront is the running nginx and its three ports.
type nginxFront struct {
	cmd                 *exec.Cmd
	exited              chan struct{}
	plain, auth, cached string // addresses
	dir                 string
}

// findNginx is the nginx binary, or "" when none is installed (Debian
// puts it in /usr/sbin, which is not on every PATH).
func findNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// nginxConf is the bench's nginx.conf: the docs' forward-auth config
// (docs/forward-auth.md) reduced to what the load sends, on three ports.
const nginxConf = `%[1]sworker_processes auto;
error_log %[2]s/error.log;
pid %[2]s/nginx.pid;
events { worker_connections 4096; }
http {
    access_log %[2]s/access.log combined buffer=64k flush=1s;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
    proxy_cache_path %[2]s/cache levels=1 keys_zone=exed_auth:10m inactive=1m;

    upstream vm { server %[3]s; keepalive 64; }
    upstream exed { server %[4]s; keepalive 64; }

    server {
        listen %[5]s;
        location / {
            proxy_pass http://vm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }
    }
%[6]s
%[7]s
}
`

// nginxAuthServer is one server block that asks exed first; cache holds
// the auth cache's lines, or nothing.
const nginxAuthServer = `
    server {
        listen %[1]s;
        location = /__exe.dev/forward-auth {
            internal;
            proxy_pass http://exed/auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Host $host;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port $server_port;
            %[2]s
        }
        location / {
            auth_request /__exe.dev/forward-auth;
            auth_request_set $exed_user_id $upstream_http_x_exedev_userid;
            auth_request_set $exed_email $upstream_http_x_exedev_email;
            auth_request_set $exed_token_ctx $upstream_http_x_exedev_token_ctx;
            auth_request_set $exed_assertion $upstream_http_x_exedev_jwt_assertion;
            auth_request_set $exed_cookie $upstream_http_x_exedev_upstream_cookie;
            auth_request_set $exed_authorization $upstream_http_x_exedev_upstream_authorization;
            proxy_pass http://vm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-ExeDev-UserID $exed_user_id;
            proxy_set_header X-ExeDev-Email $exed_email;
            proxy_set_header X-ExeDev-Token-Ctx $exed_token_ctx;
            proxy_set_header X-ExeDev-Jwt-Assertion $exed_assertion;
            proxy_set_header X-ExeDev-Authorization "";
            proxy_set_header Cookie $exed_cookie;
            proxy_set_header Authorization $exed_authorization;
        }
    }`

// nginxCacheLines are the docs' auth cache lines.
const nginxCacheLines = `proxy_cache exed_auth;
            proxy_cache_key "$scheme $host $server_port|$http_x_exedev_authorization|$http_authorization|$http_cookie|$arg_share|$http_upgrade";
            proxy_cache_valid 200 5s;`

// startNginx starts nginx in dir in front of upstream, asking exed's
// forward-auth listener at fa, and waits until its three ports answer.
func startNginx(ctx context.Context, bin, dir, upstream, fa string) (*nginxFront, error) {
	var ports [3]string
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports[i] = ln.Addr().String()
		ln.Close()
	}
	for _, d := range []string{"tmp", "cache"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // the workers must reach the temp dir, 0700
	}
	conf := fmt.Sprintf(nginxConf, user, dir, upstream, fa, ports[0],
		fmt.Sprintf(nginxAuthServer, ports[1], ""), fmt.Sprintf(nginxAuthServer, ports[2], nginxCacheLines))
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", dir+"/", "-c", file, "-g", "daemon off;")
	cmd.SysProcAttr = childAttr()
	logFile, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	n := &nginxFront{cmd: cmd, exited: make(chan struct{}), plain: ports[0], auth: ports[1], cached: ports[2], dir: dir}
	go func() { cmd.Wait(); logFile.Close(); close(n.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range ports {
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-n.exited:
				out, _ := os.ReadFile(filepath.Join(dir, "stderr.log"))
				errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				return nil, fmt.Errorf("nginx exited: %s%s", lastLines(out, 5), lastLines(errLog, 5))
			case <-ctx.Done():
				n.stop()
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				n.stop()
				return nil, errors.New("nginx did not listen on " + addr)
			}
		}
	}
	return n, nil
}

// stop ends nginx (SIGTERM: a fast shutdown) and waits for it.
func (n *nginxFront) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}
