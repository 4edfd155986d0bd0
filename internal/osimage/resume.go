package osimage

import (
	"fmt"

	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Resuming an image across cuts. Its checkpoint (store.Progress with a Slot) names the
// bytes flushed into the partition; the digests are taken from the medium when the image is
// whole (Sink.Finish), so a resume carries no hash state and trusts no byte after the
// checkpoint.

// Checkpoints are the members whose image has a checkpoint in a partition.
func Checkpoints(db *store.DB) []string {
	all, _ := db.Downloads()
	var out []string
	for m, p := range all {
		if p.Slot != "" {
			out = append(out, m)
		}
	}
	return out
}

// PayloadResume names the OS image streamed into its partition when the agent stopped, and
// its checkpoint, when a check in full mode would fetch it whole again: a full payload is one
// gzip stream, which cannot resume, so the check asks in metadata mode instead and the image
// resumes with a Range request to the firmware CDN. One a full payload was streaming
// (Progress.Payload) needs a bucket mapped in server.firmware. "" when there is none.
func PayloadResume(cfg *config.Config, db *store.DB) (member string, off int64) {
	if cfg.Slots.OS.Backend != "partition" {
		return "", 0
	}
	all, _ := db.Downloads()
	for m, p := range all {
		if p.Slot != "" && p.Offset > 0 && p.Offset <= p.Size && (!p.Payload || len(cfg.Server.Firmware) > 0) {
			return m, p.Offset
		}
	}
	return "", 0
}

// Adopt turns the checkpoint of an image a full payload was streaming (no statement and no
// ETag when it was written: Progress.Payload) into one the download of e from src resumes:
// e names its digests, and the firmware CDN's ETag of an S3 object is its MD5 (If-Range).
// nil when it cannot be (no MD5 to name the object by, another size): from zero.
func Adopt(prog *store.Progress, e packaging.Entry, src string) *store.Progress {
	if e.MD5 == "" || e.Size > 0 && prog.Size != e.Size {
		return nil
	}
	p := *prog
	p.Payload, p.SHA256, p.MD5, p.ETag, p.URL = false, e.SHA256, e.MD5, `"`+e.MD5+`"`, src
	return &p
}

// Resumed checks a resumed image's digests d against its release e. The caller writes one
// that differs again from zero rather than refusing the release: the bytes before the
// checkpoint are the device's (a partition changed since, a payload's member that was
// another build), not the server's answer.
func Resumed(d packaging.Digests, e packaging.Entry) error {
	if e.SHA256 != "" && d.SHA256 != e.SHA256 || e.MD5 != "" && d.MD5 != "" && d.MD5 != e.MD5 || e.Size > 0 && d.Size != e.Size {
		return fmt.Errorf("the resumed image hashes to %s, the release's is %s", d.SHA256, e.SHA256)
	}
	return nil
}
