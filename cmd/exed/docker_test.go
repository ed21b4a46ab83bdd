package main

import (
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// No Docker engine runs where the tests do, so TestDockerfileBuild reads
// the Dockerfile and does what Docker would, outside it: the build stage's
// instructions run in a temp dir that stands for the container's root,
// with a copy of the repository (less .dockerignore) as the build context.
// The image's binary must then be static, print its version, open the
// registry, and pass the image's HEALTHCHECK against a running server.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // FROM, RUN, … in capitals
	args string
}

// parseDockerfile splits a Dockerfile into its stages' instructions.
func parseDockerfile(t *testing.T, path string) [][]instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]instruction
	var cur string
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue // comments may sit inside a continued instruction, too
		}
		if l, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur += l + " "
			continue
		}
		cur += trimmed
		name, args, _ := strings.Cut(cur, " ")
		cur = ""
		in := instruction{cmd: strings.ToUpper(name), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("%s before FROM", in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	return stages
}

// dockerIgnored reports whether the context path rel (slash-separated)
// matches a .dockerignore pattern. Only the forms our file uses are
// supported: plain globs, anchored at the context root.
func dockerIgnored(patterns []string, rel string) bool {
	for _, p := range patterns {
		if ok, _ := filepath.Match(strings.TrimPrefix(p, "/"), rel); ok {
			return true
		}
	}
	return false
}

// buildContext copies the repository into dir as Docker would send it.
func buildContext(t *testing.T, repo, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			if strings.HasPrefix(l, "!") || strings.Contains(l, "**") {
				t.Fatalf(".dockerignore: %q: this test does not implement ! or ** patterns", l)
			}
			patterns = append(patterns, l)
		}
	}
	err = filepath.WalkDir(repo, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, path)
		if rel == "." {
			return nil
		}
		if dockerIgnored(patterns, filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(path, dst)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// absPath matches an absolute path at the start of a shell word: in the
// build stage's RUN commands, those are paths in the container.
var absPath = regexp.MustCompile(`(^|[\s"'=])/`)

// runBuildStage does the build stage's instructions with root standing for
// the container's / and contextDir for the build context; args overrides
// ARG defaults, as docker build --build-arg does.
func runBuildStage(t *testing.T, stage []instruction, contextDir, root string, args map[string]string) {
	t.Helper()
	workdir := root
	env := []string{}
	for _, in := range stage[1:] {
		switch in.cmd {
		case "WORKDIR":
			workdir = filepath.Join(root, in.args)
			if err := os.MkdirAll(workdir, 0o755); err != nil {
				t.Fatal(err)
			}
		case "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			if v, ok := args[name]; ok {
				def = v
			}
			env = append(env, name+"="+def)
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) < 2 || strings.HasPrefix(f[0], "--") {
				t.Fatalf("COPY %s: only COPY SRC… DST is supported in the build stage", in.args)
			}
			dst := f[len(f)-1]
			if !filepath.IsAbs(dst) {
				dst = filepath.Join(workdir, dst)
			} else {
				dst = filepath.Join(root, dst)
			}
			for _, src := range f[:len(f)-1] {
				from := filepath.Join(contextDir, src)
				fi, err := os.Stat(from)
				if err != nil {
					t.Fatalf("COPY %s: %v", src, err)
				}
				if fi.IsDir() {
					buildContextCopy(t, from, dst)
				} else if err := copyFile(from, filepath.Join(dst, filepath.Base(src))); err != nil {
					t.Fatal(err)
				}
			}
		case "RUN":
			if strings.HasPrefix(in.args, "[") {
				t.Fatalf("RUN %s: only the shell form is supported", in.args)
			}
			script := absPath.ReplaceAllString(in.args, "${1}"+root+"/")
			r := runCmd(t, env, "", "sh", "-c", "cd "+shellQuote(workdir)+" && "+script)
			if r.code != 0 {
				t.Fatalf("RUN %s: exit %d\n%s%s", in.args, r.code, r.stdout, r.stderr)
			}
		default:
			t.Fatalf("%s in the build stage: not supported by this test", in.cmd)
		}
	}
}

