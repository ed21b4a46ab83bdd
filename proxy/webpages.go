package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/exed-dev/exed/tokens"
)

// The account pages, one function each: what it reads (a command's JSON,
// whose field names are public API), what its form does (a command line
// built from the fields), and what it shows. See web.go for the routes.

// webData is what an account page shows; each page uses some of it.
type webData struct {
	pageData
	Error string // a refused action: the command's one line

	UserID   string
	LoginKey *keyJSON // the key this browser logged in with
	Keys     []keyJSON
	Key      keyJSON // the key a rename or removal is about
	NewName  string  // the rename form's value

	// The new token form, and the token it made.
	VMChoices []vmChoice // VMs a token may be for: owned, then shared
	Token     tokenForm
	Made      *generatedJSON
	CurlLine  string

	Sessions  []sessionJSON
	ThisOne   string // this browser's session id
	VMs       []vmJSON
	SharedVMs []sharedVMJSON
	Share     *shareJSON
	ShareWith string // the share form's value
	NewLink   *addLinkJSON
	Events    []eventJSON
}

// The commands' JSON outputs, as far as the pages read them.
type (
	keyJSON struct {
		Name        string    `json:"name"`
		Fingerprint string    `json:"fingerprint"`
		AddedAt     string    `json:"added_at"`
		LastUsedAt  string    `json:"last_used_at"`
		Current     bool      `json:"current"`
		Generated   bool      `json:"generated"`
		VM          string    `json:"vm"`
		Cmds        *[]string `json:"cmds"`
		ExpiresAt   string    `json:"expires_at"`
	}
	whoamiJSON struct {
		UserID  string    `json:"user_id"`
		Email   string    `json:"email"`
		SSHKeys []keyJSON `json:"ssh_keys"`
	}
	keysJSON struct {
		SSHKeys []keyJSON `json:"ssh_keys"`
	}
	generatedJSON struct {
		Label       string    `json:"label"`
		Token       string    `json:"token"`
		Namespace   string    `json:"namespace"`
		Fingerprint string    `json:"fingerprint"`
		VM          string    `json:"vm"`
		Cmds        *[]string `json:"cmds"`
		ExpiresAt   string    `json:"expires_at"`
	}
	sessionJSON struct {
		ID         string `json:"id"`
		Host       string `json:"host"`
		CreatedAt  string `json:"created_at"`
		ExpiresAt  string `json:"expires_at"`
		LastUsedAt string `json:"last_used_at"`
		UserAgent  string `json:"user_agent"`
	}
	sessionsJSON struct {
		Sessions []sessionJSON `json:"sessions"`
	}
	vmJSON struct {
		Name   string `json:"vm_name"`
		URL    string `json:"https_url"`
		Public bool   `json:"public"`
	}
	sharedVMJSON struct {
		vmJSON
		OwnerEmail string `json:"owner_email"`
	}
	lsJSON struct {
		VMs       []vmJSON       `json:"vms"`
		SharedVMs []sharedVMJSON `json:"shared_vms"`
	}
	shareJSON struct {
		VMName string `json:"vm_name"`
		Status string `json:"status"`
		URL    string `json:"url"`
		Users  []struct {
			Email     string `json:"email"`
			Status    string `json:"status"`
			InvitedAt string `json:"invited_at"`
		} `json:"users"`
		Links []struct {
			Token      string `json:"token"` // the link's name: its token is shown once
			CreatedAt  string `json:"created_at"`
			UseCount   int    `json:"use_count"`
			LastUsedAt string `json:"last_used_at"`
		} `json:"links"`
	}
	addLinkJSON struct {
		VMName string `json:"vm_name"`
		Token  string `json:"token"`
		URL    string `json:"url"`
	}
	eventJSON struct {
		ID         int64  `json:"id"`
		At         string `json:"at"`
		Action     string `json:"action"`
		Via        string `json:"via"`
		RemoteAddr string `json:"remote_addr"`
		Subject    string `json:"subject"`
		// KeyName is the current name of the key Subject's fingerprint
		// names, if it is still one of the user's (the row keeps the
		// fingerprint: a name can change, or be given to another key).
		KeyName string `json:"-"`
	}
	logJSON struct {
		Events []eventJSON `json:"events"`
	}
)

// vmChoice is a VM the new token form offers: Owner is "" for the user's
// own, else the email of the owner who shared it.
type vmChoice struct{ Name, Owner string }

// tokenForm is the new token form's fields.
type tokenForm struct {
	Label, VM, Exp, Cmds string
}

