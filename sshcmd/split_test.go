package sshcmd

import (
	"slices"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{``, nil},
		{`   `, nil},
		{`whoami`, []string{"whoami"}},
		{`  ssh-key   list  --json `, []string{"ssh-key", "list", "--json"}},
		{`ssh-key generate-api-key --ctx='{"role":"deploy"}'`, []string{"ssh-key", "generate-api-key", `--ctx={"role":"deploy"}`}},
		{`ssh-key generate-api-key --ctx "{\"role\":\"deploy\"}"`, []string{"ssh-key", "generate-api-key", "--ctx", `{"role":"deploy"}`}},
		{`ssh-key add --cmds 'ssh-key list,ls' --name=ci`, []string{"ssh-key", "add", "--cmds", "ssh-key list,ls", "--name=ci"}},
		{`a\ b`, []string{"a b"}},
		{`'it''s'`, []string{"its"}},
		{`'a\b'`, []string{`a\b`}},
		{`"a\b" "c\$d" "e\\f" "g\"h" "i\` + "`" + `j"`, []string{`a\b`, `c$d`, `e\f`, `g"h`, "i`j"}},
		{"a\\\nb", []string{"ab"}},
		{`"x"'y'z`, []string{"xyz"}},
		{`""`, []string{""}},
		{`* ? [ab] ~ {a,b} a=b`, []string{"*", "?", "[ab]", "~", "{a,b}", "a=b"}},
		{`--help # a comment`, []string{"--help"}},
		{`ssh-ed25519 AAAAC3Nza comment@host`, []string{"ssh-ed25519", "AAAAC3Nza", "comment@host"}},
		{`"été" 'ünï'`, []string{"été", "ünï"}},
	}
	for _, tt := range tests {
		got, err := Split(tt.line)
		if err != nil {
			t.Errorf("Split(%q): %v", tt.line, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Split(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestSplitRefuses(t *testing.T) {
	tests := []struct {
		line, want string
	}{
		{`echo $HOME`, "unsupported shell syntax: $ expansion"},
		{`echo ${HOME}`, "unsupported shell syntax: $ expansion"},
		{`echo "$HOME"`, "unsupported shell syntax: $ expansion"},
		{`echo $(id)`, "unsupported shell syntax: command substitution"},
		{"echo `id`", "unsupported shell syntax: command substitution"},
		{`echo "$(id)"`, "unsupported shell syntax: command substitution"},
		{`echo $((1+1))`, "unsupported shell syntax: arithmetic expansion"},
		{`whoami > /tmp/x`, "unsupported shell syntax: redirection"},
		{`whoami < /etc/passwd`, "unsupported shell syntax: redirection"},
		{`whoami | ls`, "unsupported shell syntax: pipe"},
		{`whoami && ls`, "unsupported shell syntax: pipe or &&"},
		{`whoami || ls`, "unsupported shell syntax: pipe or &&"},
		{`whoami; ls`, "unsupported shell syntax: more than one command"},
		{`whoami;`, "unsupported shell syntax: ;"},
		{"whoami\nls", "unsupported shell syntax: more than one command"},
		{`whoami &`, "unsupported shell syntax: &"},
		{`! whoami`, "unsupported shell syntax: !"},
		{`X=1 whoami`, "unsupported shell syntax: variable assignment"},
		{`(whoami)`, "unsupported shell syntax: subshell"},
		{`{ whoami; }`, "unsupported shell syntax: { … } block"},
		{`if true; then ls; fi`, "unsupported shell syntax: compound command"},
		{`f() { ls; }`, "unsupported shell syntax: function definition"},
		{"who\x00ami", "unsupported shell syntax: NUL byte"},
		{`whoami "unclosed`, "bad command line"},
		{`whoami 'unclosed`, "bad command line"},
		{`cat <<EOF`, "bad command line"},
	}
	for _, tt := range tests {
		got, err := Split(tt.line)
		if err == nil {
			t.Errorf("Split(%q) = %q, want error %q", tt.line, got, tt.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Split(%q) error = %q, want it to start with %q", tt.line, err, tt.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("Split(%q) error is not one line: %q", tt.line, err)
		}
	}
}

// FuzzSplit: Split never panics, never lets a NUL byte through, and what it
// accepts survives a round trip: the words, single-quoted and joined, split
// back to the same words.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		`ssh-key generate-api-key --ctx='{"role":"deploy"}'`,
		`a\ b "c\"d" 'e'`,
		`echo $HOME`,
		"a\\\nb",
		`x; y`,
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		words, err := Split(line)
		if err != nil {
			return
		}
		var quoted []string
		for _, w := range words {
			if strings.ContainsRune(w, 0) {
				t.Fatalf("Split(%q) let a NUL through: %q", line, words)
			}
			quoted = append(quoted, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
		}
		again, err := Split(strings.Join(quoted, " "))
		if err != nil {
			t.Fatalf("re-split of %q: %v", quoted, err)
		}
		if !slices.Equal(again, words) && !(len(again) == 0 && len(words) == 0) {
			t.Fatalf("Split(%q) = %q, but its quoted form splits to %q", line, words, again)
		}
	})
}
