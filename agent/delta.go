package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/trust"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// Deltas (protocol.md 3.5): for a changed app whose installed file the device holds, the
// firmware CDN may have `<app>_<version>.from-<h16>.zst`, a zstd --patch-from patch from the
// file whose SHA-256 starts with h16. It is untrusted transport: the output is verified like
// a download, and any failure falls back to the whole file, saying why.

// How an app arrived (Result, status).
const (
	DeliveryPatch   = protocol.DeliveryPatch
	DeliveryFull    = protocol.DeliveryFull
	DeliveryPayload = protocol.DeliveryPayload
)

// patched tries the patch from the installed version of item's app into staging. used is
// false when there is none to try, none is published or it is no good (logged): then the
// whole file is fetched. A network failure is returned like a download's: the partial
// patch is kept and the next check resumes it.
func (j *job) patched(ctx context.Context, item PlanItem, e packaging.Entry) (d packaging.Digests, n int64, used bool, err error) {
	a := j.a
	have, ok := j.installed[item.App]
	if !ok || j.from == "" && !j.isOS(item.App) || !a.cfg.Delta.Enabled || have.SHA256 == "" || e.Size <= 0 {
		return d, 0, false, nil
	}
	blocks := a.blockPatch(item.App, have)
	suffix := patchSuffix(have.SHA256, blocks)
	src, err := a.patchURL(item.App, e, suffix)
	if err != nil {
		return d, 0, false, nil
	}
	root, err := a.slots.Root()
	if err != nil {
		return d, 0, false, err
	}
	member := item.Member() + suffix
	prog, _ := j.db.Progress(member)
	if prog != nil && prog.Applying && prog.SHA256 == e.SHA256 {
		// Killed while applying it last time (a whole-file patch holds the old file and its
		// window in memory): trying again could loop; the whole file is bounded.
		a.log.Warn("applying this patch was interrupted last time; fetching the whole file", "app", item.App, "version", item.Version)
		a.dropDownload(j.db, member)
		return d, 0, false, nil
	}
	if prog == nil || prog.SHA256 != e.SHA256 || !strongETag(prog.ETag) {
		root.Remove("downloads/" + member)
		prog = &Progress{SHA256: e.SHA256, MD5: e.MD5}
	}
	n, err = a.grabResuming(ctx, j.db, root, member, item.App+" "+item.Version+" (patch)", src, prog, e.Size-1, nil)
	var missing *missingError
	switch {
	case errors.As(err, &missing):
		a.log.Info("no patch published; fetching the whole file", "app", item.App, "version", item.Version, "from_sha256", have.SHA256[:16])
		a.dropDownload(j.db, member)
		return d, n, false, nil
	case errors.Is(err, errTooBig):
		a.log.Warn("patch refused; fetching the whole file", "app", item.App, "version", item.Version, "error", err)
		a.dropDownload(j.db, member)
		return d, n, false, nil
	case err != nil:
		return d, n, false, err // the network: kept for the next check to resume
	}
	prog.Applying = true // grab kept prog up to date
	if err := j.db.SetProgress(member, prog); err != nil {
		return d, n, false, err
	}
	a.step("patch-applying")
	d, err = j.applyPatch(root, item, member, have, e, blocks)
	if err != nil {
		a.log.Warn("patch refused; fetching the whole file", "app", item.App, "version", item.Version, "error", err)
		j.st.Remove(incoming(item.Member()))
		a.dropDownload(j.db, member)
		return packaging.Digests{}, n, false, nil
	}
	a.dropDownload(j.db, member)
	a.log.Info("patched", "app", item.App, "version", item.Version, "from_version", have.Version, "patch_bytes", n, "size", e.Size)
	return d, n, true, nil
}