// buildContextCopy copies a directory of the context (already filtered)
// into dst, as COPY DIR DST copies the directory's contents.
func buildContextCopy(t *testing.T, from, dst string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		return copyFile(path, filepath.Join(dst, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDockerfileBuild builds the image's binary from the Dockerfile's own
// commands and checks what the runtime stage promises.
func TestDockerfileBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds exed from scratch with -trimpath (a few minutes on a cold build cache)")
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, filepath.Join(repo, "Dockerfile"))
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2 (build and runtime)", len(stages))
	}
	build, runtime := stages[0], stages[1]
	if !strings.HasPrefix(build[0].args, "golang:") {
		t.Errorf("build stage FROM %s, want a golang image", build[0].args)
	}

	tmp := t.TempDir()
	contextDir, root := filepath.Join(tmp, "context"), filepath.Join(tmp, "root")
	buildContext(t, repo, contextDir)
	const testVersion = "v0.0.0-dockertest"
	runBuildStage(t, build, contextDir, root, map[string]string{"VERSION": testVersion})

	// The runtime stage: what it takes from the build stage, and how.
	image := map[string]string{} // path in the image → file in root
	var (
		user, volume, expose, healthcheck, entrypoint, cmd string
		env                                                []string
	)
	for _, in := range runtime[1:] {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			if !slices.Contains(f, "--from=build") {
				t.Fatalf("runtime COPY %s: want --from=build", in.args)
			}
			image[f[len(f)-1]] = filepath.Join(root, f[len(f)-2])
		case "USER":
			user = in.args
		case "VOLUME":
			volume = in.args
		case "EXPOSE":
			expose = in.args
		case "ENV":
			env = append(env, strings.Fields(in.args)...)
		case "HEALTHCHECK":
			_, healthcheck, _ = strings.Cut(in.args, " CMD ")
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		}
	}
	if user == "" || user == "0" || strings.HasPrefix(user, "0:") || strings.HasPrefix(user, "root") {
		t.Errorf("USER %q: want a non-root user", user)
	}
	if volume != "/data" {
		t.Errorf("VOLUME %q, want /data", volume)
	}
	if expose != "2222 8080" {
		t.Errorf("EXPOSE %q, want 2222 8080", expose)
	}
	for _, want := range []string{"EXED_DATA=/data", "EXED_SSH_ADDR=0.0.0.0:2222", "EXED_HTTP_ADDR=0.0.0.0:8080"} {
		if !slices.Contains(env, want) {
			t.Errorf("ENV lacks %s (has %v)", want, env)
		}
	}
	if entrypoint != `["/exed"]` || cmd != `["serve"]` {
		t.Errorf("ENTRYPOINT %s CMD %s, want exed serve", entrypoint, cmd)
	}
	bin := image["/exed"]
	if bin == "" {
		t.Fatalf("the image has no /exed (copies %v)", image)
	}
	if fi, err := os.Stat(image["/data"]); err != nil || !fi.IsDir() {
		t.Errorf("the volume's mount point /data comes from %s: %v", image["/data"], err)
	}

	// A static binary: no program interpreter, no shared libraries.
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a program interpreter: it is not static")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
	f.Close()

	if r := runCmd(t, nil, "", bin, "--version"); r.code != 0 || r.stdout != "exed "+testVersion+"\n" {
		t.Errorf("--version: exit %d, %q", r.code, r.stdout)
	}
	// The pure-Go SQLite works in the CGO-less build.
	data := []string{"EXED_DATA=" + filepath.Join(t.TempDir(), "data")}
	if r := runCmd(t, data, "", bin, "user", "list", "--json"); r.code != 0 {
		t.Errorf("user list on a fresh registry: exit %d: %s", r.code, r.stderr)
	} else if users := decode[struct{ Users []any }](t, r.stdout).Users; users == nil || len(users) != 0 {
		t.Errorf("user list on a fresh registry: %s", r.stdout)
	}

	// The HEALTHCHECK, run with the image's environment but a test
	// server's ports: it passes while the server runs, not otherwise.
	var probe []string
	if err := json.Unmarshal([]byte(healthcheck), &probe); err != nil || len(probe) == 0 || image[probe[0]] == "" {
		t.Fatalf("HEALTHCHECK CMD %s: want the exec form running a binary from the image", healthcheck)
	}
	srv := startServer(t, filepath.Join(t.TempDir(), "data"), "--admin-addr", "127.0.0.1:0")
	_, sshPort := splitHostPort(t, srv.sshAddr)
	_, httpPort := splitHostPort(t, srv.httpAddr)
	_, adminPort := splitHostPort(t, srv.adminAddr(t))
	check := func(sshAddr, httpAddr, adminAddr string) result {
		// EXED_TIMEOUT: a silent port fails the probe in a second, not five.
		e := append(slices.Clone(env), "EXED_SSH_ADDR="+sshAddr, "EXED_HTTP_ADDR="+httpAddr, "EXED_TIMEOUT=1s")
		if adminAddr != "" {
			e = append(e, "EXED_ADMIN_ADDR="+adminAddr)
		}
		return runCmd(t, e, "", image[probe[0]], probe[1:]...)
	}
	sshAddr, httpAddr, adminAddr := "0.0.0.0:"+sshPort, "0.0.0.0:"+httpPort, "0.0.0.0:"+adminPort
	if r := check(sshAddr, httpAddr, ""); r.code != 0 {
		t.Errorf("healthcheck with the server up: exit %d: %s", r.code, r.stderr)
	}
	if r := check(sshAddr, httpAddr, adminAddr); r.code != 0 {
		t.Errorf("healthcheck with the admin server: exit %d: %s", r.code, r.stderr)
	}
	if r := check(httpAddr, httpAddr, ""); r.code == 0 {
		t.Error("healthcheck took the HTTP port for the SSH server")
	}
	if r := check(sshAddr, httpAddr, httpAddr); r.code == 0 {
		t.Error("healthcheck took the HTTP front (404 on /readyz) for the admin server")
	}
	srv.stop()
	if r := check(sshAddr, httpAddr, ""); r.code == 0 {
		t.Error("healthcheck passed with the server stopped")
	}
}

// TestHealthcheckTLS: with serve's TLS certificate in the environment, as
// in a container configured with EXED_TLS_CERT, the probe speaks HTTPS: it
// passes against a TLS front and fails against a plain one.
func TestHealthcheckTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "exe.dev")
	probe := func(srv *server) result {
		return run(t, []string{"EXED_SSH_ADDR=" + srv.sshAddr, "EXED_HTTP_ADDR=" + srv.httpAddr, "EXED_TLS_CERT=" + cert}, "", "healthcheck")
	}
	tlsSrv := startServer(t, filepath.Join(dir, "tls"), "--tls-cert", cert, "--tls-key", key)
	if r := probe(tlsSrv); r.code != 0 || r.stdout != "ok\n" {
		t.Errorf("healthcheck of a TLS server: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	plain := startServer(t, filepath.Join(dir, "plain"))
	if r := probe(plain); r.code == 0 {
		t.Error("healthcheck with EXED_TLS_CERT passed against a plain-HTTP front: it did not speak TLS")
	}
}
