package store

import (
	"context"
	"time"
)

// CertBlob is one value that exed's ACME client (package certs) keeps: a
// certificate, its private key, its metadata, the ACME account, a
// challenge being solved. Key is a slash-separated path, as the client
// names them ("certificates/acme-v02…/web.exe.xyz/web.exe.xyz.crt").
// Keys act like file names: a key is never also the prefix of another
// ("a" and "a/b" are not both blobs); the client keeps to that.
type CertBlob struct {
	Key      string
	Value    []byte    // as given: sealing private keys is the caller's job
	Modified time.Time // set by the caller
}

// CertBlobInfo describes a blob without its value.
type CertBlobInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}

// CertStore is the registry's share of TLS certificates: the blobs every
// exed instance reads (so that a certificate one instance obtained is
// served by all, and a restart orders nothing), and named locks with a
// lease, so that only one instance at a time orders a given name and a
// holder that died lets go by itself when its lease ends.
//
// Its writes append no audit event and announce no Change: they are the
// ACME client's bookkeeping, not something a person did, and no cache in
// front of the store holds them.
type CertStore interface {
	// PutCertBlob creates the blob at b.Key or replaces it.
	PutCertBlob(ctx context.Context, b CertBlob) error
	// CertBlob returns the blob at key; ErrNotFound when there is none.
	CertBlob(ctx context.Context, key string) (CertBlob, error)
	// CertBlobInfos lists, by key, the blobs at prefix and under
	// prefix + "/" ("a" lists "a" and "a/b", never "ab"). prefix "" lists
	// them all.
	CertBlobInfos(ctx context.Context, prefix string) ([]CertBlobInfo, error)
	// DeleteCertBlobs deletes the blob at key and every blob under
	// key + "/". Deleting nothing is not an error.
	DeleteCertBlobs(ctx context.Context, key string) error

	// AcquireCertLock takes the lock called name for holder, with a lease
	// that ends at expires, when nobody holds it, when its lease ended at
	// or before now (its holder is taken to be dead), or when holder
	// already holds it (the lease is then moved to expires). It reports
	// whether holder holds the lock now. Of two holders racing for a free
	// lock, exactly one wins.
	AcquireCertLock(ctx context.Context, name, holder string, now, expires time.Time) (bool, error)
	// RenewCertLock moves holder's lease on name to end at expires;
	// ErrNotFound when holder does not hold it (it let go, or its lease
	// ended and another holder took the lock over).
	RenewCertLock(ctx context.Context, name, holder string, expires time.Time) error
	// ReleaseCertLock lets go of name; ErrNotFound when holder does not
	// hold it.
	ReleaseCertLock(ctx context.Context, name, holder string) error
}
