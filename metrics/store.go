package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/exed-dev/exed/store"
)

// Store returns s with every call timed into
// exed_store_query_duration_seconds, labelled with the method's name. On a
// nil *Metrics it returns s itself.
func (m *Metrics) Store(s store.Store) store.Store {
	if m == nil {
		return s
	}
	return &timedStore{Store: s, m: m}
}

// timedStore decorates a store.Store. It embeds the interface so that a
// method added to store.Store later still reaches the real store (untimed
// until it is listed here).
type timedStore struct {
	store.Store
	m *Metrics
}

// observe records one call of method that began at start and ended with
// *err. A sentinel answer (not found, exists, last key, self share) is the store
// working: only other errors count as "error".
func (s *timedStore) observe(method string, start time.Time, err *error) {
	result := resultOK
	if e := *err; e != nil && !errors.Is(e, store.ErrNotFound) &&
		!errors.Is(e, store.ErrExists) && !errors.Is(e, store.ErrLastKey) && !errors.Is(e, store.ErrSelfShare) {
		result = resultError
	}
	s.m.storeDuration.WithLabelValues(method, result).Observe(time.Since(start).Seconds())
}

func (s *timedStore) AddUser(ctx context.Context, u store.User, first store.Key, e store.Event) (err error) {
	defer s.observe("add_user", time.Now(), &err)
	return s.Store.AddUser(ctx, u, first, e)
}

func (s *timedStore) UserByID(ctx context.Context, id string) (_ store.User, err error) {
	defer s.observe("user_by_id", time.Now(), &err)
	return s.Store.UserByID(ctx, id)
}

func (s *timedStore) UserByEmail(ctx context.Context, email string) (_ store.User, err error) {
	defer s.observe("user_by_email", time.Now(), &err)
	return s.Store.UserByEmail(ctx, email)
}

func (s *timedStore) Users(ctx context.Context) (_ []store.UserSummary, err error) {
	defer s.observe("users", time.Now(), &err)
	return s.Store.Users(ctx)
}

func (s *timedStore) AddKey(ctx context.Context, k store.Key, e store.Event) (err error) {
	defer s.observe("add_key", time.Now(), &err)
	return s.Store.AddKey(ctx, k, e)
}

func (s *timedStore) ReviveKey(ctx context.Context, k store.Key, e store.Event) (err error) {
	defer s.observe("revive_key", time.Now(), &err)
	return s.Store.ReviveKey(ctx, k, e)
}

func (s *timedStore) AddTokenKey(ctx context.Context, k store.Key, h *store.Exe1, e store.Event) (err error) {
	defer s.observe("add_token_key", time.Now(), &err)
	return s.Store.AddTokenKey(ctx, k, h, e)
}

func (s *timedStore) Key(ctx context.Context, fingerprint string) (_ store.Key, err error) {
	defer s.observe("key", time.Now(), &err)
	return s.Store.Key(ctx, fingerprint)
}

func (s *timedStore) KeyAndUser(ctx context.Context, fingerprint string) (_ store.Key, _ store.User, err error) {
	defer s.observe("key_and_user", time.Now(), &err)
	return s.Store.KeyAndUser(ctx, fingerprint)
}

func (s *timedStore) Keys(ctx context.Context, userID string) (_ []store.Key, err error) {
	defer s.observe("keys", time.Now(), &err)
	return s.Store.Keys(ctx, userID)
}

func (s *timedStore) RemoveKey(ctx context.Context, userID, fingerprint string, e store.Event) (err error) {
	defer s.observe("remove_key", time.Now(), &err)
	return s.Store.RemoveKey(ctx, userID, fingerprint, e)
}

func (s *timedStore) RenameKey(ctx context.Context, userID, fingerprint, newName string, e store.Event) (err error) {
	defer s.observe("rename_key", time.Now(), &err)
	return s.Store.RenameKey(ctx, userID, fingerprint, newName, e)
}

func (s *timedStore) TouchKeys(ctx context.Context, used map[string]time.Time) (err error) {
	defer s.observe("touch_keys", time.Now(), &err)
	return s.Store.TouchKeys(ctx, used)
}

func (s *timedStore) AddExe1(ctx context.Context, h store.Exe1, e store.Event) (err error) {
	defer s.observe("add_exe1", time.Now(), &err)
	return s.Store.AddExe1(ctx, h, e)
}