// probePatch asks (HEAD) which delta the device would use for item, the way a check tries
// them (a patch, or for the OS image on a partition and large files a block patch; then a
// chunk index), and returns it and its size: what --dry-run reports ("" when none).
func (a *Agent) probePatch(ctx context.Context, item PlanItem, e packaging.Entry, installed map[string]installer.App) (string, int64) {
	have, ok := installed[item.App]
	if !ok || !a.cfg.Delta.Enabled || have.SHA256 == "" || e.Size <= 0 {
		return "", 0
	}
	blocks := a.blockPatch(item.App, have)
	kinds := []struct{ via, suffix string }{{DeliveryPatch, packaging.PatchSuffix(have.SHA256)}, {DeliveryChunks, packaging.ChunkSuffix}}
	if blocks {
		kinds[0] = struct{ via, suffix string }{"block patch", patchSuffix(have.SHA256, true)}
	}
	for _, k := range kinds {
		src, err := a.patchURL(item.App, e, k.suffix)
		if err != nil {
			return "", 0
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, src, nil)
		if err != nil {
			return "", 0
		}
		resp, err := a.http.Do(req)
		if err != nil {
			return "", 0
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && resp.ContentLength > 0 && resp.ContentLength < e.Size {
			return k.via, resp.ContentLength
		}
	}
	return "", 0
}

// applyPatch makes the new file in staging from the installed one (the dictionary, read
// once) and the downloaded patch, and checks it against the entry's size and hashes.
func (j *job) applyPatch(root *os.Root, item PlanItem, member string, have installer.App, e packaging.Entry, blocks bool) (packaging.Digests, error) {
	local, size, closeLocal, err := j.localFile(item.App, have)
	if err != nil {
		return packaging.Digests{}, err
	}
	defer closeLocal()
	if size != have.Size {
		return packaging.Digests{}, fmt.Errorf("the installed %s is %d bytes, the record says %d", item.App, size, have.Size)
	}
	var old []byte
	if !blocks { // the dictionary of a whole-file patch: read once
		old = make([]byte, size)
		if _, err := local.ReadAt(old, 0); err != nil && err != io.EOF {
			return packaging.Digests{}, err
		}
	}
	patch, err := root.Open("downloads/" + member)
	if err != nil {
		return packaging.Digests{}, err
	}
	defer patch.Close()
	pr, pw := io.Pipe()
	go func() {
		var err error
		if blocks {
			_, err = packaging.ApplyBlockPatch(pw, patch, local, size, e.Size)
		} else {
			_, err = packaging.ApplyPatch(pw, patch, old, e.Size)
		}
		pw.CloseWithError(err)
	}()
	d, err := j.st.WriteFileFor(incoming(item.Member()), pr, j.a.trust.HashMD5())
	pr.CloseWithError(err)
	if err != nil {
		return d, err
	}
	if bad := trust.Matches(e.Size, e.SHA256, e.MD5, d); bad != "" {
		return d, fmt.Errorf("%w: its output differs from the release: %s", packaging.ErrBadPatch, bad)
	}
	return d, nil
}

// patchURL is where the patch with suffix for the entry's binary is: beside the binary on
// the firmware CDN, or beside its download URL (a signed URL whose policy covers a prefix
// keeps its query).
func (a *Agent) patchURL(app string, e packaging.Entry, suffix string) (string, error) {
	if e.Download != "" {
		u, err := a.proto.FirmwareURL(app, e, "")
		if err != nil {
			return "", err
		}
		p, err := url.Parse(u)
		if err != nil {
			return "", err
		}
		p.Path += suffix
		p.RawPath = ""
		return p.String(), nil
	}
	return a.proto.FirmwareURL(app, e, suffix)
}

// blockPatch: a whole-file patch suits files the device may hold in memory; a block patch
// (bounded memory) larger ones and the OS image on a partition.
func (a *Agent) blockPatch(app string, have installer.App) bool {
	return a.cfg.Slots.OS.Backend == "partition" && app == a.osApp() || have.Size > int64(a.cfg.Delta.MaxSource)
}

// patchSuffix names the patch from the file with SHA-256 sha: .from-<h16>.zst, or
// .from-<h16>.blocks for a block patch.
func patchSuffix(sha string, blocks bool) string {
	if blocks {
		return strings.TrimSuffix(packaging.PatchSuffix(sha), ".zst") + packaging.BlockPatchSuffix
	}
	return packaging.PatchSuffix(sha)
}

// patchMember: a download name that belongs to member (its patches).
func patchMember(name, member string) bool {
	return name == member || strings.HasPrefix(name, member+".from-")
}

// Delivery is how an app arrived and what it cost.
type Delivery = store.Delivery

// delivered counts n bytes received for app; ok says path delivered it.
func (j *job) delivered(app, path string, n, size int64, ok bool) {
	if j.via == nil {
		j.via = map[string]Delivery{}
	}
	d := j.via[app]
	d.Downloaded += n
	d.Size = size
	if ok {
		d.Path = path
	}
	j.via[app] = d
}

// facts are the device facts the request said (computed again for an offline install).
func (j *job) facts() protocol.Facts {
	if j.c != nil {
		return j.c.facts
	}
	f, _ := j.a.deviceFacts()
	return f
}
