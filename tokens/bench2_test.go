package tokens

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
)

// bareCheck takes an exe0 token apart on its own (PROTOCOL.sshsig, with
// x/crypto's wire decoding, not package keys), builds the signed data
// once, and returns the signature check with the standard library alone:
// the floor any verification pays.
func bareCheck(tb testing.TB, token string) func() bool {
	tb.Helper()
	x, err := ParseExe0(token)
	if err != nil {
		tb.Fatal(err)
	}
	var blob struct {
		Magic     [6]byte
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  string
		HashAlg   string
		Signature []byte
	}
	if err := ssh.Unmarshal(x.Sig.Marshal(), &blob); err != nil {
		tb.Fatal(err)
	}
	var format struct {
		Format string
		Blob   []byte
		Rest   []byte `ssh:"rest"`
	}
	if err := ssh.Unmarshal(blob.Signature, &format); err != nil {
		tb.Fatal(err)
	}
	h := sha512.Sum512(x.Payload)
	signed := []byte("SSHSIG")
	for _, s := range [][]byte{[]byte(blob.Namespace), nil, []byte(blob.HashAlg), h[:]} {
		signed = binary.BigEndian.AppendUint32(signed, uint32(len(s)))
		signed = append(signed, s...)
	}
	var check func() bool
	switch k := x.Sig.PublicKey.(ssh.CryptoPublicKey).CryptoPublicKey().(type) {
	case ed25519.PublicKey:
		check = func() bool { return ed25519.Verify(k, signed, format.Blob) }
	case *ecdsa.PublicKey:
		var rs struct{ R, S *big.Int }
		if err := ssh.Unmarshal(format.Blob, &rs); err != nil {
			tb.Fatal(err)
		}
		check = func() bool { d := sha256.Sum256(signed); return ecdsa.Verify(k, d[:], rs.R, rs.S) }
	case *rsa.PublicKey:
		check = func() bool {
			d := sha512.Sum512(signed)
			return rsa.VerifyPKCS1v15(k, crypto.SHA512, d[:], format.Blob) == nil
		}
	default:
		tb.Fatalf("key type %T", k)
	}
	if !check() {
		tb.Fatal("bare check failed: the benchmark's SSHSIG reading is wrong")
	}
	return check
}

