package store

import "time"

// Where a change came in (Event.Via).
const (
	ViaSSH   = "ssh"   // a command over SSH
	ViaExec  = "exec"  // a command over the /exec API
	ViaWeb   = "web"   // a browser: the web page, a share link, a login
	ViaAdmin = "admin" // the local admin commands (exed user, exed vm)
)

// AdminActor is Event.ActorID for the local admin commands.
const AdminActor = "admin"

// MaxEventQuery bounds the rows one QueryEvents call returns.
const MaxEventQuery = 1000

// EventQuery selects rows of the audit log. The zero value of each field
// selects everything.
type EventQuery struct {
	ActorID string    // only this actor's rows
	Since   time.Time // only rows at or after this time
	AfterID int64     // only rows with a larger ID (following the log)
	// NewestFirst orders by ID descending; else ascending (oldest first).
	NewestFirst bool
	// Limit caps the rows returned: 1 to MaxEventQuery (0 is
	// MaxEventQuery).
	Limit int
}
