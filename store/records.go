package store

import (
	"encoding/json"
	"time"

	"github.com/ota-agent/ota-agent/installer"
)

// App is one installed binary: the slot manifest's record, which installer owns.
type App = installer.App

// Generation is one complete set of binaries in one slot.
type Generation struct {
	N    int64          `json:"n"`
	Slot string         `json:"slot"`
	Apps map[string]App `json:"apps"`
	// Rollback marks a switch back to a known-good generation: recorded as committed,
	// never put on trial.
	Rollback bool `json:"rollback,omitempty"`
}

// Journal is the update in progress: the step still to do, written before that step runs
// (with what the steps before it wrote, in one transaction), and the data the steps from
// there on need. It is the resume point: after a crash or a power cut the agent reads it
// and resumes, or discards what cannot be resumed. Nothing in progress: no journal.
type Journal struct {
	Step  string    `json:"step"`
	Since time.Time `json:"since"` // when the step was written
	// Next is the generation made (from seal on) or returned to (a rollback's switch).
	Next *Generation `json:"next,omitempty"`
	// Judge: the generation switched to is on trial (a health check is configured).
	Judge bool `json:"judge,omitempty"`
	// Restart are the systemd units still to restart (restart-units).
	Restart []string `json:"restart,omitempty"`
	// Trials counts the starts seen while on trial.
	Trials int `json:"trials,omitempty"`
	// Reason is why a generation is rolled back; ByHand, that `ota-agent rollback` asked.
	Reason string `json:"reason,omitempty"`
	ByHand bool   `json:"by_hand,omitempty"`
	// Apply: switch a staged generation now, install window or not (`ota-agent apply`).
	Apply bool `json:"apply,omitempty"`
}

// Status of the active generation.
const (
	StatusCommitted = "committed"
	StatusTrial     = "trial" // switched to, health not yet confirmed
)

// State is the active generation and how it got there. Status says whether it is still on
// trial (its trial, like every step of an update, resumes from the Journal).
type State struct {
	Generation
	Status   string     `json:"status"`
	Previous *Reference `json:"previous,omitempty"` // what a rollback returns to
	Since    time.Time  `json:"since"`
	// Damaged apps failed a re-verification of the slot: their MD5s are no longer claimed,
	// so the next check fetches them again (app → what was wrong).
	Damaged map[string]string `json:"damaged,omitempty"`
	// Reason is why a rollback made this generation active again.
	Reason string `json:"reason,omitempty"`
}

// VerifyRecord is the outcome of the daemon's last re-verification of the active slot.
type VerifyRecord struct {
	Time     time.Time     `json:"time"`
	Slot     string        `json:"slot"`
	N        int64         `json:"generation"`
	Duration time.Duration `json:"duration"`
	Problems []string      `json:"problems,omitempty"` // what differed ("app: why")
	Repaired []string      `json:"repaired,omitempty"` // what was done about it
}

// Reference names a generation in a slot.
type Reference struct {
	N    int64  `json:"n"`
	Slot string `json:"slot"`
}

// CheckRecord is the outcome of the last check.
type CheckRecord struct {
	Time     time.Time     `json:"time"`
	Result   string        `json:"result"` // up-to-date | updated | failed
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration"`
	Bytes    int64         `json:"bytes"`
	// Via is how each app of an update arrived (patch, full, payload) and what it cost.
	Via map[string]Delivery `json:"via,omitempty"`
	// Removed are the apps the check removed; Unlisted the apps the answer left out that
	// were kept (an unsigned answer removes nothing while trust keys are set).
	Removed  []string `json:"removed,omitempty"`
	Unlisted []string `json:"unlisted,omitempty"`
	// Class is a failure's kind (fault.Class), Offered what it was installing (app → version).
	Class   string            `json:"class,omitempty"`
	Offered map[string]string `json:"offered,omitempty"`
}