// BenchmarkVerifyVsBare: per key type, the bare signature check beside a
// full Verify with the result cache off: over the in-memory registry and
// over SQLite, with the key cache off (every step, every time) and on
// (what a result-cache miss for a known key costs). Compare the rows of
// one key type as ratios to its bare row.
func BenchmarkVerifyVsBare(b *testing.B) {
	ctx := context.Background()
	verifiers, signers := verifyVariants(b)
	t := Target{Namespace: apiNS, Command: "ls"}
	for _, sg := range signers {
		tok := mint(b, sg.s, apiNS, benchPayload)
		bare := bareCheck(b, tok)
		b.Run(sg.name+"/bare", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !bare() {
					b.Fatal("bare check failed")
				}
			}
		})
		for _, vr := range verifiers {
			b.Run(sg.name+"/"+vr.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := vr.v.Verify(ctx, tok, t); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

type namedSigner struct {
	name string
	s    ssh.Signer
}

type namedVerifier struct {
	name string
	v    *Verifier
}

// verifyVariants registers an ed25519, an ECDSA P-256 and an RSA-3072 key
// in a SQLite registry and in memory, and returns the Verifiers the
// benchmarks compare with the bare check: the result cache off, over
// memory and over SQLite, with the key cache off and on.
func verifyVariants(b *testing.B) ([]namedVerifier, []namedSigner) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	ec, err := ssh.NewSignerFromKey(mustECDSA(b))
	if err != nil {
		b.Fatal(err)
	}
	signers := []namedSigner{{"ed25519", testkit.NewSigner(b)}, {"ecdsa-p256", ec}, {"rsa-3072", rsaSigner(b, 3072)}}
	now := time.Now().UTC().Truncate(time.Second)
	user := store.User{ID: "usrbench", Email: "bench@example.com", CreatedAt: now}
	mem := newMemRegistry()
	mem.addUser(user)
	for i, sg := range signers {
		k := store.Key{UserID: user.ID, Name: sg.name, AddedAt: now,
			Fingerprint: keys.Fingerprint(sg.s.PublicKey()), PublicKey: keys.MarshalAuthorized(sg.s.PublicKey())}
		ev := store.Event{Time: now, ActorID: "admin", Action: "key.add", Subject: k.Fingerprint}
		if i == 0 {
			err = st.AddUser(ctx, user, k, ev)
		} else {
			err = st.AddKey(ctx, k, ev)
		}
		if err != nil {
			b.Fatal(err)
		}
		mem.addKey(k)
	}
	verifiers := []namedVerifier{
		{"mem-nocache", NewVerifier(Config{Registry: mem, CacheSize: -1})},
		{"sqlite-nocache", NewVerifier(Config{Registry: st, CacheSize: -1})},
		{"sqlite-keycache", NewVerifier(Config{Registry: st, CacheSize: -1, KeyCacheSize: 100})},
	}
	return verifiers, signers
}

// BenchmarkJunk: what one junk request costs once it is being shed, per
// kind, beside a valid token's result-cache miss (a signature check):
// distinct forged tokens for a registered key (throttled), one forged
// token repeated (remembered as bad), tokens of unregistered keys
// (remembered as unknown), and malformed tokens.
func BenchmarkJunk(b *testing.B) {
	ctx := context.Background()
	api := Target{Namespace: apiNS}
	f := newFixture(b, Config{CacheTTL: time.Hour})
	valid := mint(b, f.signer, apiNS, benchPayload)
	stranger := testkit.NewSigner(b)
	kinds := []struct {
		name string
		toks []string
		want Reason // or, for forged tokens, ReasonBadSignature: one already checked
	}{
		// The repeated one first: it is checked (and remembered) before
		// the flood spends the key's budget.
		{"forged-repeat", f.forged(b, apiNS, 5000, 1), ReasonBadSignature},
		{"forged-flood", f.forged(b, apiNS, 0, 4096), ReasonThrottled},
		{"unknown-key", []string{mint(b, stranger, apiNS, benchPayload)}, ReasonUnknownKey},
		{"malformed", []string{strings.Replace(valid, "exe0.e", "exe0.f", 1)}, ReasonMalformed},
	}
	miss := NewVerifier(Config{Registry: f.reg, Now: f.clock.Now, CacheSize: -1, KeyCacheSize: 10})
	b.Run("valid-miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := miss.Verify(ctx, valid, api); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, k := range kinds {
		for _, tok := range k.toks[:min(len(k.toks), 64)] { // into the shed state
			f.v.Verify(ctx, tok, api)
		}
		b.Run(k.name, func(b *testing.B) {
			checks := f.v.sigChecks.Load()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_, err := f.v.Verify(ctx, k.toks[i%len(k.toks)], api)
				if e, ok := err.(*Error); !ok || e.Reason != k.want && e.Reason != ReasonBadSignature {
					b.Fatalf("%v, want %s", err, k.want)
				}
				i++
			}
			if f.v.sigChecks.Load() != checks {
				b.Fatal("junk reached the signature check")
			}
		})
	}
}

func rsaSigner(tb testing.TB, bits int) ssh.Signer {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkVerifyRatios is BenchmarkVerifyVsBare made robust to a busy
// machine: per key type, the bare check and each Verify variant run in
// alternating rounds of roundTime, timed in the thread's CPU time (on
// Linux), and each variant reports the median of its per-round ratios to
// the bare check beside it (metric x-bare) and the bare check's fastest
// round (bare-ns). Run it with -benchtime 1x.
func BenchmarkVerifyRatios(b *testing.B) {
	const (
		rounds    = 31
		roundTime = 20 * time.Millisecond
	)
	ctx := context.Background()
	vs, signers := verifyVariants(b)
	t := Target{Namespace: apiNS, Command: "ls"}
	for _, sg := range signers {
		tok := mint(b, sg.s, apiNS, benchPayload)
		bare := bareCheck(b, tok)
		ops := []func(){func() { bare() }}
		for _, vr := range vs {
			ops = append(ops, func() {
				if _, err := vr.v.Verify(ctx, tok, t); err != nil {
					b.Fatal(err)
				}
			})
		}
		per := make([][]float64, len(ops))
		unlock := lockThread()
		for range rounds {
			for i, op := range ops {
				n, start, cpu := 0, time.Now(), threadCPU()
				for time.Since(start) < roundTime {
					op()
					n++
				}
				per[i] = append(per[i], float64(threadCPU()-cpu)/float64(n))
			}
		}
		unlock()
		for i, vr := range vs {
			b.Run(sg.name+"/"+vr.name, func(b *testing.B) {
				ratios := make([]float64, rounds)
				for r := range ratios {
					ratios[r] = per[i+1][r] / per[0][r]
				}
				slices.Sort(ratios)
				b.ReportMetric(ratios[rounds/2], "x-bare")
				b.ReportMetric(slices.Min(per[0]), "bare-ns")
			})
		}
	}
}
