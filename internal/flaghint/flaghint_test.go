package flaghint

import (
	"errors"
	"io"
	"testing"

	"github.com/spf13/pflag"
)

func flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("ssh-key generate-api-key", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, n := range []string{"label", "vm", "cmds", "exp", "ctx", "exe0", "json", "vm-domain", "domain"} {
		fs.String(n, "", "")
	}
	fs.String("secret", "", "")
	fs.MarkHidden("secret")
	return fs
}

// TestExplainSuggestsTheFlagMeant: pflag's unknown-flag errors gain the
// nearest flag; far-off names, ties, hidden flags and other errors are
// left as they were.
func TestExplainSuggestsTheFlagMeant(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"--lable=x", "unknown flag: --lable; did you mean --label?"},
		{"--lable", "unknown flag: --lable; did you mean --label?"},
		{"--LABEL=x", "unknown flag: --LABEL; did you mean --label?"},
		{"--cmd=ls", "unknown flag: --cmd; did you mean --cmds?"},
		{"--vm-dom=x", "unknown flag: --vm-dom; did you mean --vm-domain?"},
		{"--hlep", "unknown flag: --hlep; did you mean --help?"},
		{"-label=x", "unknown shorthand flag: 'l' in -label=x; did you mean --label?"},
		{"--wholly-unrelated", "unknown flag: --wholly-unrelated"},
		{"--ex", "unknown flag: --ex"},             // exp and exe0 are as close: no guess
		{"--secrte", "unknown flag: --secrte"},     // hidden flags are never suggested
		{"--exp", "flag needs an argument: --exp"}, // not an unknown flag
	} {
		err := Explain(flags(), flags().Parse([]string{tc.args}))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.args, err, tc.want)
		}
		var ne *pflag.NotExistError
		if tc.args != "--exp" && !errors.As(err, &ne) {
			t.Errorf("%s: the hint does not wrap pflag's error", tc.args)
		}
	}
	if err := Explain(flags(), nil); err != nil {
		t.Errorf("Explain(nil) = %v", err)
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"lable", "label", 1}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"cmd", "cmds", 1}, {"abc", "abc", 0}} {
		if got := distance(tc.a, tc.b); got != tc.d {
			t.Errorf("distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}