func (s *timedStore) Exe1(ctx context.Context, id []byte) (_ store.Exe1, err error) {
	defer s.observe("exe1", time.Now(), &err)
	return s.Store.Exe1(ctx, id)
}

func (s *timedStore) AddVM(ctx context.Context, vm store.VM, e store.Event) (err error) {
	defer s.observe("add_vm", time.Now(), &err)
	return s.Store.AddVM(ctx, vm, e)
}

func (s *timedStore) VM(ctx context.Context, name string) (_ store.VM, err error) {
	defer s.observe("vm", time.Now(), &err)
	return s.Store.VM(ctx, name)
}

func (s *timedStore) VMs(ctx context.Context, ownerID string) (_ []store.VM, err error) {
	defer s.observe("vms", time.Now(), &err)
	return s.Store.VMs(ctx, ownerID)
}

func (s *timedStore) RemoveVM(ctx context.Context, name string, e store.Event) (err error) {
	defer s.observe("remove_vm", time.Now(), &err)
	return s.Store.RemoveVM(ctx, name, e)
}

func (s *timedStore) AddShare(ctx context.Context, vm, email string, at time.Time, e store.Event) (_ store.Share, err error) {
	defer s.observe("add_share", time.Now(), &err)
	return s.Store.AddShare(ctx, vm, email, at, e)
}

func (s *timedStore) RemoveShare(ctx context.Context, vm, email string, e store.Event) (err error) {
	defer s.observe("remove_share", time.Now(), &err)
	return s.Store.RemoveShare(ctx, vm, email, e)
}

func (s *timedStore) Shares(ctx context.Context, vm string) (_ []store.Share, err error) {
	defer s.observe("shares", time.Now(), &err)
	return s.Store.Shares(ctx, vm)
}

func (s *timedStore) SharedVMs(ctx context.Context, userID string) (_ []store.SharedVM, err error) {
	defer s.observe("shared_vms", time.Now(), &err)
	return s.Store.SharedVMs(ctx, userID)
}

func (s *timedStore) SetVMPublic(ctx context.Context, vm string, public bool, e store.Event) (err error) {
	defer s.observe("set_vm_public", time.Now(), &err)
	return s.Store.SetVMPublic(ctx, vm, public, e)
}

func (s *timedStore) AddShareLink(ctx context.Context, l store.ShareLink, e store.Event) (err error) {
	defer s.observe("add_share_link", time.Now(), &err)
	return s.Store.AddShareLink(ctx, l, e)
}

func (s *timedStore) RemoveShareLink(ctx context.Context, vm string, id []byte, e store.Event) (err error) {
	defer s.observe("remove_share_link", time.Now(), &err)
	return s.Store.RemoveShareLink(ctx, vm, id, e)
}

func (s *timedStore) ShareLinks(ctx context.Context, vm string) (_ []store.ShareLink, err error) {
	defer s.observe("share_links", time.Now(), &err)
	return s.Store.ShareLinks(ctx, vm)
}

func (s *timedStore) UseShareLink(ctx context.Context, vm string, id []byte, userID string, at time.Time, e store.Event) (_ store.ShareLink, err error) {
	defer s.observe("use_share_link", time.Now(), &err)
	return s.Store.UseShareLink(ctx, vm, id, userID, at, e)
}

func (s *timedStore) QueryEvents(ctx context.Context, q store.EventQuery) (_ []store.Event, err error) {
	defer s.observe("query_events", time.Now(), &err)
	return s.Store.QueryEvents(ctx, q)
}

func (s *timedStore) AddAssertionKey(ctx context.Context, k store.AssertionKey, e store.Event) (err error) {
	defer s.observe("add_assertion_key", time.Now(), &err)
	return s.Store.AddAssertionKey(ctx, k, e)
}

func (s *timedStore) AssertionKeys(ctx context.Context) (_ []store.AssertionKey, err error) {
	defer s.observe("assertion_keys", time.Now(), &err)
	return s.Store.AssertionKeys(ctx)
}

func (s *timedStore) Events(ctx context.Context, after int64, limit int) (_ []store.Event, err error) {
	defer s.observe("events", time.Now(), &err)
	return s.Store.Events(ctx, after, limit)
}

func (s *timedStore) PutCertBlob(ctx context.Context, b store.CertBlob) (err error) {
	defer s.observe("put_cert_blob", time.Now(), &err)
	return s.Store.PutCertBlob(ctx, b)
}

