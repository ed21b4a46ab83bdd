package tokens

import (
	"context"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
)

// benchPayload is a typical generate-api-key P.
const benchPayload = `{"exp":4070908800,"cmds":["ls","whoami"],"ctx":{"role":"deploy"}}`

// sshString reads one SSH wire string from b.
func sshString(tb testing.TB, b []byte) (s, rest []byte) {
	tb.Helper()
	if len(b) < 4 || uint64(len(b)-4) < uint64(binary.BigEndian.Uint32(b)) {
		tb.Fatal("short SSH string")
	}
	n := binary.BigEndian.Uint32(b)
	return b[4 : 4+n], b[4+n:]
}

func appendSSHString(b, s []byte) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
}

// bareEd25519 takes an ed25519 exe0 token apart independently of package
// keys (PROTOCOL.sshsig) and returns the public key, the data that was
// really signed, and the raw signature.
func bareEd25519(tb testing.TB, token string) (ed25519.PublicKey, []byte, []byte) {
	tb.Helper()
	x, err := ParseExe0(token)
	if err != nil {
		tb.Fatal(err)
	}
	_, s64 := parts(tb, token)
	blob, err := b64.DecodeString(s64)
	if err != nil {
		tb.Fatal(err)
	}
	rest := blob[6+4:] // "SSHSIG", version
	var sigField []byte
	for range 4 { // public key, namespace, reserved, hash algorithm
		_, rest = sshString(tb, rest)
	}
	sigField, _ = sshString(tb, rest)
	_, sigField = sshString(tb, sigField) // format
	raw, _ := sshString(tb, sigField)

	h := sha512.Sum512(x.Payload)
	signed := []byte("SSHSIG")
	signed = appendSSHString(signed, []byte(x.Sig.Namespace))
	signed = appendSSHString(signed, nil)
	signed = appendSSHString(signed, []byte("sha512"))
	signed = appendSSHString(signed, h[:])
	pub := x.Sig.PublicKey.(ssh.CryptoPublicKey).CryptoPublicKey().(ed25519.PublicKey)
	if !ed25519.Verify(pub, signed, raw) {
		tb.Fatal("bare ed25519 verify failed: the test's SSHSIG reading is wrong")
	}
	return pub, signed, raw
}

func TestBareEd25519MatchesToken(t *testing.T) {
	s := testkit.NewSigner(t)
	bareEd25519(t, mint(t, s, apiNS, benchPayload))
}

// BenchmarkVerifyExe0Ed25519 is a full Verify (parse, registry hit,
// signature, every check) with the cache off. Compare with
// BenchmarkBareEd25519Verify, the signature check alone.
func BenchmarkVerifyExe0Ed25519(b *testing.B) {
	f := newFixture(b, Config{CacheSize: -1})
	tok := mint(b, f.signer, apiNS, benchPayload)
	ctx := context.Background()
	t := Target{Namespace: apiNS, Command: "ls"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, tok, t); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareEd25519Verify(b *testing.B) {
	s := testkit.NewSigner(b)
	pub, signed, sig := bareEd25519(b, mint(b, s, apiNS, benchPayload))
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, signed, sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkVerifyCached is a cache hit: it must not allocate.
func BenchmarkVerifyCached(b *testing.B) {
	f := newFixture(b, Config{})
	tok := mint(b, f.signer, vmNS, benchPayload)
	ctx := context.Background()
	t := Target{Namespace: vmNS, VM: f.web}
	if _, err := f.v.Verify(ctx, tok, t); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, tok, t); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseExe0(b *testing.B) {
	s := testkit.NewSigner(b)
	tok := mint(b, s, apiNS, benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseExe0(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVerifyCachedDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	f := newFixture(t, Config{})
	tok := mint(t, f.signer, vmNS, benchPayload)
	ctx := context.Background()
	for _, tg := range []Target{
		{Namespace: vmNS, VM: f.web},
		{Namespace: vmNS, VM: f.web, Command: "whoami"},
	} {
		if _, err := f.v.Verify(ctx, tok, tg); err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := f.v.Verify(ctx, tok, tg); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("cache hit allocates %v times", allocs)
		}
	}
	if hits, _, _ := f.v.CacheStats(); hits < 200 {
		t.Errorf("only %d hits: the runs were not cache hits", hits)
	}
}