// expiryChoices are the new token form's expiries: --exp values, with
// what the form calls them.
var expiryChoices = []struct{ Value, Text string }{
	{"never", "Never"}, {"1h", "In 1 hour"}, {"1d", "In 1 day"}, {"7d", "In 7 days"},
	{"30d", "In 30 days"}, {"90d", "In 90 days"}, {"1y", "In 1 year"},
}

// accountPage is "/": who you are, and the key this browser logged in
// with (whoami).
func (h *Handler) accountPage(x *web) {
	d := &webData{pageData: pageData{Title: "Account", SSHLine: h.sshPrefix()}}
	var who whoamiJSON
	if err := x.run(&who, "whoami"); err != nil {
		x.failed("account", d, err)
		return
	}
	d.UserID = who.UserID
	for i := range who.SSHKeys {
		if who.SSHKeys[i].Current {
			d.LoginKey = &who.SSHKeys[i]
		}
	}
	x.show(http.StatusOK, "account", d)
}

// keysPage lists keys and tokens (ssh-key list).
func (h *Handler) keysPage(x *web) {
	d := &webData{pageData: pageData{Title: "Keys and tokens"}}
	var ks keysJSON
	if err := x.run(&ks, "ssh-key", "list"); err != nil {
		x.failed("keys", d, err)
		return
	}
	d.Keys = ks.SSHKeys
	x.show(http.StatusOK, "keys", d)
}

// findKey reads the key the request's key parameter names (by
// fingerprint) from ssh-key list; ok is false once it has answered.
func (x *web) findKey(d *webData, page string) (ok bool) {
	fp := x.r.URL.Query().Get("key")
	if x.post() {
		fp = x.form.Get("key")
	}
	var ks keysJSON
	if err := x.run(&ks, "ssh-key", "list"); err != nil {
		x.failed(page, d, err)
		return false
	}
	i := slices.IndexFunc(ks.SSHKeys, func(k keyJSON) bool { return k.Fingerprint == fp })
	if i < 0 {
		x.h.renderWeb(x.w, http.StatusNotFound, "error", &webData{pageData: pageData{
			Title: "No such key", Heading: "No such key", Message: "You have no key with that fingerprint: it may have been removed already.",
			Nav: "keys", Email: x.caller.User.Email,
		}})
		return false
	}
	d.Key = ks.SSHKeys[i]
	return true
}

// keyRenamePage renames a key (ssh-key rename FP NEW).
func (h *Handler) keyRenamePage(x *web) {
	d := &webData{pageData: pageData{Title: "Rename a key", Nav: "keys"}}
	if !x.findKey(d, "keyrename") {
		return
	}
	d.NewName = d.Key.Name
	if !x.post() {
		x.show(http.StatusOK, "keyrename", d)
		return
	}
	d.NewName = x.form.Get("name")
	if err := x.run(nil, "ssh-key", "rename", "--", d.Key.Fingerprint, d.NewName); err != nil {
		x.failed("keyrename", d, err)
		return
	}
	x.done(pathKeys)
}

// keyRemovePage asks, then removes a key (ssh-key remove FP): every token
// it signed dies with it. Removing the key this browser logged in with
// ends this browser's session too.
func (h *Handler) keyRemovePage(x *web) {
	d := &webData{pageData: pageData{Title: "Remove a key", Nav: "keys"}}
	if !x.findKey(d, "keyremove") {
		return
	}
	if !x.post() {
		x.show(http.StatusOK, "keyremove", d)
		return
	}
	if err := x.run(nil, "ssh-key", "remove", "--", d.Key.Fingerprint); err != nil {
		x.failed("keyremove", d, err)
		return
	}
	if d.Key.Fingerprint == x.s.Fingerprint {
		x.loggedOut()
		return
	}
	x.done(pathKeys)
}

