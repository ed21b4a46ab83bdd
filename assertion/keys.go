package assertion

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/exed-dev/exed/store"
)

// The rotation schedule: published a day before it signs, signs 30 days,
// published 7 days more.
const (
	// PublishAhead: a new key is in the JWKS this long before it signs,
	// so that every verifier's cached copy (max-age one hour) has it by
	// then.
	PublishAhead = 24 * time.Hour
	// SignFor: how long a key signs before the next one takes over.
	SignFor = 30 * 24 * time.Hour
	// PublishAfter: how long a key stays in the JWKS once it has stopped
	// signing; far longer than the assertions it signed live (MaxTTL).
	PublishAfter = 7 * 24 * time.Hour
)

// State is where a key is in its life.
type State string

// The states of a key.
const (
	StatePublished State = "published" // in the JWKS, not signing: before it signs, or after
	StateSigning   State = "signing"   // the key assertions are signed with now
	StateRetired   State = "retired"   // no longer in the JWKS: what it signed verifies nowhere
)

// KeyStatus is one key with what its times mean at a given moment.
type KeyStatus struct {
	store.AssertionKey
	State State
	// SignUntil is when the key stops (or stopped) signing: the SignFrom
	// of the first key after it that signs, or, while there is none, as
	// the schedule plans (SignFrom + SignFor).
	SignUntil time.Time
	// RetireAt is when it leaves the JWKS: SignUntil + PublishAfter.
	RetireAt time.Time
	// Planned: SignUntil and RetireAt are the schedule's plan, not yet
	// fixed by a successor.
	Planned bool
}

// Status says, for keys ordered by generation (as the store lists them),
// what each one is at now. A key signs from its SignFrom until a key of a
// later generation does, so that at any moment the signer is the newest
// key whose SignFrom has come. A key superseded before it ever signed
// (a `rotate --now` while another waited) just stays published for
// PublishAfter.
func Status(keys []store.AssertionKey, now time.Time) []KeyStatus {
	out := make([]KeyStatus, len(keys))
	signer := signerIndex(keys, now)
	var after time.Time // the earliest SignFrom among later generations
	for i := len(keys) - 1; i >= 0; i-- {
		k := keys[i]
		st := KeyStatus{AssertionKey: k}
		if after.IsZero() {
			st.SignUntil, st.Planned = k.SignFrom.Add(SignFor), true
		} else {
			st.SignUntil = after
		}
		st.RetireAt = st.SignUntil.Add(PublishAfter)
		switch {
		case i == signer:
			st.State = StateSigning
		case !st.Planned && !now.Before(st.RetireAt):
			st.State = StateRetired
		default:
			st.State = StatePublished
		}
		out[i] = st
		if after.IsZero() || k.SignFrom.Before(after) {
			after = k.SignFrom
		}
	}
	return out
}

// signerIndex is the index of the key that signs at now: the newest
// whose SignFrom has come. When none has (only a clock a little behind
// the one that made the first key), the first key: it signs from when it
// was made. -1 when there are no keys.
func signerIndex(keys []store.AssertionKey, now time.Time) int {
	for i := len(keys) - 1; i >= 0; i-- {
		if !now.Before(keys[i].SignFrom) {
			return i
		}
	}
	if len(keys) > 0 {
		return 0
	}
	return -1
}

// nextKeyDue says whether the schedule wants a new key added at now, and
// its generation and SignFrom: the first key when there is none (it signs
// at once: no verifier can have cached a JWKS yet); else one
// PublishAhead before the newest key has signed for SignFor, signing when
// that one has (or, when the instances were down at the time, PublishAhead
// from now). Never while a newer key waits for its turn.
func nextKeyDue(keys []store.AssertionKey, now time.Time) (gen int64, signFrom time.Time, due bool) {
	if len(keys) == 0 {
		return 1, now, true
	}
	last := keys[len(keys)-1]
	if now.Before(last.SignFrom) || now.Before(last.SignFrom.Add(SignFor-PublishAhead)) {
		return 0, time.Time{}, false
	}
	signFrom = last.SignFrom.Add(SignFor)
	if soonest := now.Add(PublishAhead); signFrom.Before(soonest) {
		signFrom = soonest
	}
	return last.Generation + 1, signFrom, true
}

// signingKey is a key opened for signing.
type signingKey struct {
	id     string
	priv   *ecdsa.PrivateKey
	signer jose.Signer
}

// newKey makes a fresh P-256 key of generation gen, sealed under secret.
func newKey(secret *Secret, gen int64, now, signFrom time.Time) (store.AssertionKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return store.AssertionKey{}, fmt.Errorf("assertion: generate key: %w", err)
	}
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return store.AssertionKey{}, fmt.Errorf("assertion: generate key: %w", err)
	}
	kid, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return store.AssertionKey{}, err
	}
	raw, err := priv.Bytes()
	if err != nil {
		return store.AssertionKey{}, fmt.Errorf("assertion: generate key: %w", err)
	}
	defer clear(raw)
	return store.AssertionKey{
		ID: kid, Generation: gen, PublicKey: pub, Sealed: secret.seal(raw, kid),
		CreatedAt: now.UTC().Truncate(time.Second), SignFrom: signFrom.UTC().Truncate(time.Second),
	}, nil
}

