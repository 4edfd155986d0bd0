// Package report is the device's side of fleet reports (docs/fleet.md): every outcome an
// operator needs is derived from what the database durably holds, kept in a bounded outbox
// (store.Enqueue) with an id that names the outcome, and posted in batches with backoff.
// An outcome is derived again until its event is enqueued, so a power cut loses none, and
// an event posted twice (a cut after the receiver had it) carries the same id: the receiver
// drops the duplicate.
package report

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"regexp"
	"time"
)

// Event kinds (docs/fleet.md).
const (
	Installed  = "installed"   // a generation committed (apps, versions, slot), or an OS image (os_slot)
	Deferred   = "deferred"    // a phased rollout keeps a release out until (or halted)
	Staged     = "staged"      // a generation sealed, waiting for an install window (until)
	Failed     = "failed"      // a check failed (error class, message, bytes received, offered)
	RolledBack = "rolled_back" // a generation abandoned (reason), back to an earlier one
	Refused    = "refused"     // a release this device will not install (reason)
	TrustStale = "trust_stale" // no fresh signed timestamp for trust.max_staleness
	Damaged    = "slot_damaged"
	Repaired   = "slot_repaired"
)

// Event is one outcome. Only the fields of its kind are set.
type Event struct {
	ID         string            `json:"id"` // <device>/<kind>/<what>: the same outcome, the same id
	Kind       string            `json:"kind"`
	Time       time.Time         `json:"time"`
	Apps       map[string]string `json:"apps,omitempty"` // app → version concerned
	Generation int64             `json:"generation,omitempty"`
	Slot       string            `json:"slot,omitempty"`
	OSSlot     string            `json:"os_slot,omitempty"`
	Until      *time.Time        `json:"until,omitempty"`
	Halted     bool              `json:"halted,omitempty"`
	Percent    float64           `json:"ramp_percent,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	Class      string            `json:"error_class,omitempty"`
	Message    string            `json:"message,omitempty"`
	Bytes      int64             `json:"bytes,omitempty"`
	From       int64             `json:"from_generation,omitempty"`
	Problems   []string          `json:"problems,omitempty"`
}

// Batch is one POST's body.
type Batch struct {
	V       int               `json:"v"`       // 1
	Device  string            `json:"device"`  // Device's answer
	Agent   string            `json:"agent"`   // ota-agent/<version>
	Sent    time.Time         `json:"sent"`    // the device's clock
	Dropped int64             `json:"dropped"` // events the outbox dropped for room since the last batch
	Events  []json.RawMessage `json:"events"`
}

// MaxMessage bounds an event's free text.
const MaxMessage = 1024

// signedQuery matches a URL's query: never reported (a signed URL's signature is a secret).
var signedQuery = regexp.MustCompile(`(https?://[^\s?"]*)\?[^\s"]*`)

// Clean is a message fit for a report: no URL query, at most MaxMessage bytes.
func Clean(msg string) string {
	msg = signedQuery.ReplaceAllString(msg, "$1?…")
	if len(msg) > MaxMessage {
		msg = msg[:MaxMessage] + "…"
	}
	return msg
}

// Device is how reports name the device: device.id when configured, else an id derived
// from /etc/machine-id the way systemd recommends for applications (an HMAC keyed by it, so
// the machine id itself never leaves the device), else the host name.
func Device(configured, machineID string) string {
	if configured != "" {
		return configured
	}
	if machineID != "" {
		m := hmac.New(sha256.New, []byte(machineID))
		m.Write([]byte("ota-agent device reports"))
		return hex.EncodeToString(m.Sum(nil)[:16])
	}
	host, _ := os.Hostname()
	return "host-" + host
}
