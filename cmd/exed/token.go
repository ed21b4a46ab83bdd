package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/tokens"
)

func (a *app) token(args []string) error {
	return a.dispatch("token", args, []subcommand{
		{"mint", nil, "sign a token offline with a private key", a.tokenMint},
		{"inspect", nil, "decode an exe0 token and check its signature", a.tokenInspect},
	})
}

// tokenMint signs a token offline, exactly as the documented shell recipe
// does with ssh-keygen -Y sign: for ed25519 keys the output is
// byte-identical.
func (a *app) tokenMint(args []string) error {
	fs := a.flagSet("token mint", "token mint --key PRIVATE_KEY [--vm N] [--exp D] [--nbf UNIX] [--cmds a,b] [--ctx JSON | --perms JSON]")
	keyFile := fs.String("key", "", "OpenSSH private key file to sign with (unencrypted)")
	vm := fs.String("vm", "", "sign for this VM (namespace v0@VM.<vm-domain>); default: the API namespace v0@<domain>")
	exp := fs.String("exp", "never", "expiry: never, or N followed by h, d, w, m (30 days) or y (365 days)")
	nbf := fs.Int64("nbf", 0, "not valid before this Unix time")
	cmds := fs.StringSlice("cmds", nil, "commands the token grants on /exec (comma-separated)")
	ctxJSON := fs.String("ctx", "", "JSON value passed to the VM verbatim in X-ExeDev-Token-Ctx")
	perms := fs.String("perms", "", "the permissions JSON, signed verbatim (instead of --exp/--nbf/--cmds/--ctx)")
	domain := fs.String("domain", envOr(a.getenv, "EXED_DOMAIN", defaultDomain), "API domain, as exed serve's --domain (env EXED_DOMAIN; exe.dev's: exe.dev)")
	vmDomain := fs.String("vm-domain", envOr(a.getenv, "EXED_VM_DOMAIN", defaultVMDomain), "VM domain, as exed serve's --vm-domain (env EXED_VM_DOMAIN; exe.dev's: exe.xyz)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token mint: unexpected argument %q", fs.Arg(0))
	}
	if *keyFile == "" {
		return errors.New("token mint: --key is required")
	}
	if *perms != "" {
		for _, f := range []string{"exp", "nbf", "cmds", "ctx"} {
			if fs.Changed(f) {
				return fmt.Errorf("token mint: --perms is signed verbatim and cannot be combined with --%s", f)
			}
		}
	}
	data, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("token mint: %w", err)
	}
	signer, err := keys.ParsePrivateKey(data)
	if err != nil {
		return fmt.Errorf("token mint: %s: %w", *keyFile, err)
	}

	var payload []byte
	if *perms != "" {
		payload = []byte(*perms)
	} else {
		expAt, err := tokens.ParseExpiry(*exp, a.clock())
		if err != nil {
			return fmt.Errorf("token mint: --exp: %w", err)
		}
		var expUnix int64
		if !expAt.IsZero() {
			expUnix = expAt.Unix()
		}
		var ctx []byte
		if fs.Changed("ctx") {
			ctx = []byte(*ctxJSON)
			if err := tokens.CheckCtx(ctx); err != nil {
				return fmt.Errorf("token mint: --ctx is not valid JSON: %v; quote it for the shell: --ctx '{\"role\":\"deploy\"}'", err)
			}
		}
		payload, err = tokens.BuildPayload(expUnix, *nbf, *cmds, fs.Changed("cmds"), ctx)
		if err != nil {
			return fmt.Errorf("token mint: %w", err)
		}
	}
	parsed, err := tokens.ParsePermissions(payload)
	if err != nil {
		return fmt.Errorf("token mint: permissions: %w", err)
	}
	if err := tokens.CheckCtxHeader(parsed.Ctx); err != nil {
		return fmt.Errorf("token mint: ctx: %w", err)
	}

	namespace := tokens.Namespaces{Domain: *domain, VMDomain: *vmDomain}.For(*vm)
	tok, err := tokens.MintExe0(signer, namespace, payload)
	if err != nil {
		return fmt.Errorf("token mint: %w", err)
	}
	fmt.Fprintln(a.stdout, tok)
	return nil
}

// inspection is what `exed token inspect` prints, as JSON: its field names
// are public API.
type inspection struct {
	Namespace      string          `json:"namespace"`
	Fingerprint    string          `json:"fingerprint"`
	KeyType        string          `json:"key_type"`
	HashAlgorithm  string          `json:"hash_algorithm"`
	Permissions    json.RawMessage `json:"permissions"`
	SignatureValid bool            `json:"signature_valid"`
	Expired        bool            `json:"expired"`
	NotYetValid    bool            `json:"not_yet_valid"`
}

// tokenInspect decodes an exe0 token without a registry. Expiry is
// reported, not enforced; the exit status says whether the token passes
// every format rule and its signature verifies.
func (a *app) tokenInspect(args []string) error {
	fs := a.flagSet("token inspect", "token inspect TOKEN")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("token inspect: want exactly one token argument")
	}
	arg := strings.TrimSpace(fs.Arg(0))
	if strings.HasPrefix(arg, tokens.Exe1Prefix) {
		return errors.New("token inspect: an exe1 token is an opaque handle: only the server that issued it knows the exe0 it stands for; " +
			"ask it, as the key's owner: ssh HOST ssh-key check-api-key TOKEN")
	}
	tok, err := tokens.ParseExe0(arg)
	if err != nil {
		return fmt.Errorf("token inspect: %w", err)
	}
	now := a.clock().Unix()
	sigErr := tok.Sig.Verify(tok.Payload)
	out := inspection{
		Namespace:      tok.Sig.Namespace,
		Fingerprint:    tok.Sig.Fingerprint(),
		KeyType:        tok.Sig.PublicKey.Type(),
		HashAlgorithm:  tok.Sig.HashAlgorithm,
		Permissions:    json.RawMessage(tok.Payload),
		SignatureValid: sigErr == nil,
		Expired:        tok.Perms.Exp != 0 && now > tok.Perms.Exp,
		NotYetValid:    tok.Perms.Nbf != 0 && now < tok.Perms.Nbf,
	}
	// One line, without re-indenting: permissions are printed exactly as
	// they were signed.
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return err
	}
	if sigErr != nil {
		return fmt.Errorf("token inspect: %w", sigErr)
	}
	return nil
}

// envOr returns the environment variable name, or def when it is unset.
func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}