// thumbprint is a key's kid: its RFC 7638 JWK thumbprint (SHA-256),
// base64url without padding.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("assertion: key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// publicKey parses k's public key and checks that k.ID is its thumbprint.
func publicKey(k store.AssertionKey) (*ecdsa.PublicKey, error) {
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), k.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("assertion: key %s: public key: %w", k.ID, err)
	}
	if kid, err := thumbprint(pub); err != nil || kid != k.ID {
		return nil, fmt.Errorf("assertion: key %s: its id is not its public key's thumbprint", k.ID)
	}
	return pub, nil
}

// openKey unseals k's private key with secret and checks it is the half
// of k's public key.
func openKey(secret *Secret, k store.AssertionKey) (*signingKey, error) {
	pub, err := publicKey(k)
	if err != nil {
		return nil, err
	}
	raw, err := secret.open(k.Sealed, k.ID)
	if err != nil {
		return nil, &WrongSecretError{KeyID: k.ID, Secret: secret.String()}
	}
	defer clear(raw)
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("assertion: key %s: private key: %w", k.ID, err)
	}
	if !priv.PublicKey.Equal(pub) {
		return nil, fmt.Errorf("assertion: key %s: the sealed private key is not its public key's", k.ID)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: k.ID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("assertion: key %s: %w", k.ID, err)
	}
	return &signingKey{id: k.ID, priv: priv, signer: signer}, nil
}

// PrivateKey opens k's private key with secret (a *WrongSecretError
// when it does not open). exed itself only ever signs with it; this is
// for tests and tools that must show what the sealed row holds.
func PrivateKey(secret *Secret, k store.AssertionKey) (*ecdsa.PrivateKey, error) {
	sk, err := openKey(secret, k)
	if err != nil {
		return nil, err
	}
	return sk.priv, nil
}

// WrongSecretError: a signing key in the store does not open with this
// instance's server secret. Instances sharing a database must share one
// secret; signing with a fresh key instead would publish a key set the
// other instances do not use.
type WrongSecretError struct {
	KeyID  string
	Secret string // where the secret came from
}

func (e *WrongSecretError) Error() string {
	return fmt.Sprintf("assertion: signing key %s in the store does not open with the server secret %s: "+
		"instances sharing a database must share one secret (--secret-key-file)", e.KeyID, e.Secret)
}

// JWKS returns the JSON Web Key Set of the keys published at now (every
// key not retired), in generation order.
func JWKS(keys []store.AssertionKey, now time.Time) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, st := range Status(keys, now) {
		if st.State == StateRetired {
			continue
		}
		pub, err := publicKey(st.AssertionKey)
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: st.ID, Algorithm: string(jose.ES256), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("assertion: JWKS: %w", err)
	}
	return b, nil
}

// maxAddTries bounds how often a rotation re-reads the keys after another
// instance added the generation it wanted.
const maxAddTries = 5

// Rotate adds a new key that signs PublishAhead from now, or at once with
// immediately (for when the signing key may have leaked: verifiers that
// cached the JWKS fetch it again when they meet the new kid). The keys
// before it stay published as the schedule says: what they signed keeps
// verifying until they retire. It first checks that secret opens the key
// signing now, so that a wrong secret adds nothing. On an empty store it
// adds the first key, which signs at once. actor is the audit log's actor.
func Rotate(ctx context.Context, st store.AssertionKeyStore, secret *Secret, now time.Time, immediately bool, actor string) (store.AssertionKey, error) {
	signFrom := now.Add(PublishAhead)
	if immediately {
		signFrom = now
	}
	for range maxAddTries {
		keys, err := st.AssertionKeys(ctx)
		if err != nil {
			return store.AssertionKey{}, fmt.Errorf("assertion: rotate: %w", err)
		}
		gen, from := int64(1), now // the first key signs at once, as a server's would
		if i := signerIndex(keys, now); i >= 0 {
			if _, err := openKey(secret, keys[i]); err != nil {
				return store.AssertionKey{}, err
			}
			gen, from = keys[len(keys)-1].Generation+1, signFrom
		}
		k, err := newKey(secret, gen, now, from)
		if err != nil {
			return store.AssertionKey{}, err
		}
		err = st.AddAssertionKey(ctx, k, addEvent(k, now, actor))
		if errors.Is(err, store.ErrExists) {
			continue // another instance rotated meanwhile: read again
		}
		if err != nil {
			return store.AssertionKey{}, fmt.Errorf("assertion: rotate: %w", err)
		}
		return k, nil
	}
	return store.AssertionKey{}, errors.New("assertion: rotate: other instances keep adding keys; try again")
}

// addEvent is the audit row of a key added.
func addEvent(k store.AssertionKey, now time.Time, actor string) store.Event {
	e := store.Event{Time: now.UTC(), ActorID: actor, Action: "assertion_key.add", Subject: k.ID}
	if actor == store.AdminActor {
		e.Via = store.ViaAdmin // exed assertion rotate; the schedule's ("system") comes through no door
	}
	return e
}
