package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exed-dev/exed/internal/testkit"
)

// The documentation's blocks are run as written (README.md's Quickstart,
// docs/tokens.md, docs/exec-api.md, docs/ci.md), so that the docs cannot
// rot. docBlocks is the one way a test reads them.

// repoRoot is the repository root, seen from this package's directory
// (where `go test` runs its tests).
const repoRoot = "../.."

// docSection returns the text of the section of the markdown file name (a
// path from the repository root) headed by the line heading, e.g.
// "## Quickstart": the lines after the heading up to the next heading of
// the same or a higher level. A line inside a fenced block is never a
// heading (a shell comment is not one).
func docSection(t *testing.T, name, heading string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, name))
	if err != nil {
		t.Fatal(err)
	}
	level := headingLevel(heading)
	if level == 0 {
		t.Fatalf("%q is not a markdown heading", heading)
	}
	var (
		out              []string
		found, in, fence bool
	)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		if !fence {
			if l := headingLevel(line); l > 0 {
				if in && l <= level {
					break
				}
				if line == heading {
					found, in = true, true
					continue
				}
			}
		}
		if in {
			out = append(out, line)
		}
	}
	if !found {
		t.Fatalf("%s has no section %q", name, heading)
	}
	return strings.Join(out, "\n")
}

// headingLevel returns the level of an ATX heading line ("## x" is 2), or 0
// when line is not a heading.
func headingLevel(line string) int {
	n := 0
	for n < len(line) && line[n] == '#' {
		n++
	}
	if n == 0 || n > 6 || n == len(line) || line[n] != ' ' {
		return 0
	}
	return n
}

// docBlocks returns the contents of the fenced blocks with info string lang
// ("sh", "yaml") in the section heading of the markdown file name, each
// line ending in a newline, in the order they appear. It fails the test
// when there is none.
func docBlocks(t *testing.T, name, heading, lang string) []string {
	t.Helper()
	var (
		blocks []string
		cur    strings.Builder
		in     bool
	)
	for _, line := range strings.Split(docSection(t, name, heading), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```"+lang:
			in = true
			cur.Reset()
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, cur.String())
		case in:
			cur.WriteString(line + "\n")
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("%s, section %q: no ```%s blocks", name, heading, lang)
	}
	return blocks
}

// TestDocsMintOffline runs docs/tokens.md's "Minting tokens offline" with a
// fresh ~/.ssh/id_ed25519: the seed's ssh-keygen recipe and `exed token
// mint --perms` give the same token, and `exed token inspect` accepts it.
func TestDocsMintOffline(t *testing.T) {
	testkit.RequireTools(t, "bash", "ssh-keygen", "base64", "sed", "tr")
	blocks := docBlocks(t, "docs/tokens.md", "## Minting tokens offline", "sh")
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	key := testkit.SSHKeygen(t, filepath.Join(home, ".ssh"), "ed25519", 0) // ~/.ssh/id_ed25519
	env := []string{"HOME=" + home, "PATH=" + filepath.Dir(exedBin) + string(os.PathListSeparator) + os.Getenv("PATH")}
	cmds := append(commands(blocks...), `printf '%s\n' "$TOKEN"`, `printf '%s\n' "$P"`)
	steps := runSteps(t, t.TempDir(), env, cmds)

	recipe := strings.TrimSpace(steps[len(steps)-2].out)
	perms := strings.TrimSpace(steps[len(steps)-1].out)
	if !strings.HasPrefix(recipe, "exe0.") {
		t.Fatalf("the recipe made %q", recipe)
	}
	fp := strings.Fields(runCmd(t, nil, "", "ssh-keygen", "-lf", key).stdout)[1]
	var minted, inspected int
	for _, s := range steps[:len(steps)-2] {
		out := strings.TrimSpace(s.out)
		switch {
		case strings.HasPrefix(s.cmd, "exed token mint") && strings.Contains(s.cmd, "--perms"):
			if out != recipe {
				t.Errorf("exed token mint --perms gave\n%s\nthe recipe\n%s", out, recipe)
			}
			minted++
		case strings.HasPrefix(s.cmd, "exed token mint"):
			// Not the same P (its exp is computed): check it decodes as
			// the docs say.
			r := run(t, nil, "", "token", "inspect", out)
			if r.code != 0 || !strings.Contains(r.stdout, `"ctx":{"role":"deploy"}`) || !strings.Contains(r.stdout, `"namespace":"v0@web.exe.xyz"`) {
				t.Errorf("%s: inspect exit %d: %s%s", s.cmd, r.code, r.stdout, r.stderr)
			}
			minted++
		case strings.HasPrefix(s.cmd, "exed token inspect"):
			got := decode[struct {
				Namespace      string          `json:"namespace"`
				Fingerprint    string          `json:"fingerprint"`
				Permissions    json.RawMessage `json:"permissions"`
				SignatureValid bool            `json:"signature_valid"`
			}](t, out)
			if got.Namespace != "v0@web.exe.xyz" || got.Fingerprint != fp || !got.SignatureValid || string(got.Permissions) != perms {
				t.Errorf("inspect of the recipe's token: %s (want namespace v0@web.exe.xyz, %s, P %s)", out, fp, perms)
			}
			inspected++
		}
	}
	if minted != 2 || inspected != 1 {
		t.Errorf("ran %d token mint and %d token inspect commands, want 2 and 1", minted, inspected)
	}
}