func (s *timedStore) CertBlob(ctx context.Context, key string) (_ store.CertBlob, err error) {
	defer s.observe("cert_blob", time.Now(), &err)
	return s.Store.CertBlob(ctx, key)
}

func (s *timedStore) CertBlobInfos(ctx context.Context, prefix string) (_ []store.CertBlobInfo, err error) {
	defer s.observe("cert_blob_infos", time.Now(), &err)
	return s.Store.CertBlobInfos(ctx, prefix)
}

func (s *timedStore) DeleteCertBlobs(ctx context.Context, key string) (err error) {
	defer s.observe("delete_cert_blobs", time.Now(), &err)
	return s.Store.DeleteCertBlobs(ctx, key)
}

func (s *timedStore) AcquireCertLock(ctx context.Context, name, holder string, now, expires time.Time) (_ bool, err error) {
	defer s.observe("acquire_cert_lock", time.Now(), &err)
	return s.Store.AcquireCertLock(ctx, name, holder, now, expires)
}

func (s *timedStore) RenewCertLock(ctx context.Context, name, holder string, expires time.Time) (err error) {
	defer s.observe("renew_cert_lock", time.Now(), &err)
	return s.Store.RenewCertLock(ctx, name, holder, expires)
}

func (s *timedStore) ReleaseCertLock(ctx context.Context, name, holder string) (err error) {
	defer s.observe("release_cert_lock", time.Now(), &err)
	return s.Store.ReleaseCertLock(ctx, name, holder)
}

// Subscribe passes through untimed: it is not a query, and the changes it
// delivers come from the writes timed above.
func (s *timedStore) Subscribe(fn func(store.Change)) (cancel func()) {
	return s.Store.Subscribe(fn)
}

func (s *timedStore) Ping(ctx context.Context) (err error) {
	defer s.observe("ping", time.Now(), &err)
	return s.Store.Ping(ctx)
}

func (s *timedStore) AddLoginLink(ctx context.Context, l store.LoginLink, e store.Event) (err error) {
	defer s.observe("add_login_link", time.Now(), &err)
	return s.Store.AddLoginLink(ctx, l, e)
}

func (s *timedStore) RedeemLoginLink(ctx context.Context, hash []byte, now time.Time, sess store.Session, e store.Event) (_ store.LoginLink, _ store.Session, err error) {
	defer s.observe("redeem_login_link", time.Now(), &err)
	return s.Store.RedeemLoginLink(ctx, hash, now, sess, e)
}

func (s *timedStore) AddMagicSecret(ctx context.Context, m store.MagicSecret, e store.Event) (err error) {
	defer s.observe("add_magic_secret", time.Now(), &err)
	return s.Store.AddMagicSecret(ctx, m, e)
}

func (s *timedStore) RedeemMagicSecret(ctx context.Context, hash []byte, host string, now time.Time, sess store.Session, e store.Event) (_ store.Session, err error) {
	defer s.observe("redeem_magic_secret", time.Now(), &err)
	return s.Store.RedeemMagicSecret(ctx, hash, host, now, sess, e)
}

func (s *timedStore) SessionAndUser(ctx context.Context, hash []byte) (_ store.Session, _ store.User, err error) {
	defer s.observe("session_and_user", time.Now(), &err)
	return s.Store.SessionAndUser(ctx, hash)
}

func (s *timedStore) Sessions(ctx context.Context, userID string) (_ []store.Session, err error) {
	defer s.observe("sessions", time.Now(), &err)
	return s.Store.Sessions(ctx, userID)
}

func (s *timedStore) RevokeSession(ctx context.Context, userID, id string, e store.Event) (err error) {
	defer s.observe("revoke_session", time.Now(), &err)
	return s.Store.RevokeSession(ctx, userID, id, e)
}

func (s *timedStore) RevokeSessions(ctx context.Context, userID string, e store.Event) (_ int, err error) {
	defer s.observe("revoke_sessions", time.Now(), &err)
	return s.Store.RevokeSessions(ctx, userID, e)
}

func (s *timedStore) TouchSessions(ctx context.Context, used map[string]time.Time) (err error) {
	defer s.observe("touch_sessions", time.Now(), &err)
	return s.Store.TouchSessions(ctx, used)
}

func (s *timedStore) PurgeExpired(ctx context.Context, now time.Time) (_ int, err error) {
	defer s.observe("purge_expired", time.Now(), &err)
	return s.Store.PurgeExpired(ctx, now)
}