// Delivery is how an app arrived and what it cost.
type Delivery struct {
	Path       string `json:"delivery,omitempty"`   // patch | full | payload
	Downloaded int64  `json:"downloaded,omitempty"` // bytes received for it (a refused patch included)
	Size       int64  `json:"size,omitempty"`       // the file's size
}

// Refusal is a release this device will not install again until the server offers another.
type Refusal struct {
	App     string    `json:"app"`
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	Time    time.Time `json:"time"`
}

// Shadow is a release of a pinned app that an attribute selected beside the pinned row
// (device.pins wins): its MD5 goes out in If-None-Match while the pin stays.
type Shadow struct {
	App     string `json:"app"`
	Version string `json:"version"`
	Pin     string `json:"pin"` // the channel the app is pinned to
}

// Progress of a resumable single-binary download.
type Progress struct {
	URL    string `json:"url"`
	ETag   string `json:"etag"` // strong ETag seen on the first response
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	MD5    string `json:"md5,omitempty"`
	// Applying: a downloaded patch is being applied (set before, dropped with the record
	// after). Found set, the application was interrupted (killed, out of memory?): the patch
	// is not tried again, the whole file is fetched.
	Applying bool `json:"applying,omitempty"`
	// An OS image streamed into its partition (slots.os.backend: partition): the slot written
	// and the bytes of it flushed there. A restart resumes from Offset; no byte after it is
	// trusted. Hash and CRC are what agents before 2026-12-06 kept (ignored: the image is
	// hashed from the medium when whole).
	// Payload: streamed from a full payload's member, before its statement (the last member)
	// named its digests; no ETag. A restart resumes it with one metadata request and a Range
	// request to the firmware CDN (delivery.PayloadResume).
	Payload bool   `json:"payload,omitempty"`
	Slot    string `json:"slot,omitempty"`
	Offset  int64  `json:"offset,omitempty"`
	Hash    []byte `json:"hash,omitempty"`
	CRC     uint32 `json:"crc,omitempty"`
}

// OSState tracks the OS image on A/B partitions (slots.os.backend: partition).
type OSState struct {
	App       string `json:"app"`       // os_<arch>
	Committed string `json:"committed"` // slot known good
	Current   App    `json:"current"`   // the image in Committed
	Try       string `json:"try,omitempty"`
	Release   App    `json:"release,omitempty"` // the image written to Try
	BootID    string `json:"boot_id,omitempty"` // boot when Try was set: a different one means the device rebooted
	EnvSet    bool   `json:"env_set,omitempty"` // the bootloader was told to try
}

// Counters are running totals for the metrics (they survive restarts).
type Counters struct {
	Checks          int64 `json:"checks"`
	FailedChecks    int64 `json:"failed_checks"`
	Updates         int64 `json:"updates"`
	Rollbacks       int64 `json:"rollbacks"`
	DownloadedBytes int64 `json:"downloaded_bytes"`
	DeltaSavedBytes int64 `json:"delta_saved_bytes"` // file sizes minus patch bytes, for apps patched
}

// Trust is what the agent learnt from the firmware CDN about whom to trust: the key set it
// adopted from ota-keys.release (as published, re-verified when read) and the newest valid
// ota-timestamp.release.
type Trust struct {
	KeySet      json.RawMessage `json:"key_set,omitempty"`
	KeysETag    string          `json:"keys_etag,omitempty"`
	KeysChecked time.Time       `json:"keys_checked,omitempty"`
	Issued      time.Time       `json:"issued,omitempty"`  // of the newest valid timestamp
	Expires     time.Time       `json:"expires,omitempty"` // of the newest valid timestamp
	StampETag   string          `json:"stamp_etag,omitempty"`
	Watching    time.Time       `json:"watching,omitempty"` // when freeze detection began
	FreshAt     time.Time       `json:"fresh_at,omitempty"` // the last check that held an unexpired timestamp
	StampError  string          `json:"stamp_error,omitempty"`
}