// tokenNewPage is the new token form; its POST runs generate-api-key and
// shows the token once, in the answer itself (never cached: every page is
// no-store; never in a URL; the log has the path only).
func (h *Handler) tokenNewPage(x *web) {
	d := &webData{pageData: pageData{Title: "New token", Nav: "keys"}, Token: tokenForm{Exp: "never"}}
	var ls lsJSON
	if err := x.run(&ls, "ls"); err != nil {
		x.failed("tokennew", d, err)
		return
	}
	for _, vm := range ls.VMs {
		d.VMChoices = append(d.VMChoices, vmChoice{Name: vm.Name})
	}
	for _, vm := range ls.SharedVMs {
		d.VMChoices = append(d.VMChoices, vmChoice{Name: vm.Name, Owner: vm.OwnerEmail})
	}
	if !x.post() {
		vm := x.r.URL.Query().Get("vm")
		if slices.ContainsFunc(d.VMChoices, func(c vmChoice) bool { return c.Name == vm }) {
			d.Token.VM = vm
		}
		x.show(http.StatusOK, "tokennew", d)
		return
	}
	f := tokenForm{
		Label: strings.TrimSpace(x.form.Get("label")), VM: x.form.Get("vm"),
		Exp: x.form.Get("exp"), Cmds: strings.TrimSpace(x.form.Get("cmds")),
	}
	d.Token = f
	args := []string{"ssh-key", "generate-api-key"}
	if f.Label != "" {
		args = append(args, "--label="+f.Label)
	}
	if f.VM != "" {
		args = append(args, "--vm="+f.VM)
	}
	if f.Exp != "" {
		args = append(args, "--exp="+f.Exp)
	}
	if f.Cmds != "" {
		args = append(args, "--cmds="+f.Cmds)
	}
	var g generatedJSON
	if err := x.run(&g, args...); err != nil {
		x.failed("tokennew", d, err)
		return
	}
	d.Title, d.Made = "Your new token", &g
	d.CurlLine = h.curlLine(x.o, g)
	d.Script = x.o.url(h.domain) + pathCopyScript
	x.show(http.StatusOK, "tokenshown", d)
}

// curlLine is a command that uses token g, as generate-api-key prints it:
// the VM's site for a VM token, /exec whoami for an API token, on the
// scheme and port this browser uses.
func (h *Handler) curlLine(o origin, g generatedJSON) string {
	if g.VM != "" {
		return `curl -H "X-Exedev-Authorization: Bearer ` + g.Token + `" ` + o.url(h.ns.VMHost(g.VM)) + "/"
	}
	return `curl -X POST -H "Authorization: Bearer ` + g.Token + `" -d whoami ` + o.url(h.domain) + "/exec"
}

// sessionsPage lists browser sessions (sessions) and ends one (sessions
// revoke ID) or all (--all). Ending this browser's own logs it out.
func (h *Handler) sessionsPage(x *web) {
	d := &webData{pageData: pageData{Title: "Browser sessions"}, ThisOne: x.s.ID}
	if x.post() {
		var err error
		own := false
		switch x.form.Get("action") {
		case "end":
			id := x.form.Get("id")
			own = id == x.s.ID
			err = x.run(nil, "sessions", "revoke", "--", id)
		case "end-all":
			own = true
			err = x.run(nil, "sessions", "revoke", "--all")
		default:
			h.errorPage(x.w, http.StatusBadRequest, "Bad request", "The form asked for nothing this page does.")
			return
		}
		switch {
		case err == nil && own:
			x.loggedOut()
			return
		case err == nil:
			x.done(pathSessions)
			return
		}
		d.Error = x.errorText(err)
	}
	var ss sessionsJSON
	if err := x.run(&ss, "sessions"); err != nil {
		x.failed("sessions", d, err)
		return
	}
	d.Sessions = ss.Sessions
	x.show(statusFor(d), "sessions", d)
}

// statusFor is 422 for a page shown again with a refusal, else 200.
func statusFor(d *webData) int {
	if d.Error != "" {
		return http.StatusUnprocessableEntity
	}
	return http.StatusOK
}

// vmsPage lists the VMs owned and shared with this user (ls).
func (h *Handler) vmsPage(x *web) {
	d := &webData{pageData: pageData{Title: "VMs"}}
	var ls lsJSON
	if err := x.run(&ls, "ls"); err != nil {
		x.failed("vms", d, err)
		return
	}
	d.VMs, d.SharedVMs = ls.VMs, ls.SharedVMs
	x.show(http.StatusOK, "vms", d)
}

