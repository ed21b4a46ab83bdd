package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

// Scenario 1: the cost of a full exe0 verification (parse, registry hit,
// signature, every check; cache off) against the bare signature check of
// the same signed data, per key type. In process: both sides run on the
// same goroutine, alternately, round by round.

// verifyPayload is a typical generate-api-key P.
const verifyPayload = `{"exp":4102444800,"cmds":["ls","whoami"],"ctx":{"role":"deploy"}}`

func scenarioVerify(ctx context.Context, b *bench) ([]row, error) {
	st, err := sqlstore.Open(ctx, "", b.dir("verify"))
	if err != nil {
		return nil, err
	}
	defer st.Close()

	type keyType struct {
		name   string
		signer gossh.Signer
	}
	ed, _, err := keys.GenerateEd25519()
	if err != nil {
		return nil, err
	}
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ec, err := gossh.NewSignerFromKey(ecPriv)
	if err != nil {
		return nil, err
	}
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		return nil, err
	}
	rs, err := gossh.NewSignerFromKey(rsaPriv)
	if err != nil {
		return nil, err
	}
	kts := []keyType{{"ed25519", ed}, {"ecdsa-p256", ec}, {"rsa-3072", rs}}

	now := time.Now().UTC().Truncate(time.Second)
	user := store.User{ID: "usrbenchverify00000", Email: "verify@localhost", CreatedAt: now}
	for i, kt := range kts {
		k := store.Key{
			UserID: user.ID, Name: kt.name, AddedAt: now,
			Fingerprint: keys.Fingerprint(kt.signer.PublicKey()),
			PublicKey:   keys.MarshalAuthorized(kt.signer.PublicKey()),
		}
		ev := store.Event{Time: now, ActorID: "admin", Action: "key.add", Subject: k.Fingerprint}
		if i == 0 {
			err = st.AddUser(ctx, user, k, store.Event{Time: now, ActorID: "admin", Action: "user.add", Subject: user.Email})
		} else {
			err = st.AddKey(ctx, k, ev)
		}
		if err != nil {
			return nil, err
		}
	}
	vm := store.VM{Name: "web", OwnerID: user.ID, Upstream: "http://127.0.0.1:1", CreatedAt: now}
	if err := st.AddVM(ctx, vm, store.Event{Time: now, ActorID: "admin", Action: "vm.add", Subject: vm.Name}); err != nil {
		return nil, err
	}
	target := tokens.Target{Namespace: vmNamespace, VM: &vm}
	// The result cache off, as for a token seen for the first time; the
	// key cache on, as in exed serve: the signing key and its user were
	// read from SQLite once, by an earlier token of the same key.
	keyCached := tokens.NewVerifier(tokens.Config{Registry: st, CacheSize: -1, KeyCacheSize: tokens.DefaultKeyCacheSize})
	noCache := tokens.NewVerifier(tokens.Config{Registry: st, CacheSize: -1})

	// A map in front of the same rows: what the verification costs
	// without the database.
	mem := &memRegistry{Registry: st, keys: map[string]store.Key{}}
	memVerifier := tokens.NewVerifier(tokens.Config{Registry: mem, CacheSize: -1})
	cached := tokens.NewVerifier(tokens.Config{Registry: st})

	var rows []row
	for _, kt := range kts {
		tok, err := tokens.MintExe0(kt.signer, target.Namespace, []byte(verifyPayload))
		if err != nil {
			return nil, err
		}
		bare, err := bareVerifier(tok)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kt.name, err)
		}
		full := func() error { _, err := keyCached.Verify(ctx, tok, target); return err }
		uncached := func() error { _, err := noCache.Verify(ctx, tok, target); return err }
		ops := []func() error{full, bare, uncached}
		names := []string{
			"full Verify of a token not seen before (its key cached; SQLite registry)",
			"bare signature check of the same signed data",
			"full Verify, no caches at all (every check reads SQLite)",
		}
		if kt.name == "ed25519" {
			k, err := st.Key(ctx, keys.Fingerprint(kt.signer.PublicKey()))
			if err != nil {
				return nil, err
			}
			mem.keys[k.Fingerprint] = k
			mem.user = user
			ops = append(ops,
				func() error { _, err := memVerifier.Verify(ctx, tok, target); return err },
				func() error { _, err := cached.Verify(ctx, tok, target); return err })
			names = append(names, "full Verify, registry in a Go map (no database)", "Verify, cache hit")
		}
		for _, op := range ops {
			if err := op(); err != nil {
				return nil, fmt.Errorf("%s: %w", kt.name, err)
			}
		}
		per, err := timeOps(ctx, b.o.rounds, b.o.verifyTime, ops)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kt.name, err)
		}
		var ratios []float64
		for r := range per[0] {
			ratios = append(ratios, float64(per[0][r])/float64(per[1][r]))
		}
		for i, name := range names {
			rw := row{scenario: "1 verify", what: kt.name + ": " + name, result: fmtDur(medianDur(per[i])) + "/op"}
			switch i {
			case 0:
				rw.ratio = fmtRatios(ratios, "bare")
				rw.target = "≤ 1.1× bare"
				rw.met = judge(median(ratios), 1.1, true)
			case 2, 3, 4:
				var rs []float64
				for r := range per[i] {
					rs = append(rs, float64(per[i][r])/float64(per[1][r]))
				}
				rw.ratio = fmtRatios(rs, "bare")
			}
			rows = append(rows, rw)
		}
	}
	return rows, nil
}

