package delivery

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
)

// Deltas (protocol.md 3.5): for a changed app whose installed file the device holds, the
// firmware CDN may have `<app>_<version>.from-<h16>.zst`, a zstd --patch-from patch from the
// file whose SHA-256 starts with h16. It is untrusted transport: the output is verified like
// a download, and any failure falls back to the whole file, saying why.

// patched is the patch strategy: the patch (or, for the OS image on a partition and large
// files, the block patch) from the installed copy, applied into staging. A network failure
// is returned like a download's: the partial patch is kept and the next check resumes it.
func (a *Fetcher) patched(ctx context.Context, item PlanItem, e packaging.Entry, have installer.App, st *installer.Staging) (packaging.Digests, int64, error) {
	var none packaging.Digests
	blocks := a.blockPatch(item.App, have)
	suffix := patchSuffix(have.SHA256, blocks)
	src, err := a.patchURL(item.App, e, suffix)
	if err != nil {
		return none, 0, refused("no place for a patch", err)
	}
	root, err := a.slots.Root()
	if err != nil {
		return none, 0, err
	}
	member := item.Member() + suffix
	prog, _ := a.db.Progress(member)
	if prog != nil && prog.Applying && prog.SHA256 == e.SHA256 && !blocks {
		// Killed while applying it last time (a whole-file patch holds the old file and its
		// window in memory): trying again could loop. A block patch's memory is bounded: it
		// is applied again.
		a.dropDownload(member)
		return none, 0, refused("applying this patch was interrupted last time", nil)
	}
	if prog == nil || prog.SHA256 != e.SHA256 || !strongETag(prog.ETag) {
		root.Remove("downloads/" + member)
		prog = &Progress{SHA256: e.SHA256, MD5: e.MD5}
	}
	n, err := a.grabResuming(ctx, root, member, item.App+" "+item.Version+" (patch)", src, prog, e.Size-1, nil)
	var missing *missingError
	switch {
	case errors.As(err, &missing):
		a.dropDownload(member)
		return none, n, skip("no patch published from " + have.SHA256[:16])
	case errors.Is(err, errTooBig):
		a.dropDownload(member)
		return none, n, refused("patch refused", err)
	case err != nil:
		return none, n, err // the network: kept for the next check to resume
	}
	prog.Applying = true // grab kept prog up to date
	if err := a.db.SetProgress(member, prog); err != nil {
		return none, n, err
	}
	a.step("patch-applying")
	d, err := a.applyPatch(root, item, member, have, e, blocks, st)
	a.dropDownload(member)
	if err != nil {
		st.Remove(incoming(item.Member()))
		return none, n, refused("patch refused", err)
	}
	a.log.Info("patched", "app", item.App, "version", item.Version, "from_version", have.Version, "patch_bytes", n, "size", e.Size)
	return d, n, nil
}

// Probe asks (HEAD) which delta the device would use for item, the way Fetch tries them
// (a patch, or for the OS image on a partition and large files a block patch; then a chunk
// index), and returns it and its size: what --dry-run reports ("" when none).
func (a *Fetcher) Probe(ctx context.Context, item PlanItem, e packaging.Entry) (string, int64) {
	have, ok := a.deltaSource(item.App, e)
	if !ok {
		return "", 0
	}
	blocks := a.blockPatch(item.App, have)
	kinds := []struct{ via, suffix string }{{protocol.DeliveryPatch, packaging.PatchSuffix(have.SHA256)}, {protocol.DeliveryChunks, packaging.ChunkSuffix}}
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
func (a *Fetcher) applyPatch(root *os.Root, item PlanItem, member string, have installer.App, e packaging.Entry, blocks bool, st *installer.Staging) (packaging.Digests, error) {
	local, size, closeLocal, err := a.localFile(item.App, have)
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
	d, err := a.put(st, item.Member(), e, pr)
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
func (a *Fetcher) patchURL(app string, e packaging.Entry, suffix string) (string, error) {
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
func (a *Fetcher) blockPatch(app string, have installer.App) bool {
	return a.isOS(app) || have.Size > int64(a.cfg.Delta.MaxSource)
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
