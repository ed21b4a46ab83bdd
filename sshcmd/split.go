package sshcmd

import (
	"errors"
	"fmt"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// Split splits a raw command line into words with POSIX shell quoting
// rules, as the SSH client's remote shell would, but without a shell: it
// parses the line with mvdan.cc/sh and accepts only a single simple
// command whose words are made of literals, single-quoted parts and
// double-quoted literal parts. Anything that would expand or run something
// ($VAR, $(…), `…`, $((…)), redirections, pipes, ;, &&, &, assignments,
// subshells) is an error "unsupported shell syntax: …": nothing is ever
// expanded from the server's environment. Globs, braces and ~ are kept as
// literal text. An empty line gives no words.
func Split(line string) ([]string, error) {
	// The parser silently drops NUL bytes; a line holding one is refused
	// rather than run as something other than what was sent.
	if strings.IndexByte(line, 0) >= 0 {
		return nil, errors.New("unsupported shell syntax: NUL byte")
	}
	f, err := syntax.NewParser(syntax.Variant(syntax.LangPOSIX)).Parse(strings.NewReader(line), "")
	if err != nil {
		return nil, fmt.Errorf("bad command line: %v", err)
	}
	switch len(f.Stmts) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, errors.New("unsupported shell syntax: more than one command")
	}
	st := f.Stmts[0]
	switch {
	case st.Negated:
		return nil, errors.New("unsupported shell syntax: !")
	case st.Background, st.Coprocess, st.Disown:
		return nil, errors.New("unsupported shell syntax: &")
	case st.Semicolon.IsValid():
		return nil, errors.New("unsupported shell syntax: ;")
	case len(st.Redirs) > 0:
		return nil, errors.New("unsupported shell syntax: redirection")
	}
	call, ok := st.Cmd.(*syntax.CallExpr)
	if !ok {
		return nil, fmt.Errorf("unsupported shell syntax: %s", nodeName(st.Cmd))
	}
	if len(call.Assigns) > 0 {
		return nil, errors.New("unsupported shell syntax: variable assignment")
	}
	words := make([]string, 0, len(call.Args))
	for _, w := range call.Args {
		s, err := literal(w)
		if err != nil {
			return nil, err
		}
		words = append(words, s)
	}
	return words, nil
}

// literal returns the text of a word made only of literal parts.
func literal(w *syntax.Word) (string, error) {
	var b strings.Builder
	for _, part := range w.Parts {
		switch p := part.(type) {
		case *syntax.Lit:
			b.WriteString(unescape(p.Value, false))
		case *syntax.SglQuoted:
			if p.Dollar {
				return "", errors.New("unsupported shell syntax: $'…'")
			}
			b.WriteString(p.Value) // no escapes inside single quotes
		case *syntax.DblQuoted:
			if p.Dollar {
				return "", errors.New("unsupported shell syntax: $\"…\"")
			}
			for _, q := range p.Parts {
				lit, ok := q.(*syntax.Lit)
				if !ok {
					return "", fmt.Errorf("unsupported shell syntax: %s", nodeName(q))
				}
				b.WriteString(unescape(lit.Value, true))
			}
		default:
			return "", fmt.Errorf("unsupported shell syntax: %s", nodeName(part))
		}
	}
	return b.String(), nil
}

// unescape removes shell backslash escapes from a literal the parser kept
// verbatim. Unquoted, a backslash quotes the next character. Inside double
// quotes it does so only before $ ` " \ and newline (POSIX 2.2.3), and is
// kept before anything else. A backslash-newline is a line continuation.
func unescape(s string, dquoted bool) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		next := s[i+1]
		switch {
		case next == '\n':
			i++ // line continuation: both go
		case !dquoted || strings.IndexByte("$`\"\\", next) >= 0:
			b.WriteByte(next)
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// nodeName names a syntax node in an error without echoing the input.
func nodeName(n syntax.Node) string {
	switch n.(type) {
	case *syntax.ParamExp:
		return "$ expansion"
	case *syntax.CmdSubst:
		return "command substitution"
	case *syntax.ArithmExp, *syntax.ArithmCmd:
		return "arithmetic expansion"
	case *syntax.ProcSubst:
		return "process substitution"
	case *syntax.ExtGlob:
		return "extended glob"
	case *syntax.BinaryCmd:
		return "pipe or && / ||"
	case *syntax.Subshell:
		return "subshell"
	case *syntax.Block:
		return "{ … } block"
	case *syntax.IfClause, *syntax.WhileClause, *syntax.ForClause, *syntax.CaseClause:
		return "compound command"
	case *syntax.FuncDecl:
		return "function definition"
	default:
		return fmt.Sprintf("%T", n)
	}
}