// timeOps runs each op for d per round, alternating, and returns each
// op's time per call in every round.
func timeOps(ctx context.Context, rounds int, d time.Duration, ops []func() error) ([][]time.Duration, error) {
	per := make([][]time.Duration, len(ops))
	for range rounds {
		for i, op := range ops {
			n := 0
			start := time.Now()
			for time.Since(start) < d {
				for range 16 {
					if err := op(); err != nil {
						return nil, err
					}
				}
				n += 16
			}
			per[i] = append(per[i], time.Since(start)/time.Duration(n))
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	return per, nil
}

// memRegistry answers KeyAndUser from memory (and anything else from the
// store).
type memRegistry struct {
	tokens.Registry
	keys map[string]store.Key
	user store.User
}

func (m *memRegistry) KeyAndUser(ctx context.Context, fp string) (store.Key, store.User, error) {
	k, ok := m.keys[fp]
	switch {
	case !ok:
		return store.Key{}, store.User{}, store.ErrNotFound
	case k.UserID != m.user.ID:
		return k, store.User{}, store.ErrNotFound
	}
	return k, m.user, nil
}

// bareVerifier takes an exe0 token apart on its own (PROTOCOL.sshsig,
// independently of package keys), rebuilds the signed data once, and
// returns a function that checks the signature over it with the standard
// library alone: the floor any verification has to pay.
func bareVerifier(token string) (func() error, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not an exe0 token")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	blob, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	var sig struct {
		Magic     [6]byte
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  string
		HashAlg   string
		Signature []byte
	}
	if err := gossh.Unmarshal(blob, &sig); err != nil {
		return nil, fmt.Errorf("SSHSIG blob: %w", err)
	}
	pub, err := gossh.ParsePublicKey(sig.PublicKey)
	if err != nil {
		return nil, err
	}
	var format struct {
		Format string
		Blob   []byte
		Rest   []byte `ssh:"rest"`
	}
	if err := gossh.Unmarshal(sig.Signature, &format); err != nil {
		return nil, err
	}
	if sig.HashAlg != "sha512" {
		return nil, fmt.Errorf("hash %s", sig.HashAlg)
	}
	h := sha512.Sum512(payload)
	signed := []byte("SSHSIG")
	for _, s := range [][]byte{[]byte(sig.Namespace), nil, []byte(sig.HashAlg), h[:]} {
		signed = binary.BigEndian.AppendUint32(signed, uint32(len(s)))
		signed = append(signed, s...)
	}
	bad := errors.New("bare signature check failed")
	var check func() error
	switch k := pub.(gossh.CryptoPublicKey).CryptoPublicKey().(type) {
	case ed25519.PublicKey:
		check = func() error {
			if !ed25519.Verify(k, signed, format.Blob) {
				return bad
			}
			return nil
		}
	case *ecdsa.PublicKey:
		var rs struct{ R, S *big.Int }
		if err := gossh.Unmarshal(format.Blob, &rs); err != nil {
			return nil, err
		}
		check = func() error {
			d := sha256.Sum256(signed)
			if !ecdsa.Verify(k, d[:], rs.R, rs.S) {
				return bad
			}
			return nil
		}
	case *rsa.PublicKey:
		if format.Format != gossh.KeyAlgoRSASHA512 {
			return nil, fmt.Errorf("RSA signature format %s", format.Format)
		}
		check = func() error {
			d := sha512.Sum512(signed)
			if rsa.VerifyPKCS1v15(k, crypto.SHA512, d[:], format.Blob) != nil {
				return bad
			}
			return nil
		}
	default:
		return nil, fmt.Errorf("key type %s", pub.Type())
	}
	return check, check()
}