// vmPage is one owned VM's sharing (share show), and its forms: share
// add, remove, set-public, set-private, add-link (the link shown once, as
// a new token is) and remove-link.
func (h *Handler) vmPage(x *web) {
	name, err := url.PathUnescape(strings.TrimPrefix(x.r.URL.EscapedPath(), vmPagePrefix))
	if err != nil {
		name = ""
	}
	d := &webData{pageData: pageData{Title: name, VM: name, Nav: "vms"}}
	if x.post() {
		var err error
		switch action := x.form.Get("action"); action {
		case "add":
			d.ShareWith = strings.TrimSpace(x.form.Get("email"))
			err = x.run(nil, "share", "add", "--", name, d.ShareWith)
		case "remove":
			err = x.run(nil, "share", "remove", "--", name, x.form.Get("email"))
		case "set-public", "set-private":
			err = x.run(nil, "share", action, "--", name)
		case "remove-link":
			err = x.run(nil, "share", "remove-link", "--", name, x.form.Get("link"))
		case "add-link":
			var l addLinkJSON
			if err = x.run(&l, "share", "add-link", "--", name); err == nil {
				d.Title, d.NewLink = "Your new share link", &l
				d.Script = x.o.url(h.domain) + pathCopyScript
				x.show(http.StatusOK, "linkshown", d)
				return
			}
		default:
			h.errorPage(x.w, http.StatusBadRequest, "Bad request", "The form asked for nothing this page does.")
			return
		}
		if err == nil {
			x.done(vmPagePrefix + url.PathEscape(name))
			return
		}
		d.Error = x.errorText(err)
	}
	var sh shareJSON
	if err := x.run(&sh, "share", "show", "--", name); err != nil {
		// Not the user's VM (or none): the page is the refusal.
		x.h.renderWeb(x.w, http.StatusNotFound, "error", &webData{pageData: pageData{
			Title: "No such VM", Heading: "No such VM", Message: x.errorText(err), Nav: "vms", Email: x.caller.User.Email,
		}})
		return
	}
	d.Share = &sh
	x.show(statusFor(d), "vm", d)
}

// logPage is the recent audit log (log: the newest 50 rows).
func (h *Handler) logPage(x *web) {
	d := &webData{pageData: pageData{Title: "Log"}}
	var l logJSON
	if err := x.run(&l, "log"); err != nil {
		x.failed("log", d, err)
		return
	}
	// Name the keys still there; without ssh-key list (a session of a
	// token that may not run it) the fingerprints stand alone.
	var ks keysJSON
	if x.run(&ks, "ssh-key", "list") == nil {
		names := make(map[string]string, len(ks.SSHKeys))
		for _, k := range ks.SSHKeys {
			names[k.Fingerprint] = k.Name
		}
		for i := range l.Events {
			l.Events[i].KeyName = names[l.Events[i].Subject]
		}
	}
	d.Events = l.Events
	x.show(http.StatusOK, "log", d)
}

// The pages' template functions.

// humanTime shows an RFC 3339 time from a command's JSON to the minute,
// in UTC ("" for none).
func humanTime(s string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04") + " UTC"
}

// defaultCmds is the default list of a token's cmds, as the pages name it.
func defaultCmds() string { return strings.Join(tokens.DefaultCmds(), ", ") }

// day is the date of an RFC 3339 time, in UTC.
func day(s string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	return t.UTC().Format(time.DateOnly)
}

// shortTime is humanTime without the zone, for a table whose page says
// its times are UTC.
func shortTime(s string) string { return strings.TrimSuffix(humanTime(s), " UTC") }

// browserOf names the browser a user agent string stands for as a person
// would ("Chrome 120 on Windows"); a string it does not know is shown as
// its first word ("curl/8.5.0").
func browserOf(ua string) string {
	name := ""
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"HeadlessChrome/", "Headless Chrome"},
		{"Chrome/", "Chrome"}, {"Version/", "Safari"},
	} {
		if _, rest, ok := strings.Cut(ua, b.token); ok {
			major, _, _ := strings.Cut(rest, ".")
			major, _, _ = strings.Cut(major, " ")
			name = b.name + " " + major
			break
		}
	}
	if name == "" {
		first, _, _ := strings.Cut(ua, " ")
		return first
	}
	for _, os := range []struct{ token, name string }{
		{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iPadOS"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, os.token) {
			return name + " on " + os.name
		}
	}
	return name
}

// cmdsText is a key's cmds as the keys table shows them: the list, "none"
// for [], "default" for an API token without any (tokens.DefaultCmds, which
// the page's note lists), "—" for a VM token (cmds are for /exec), and
// "any" for a key restricted to none.
func cmdsText(k keyJSON) string {
	switch {
	case k.Cmds != nil && len(*k.Cmds) == 0:
		return "none"
	case k.Cmds != nil:
		return strings.Join(*k.Cmds, ", ")
	case k.Generated && k.VM == "":
		return "default"
	case k.Generated:
		return "—"
	}
	return "any"
}
