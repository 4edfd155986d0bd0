package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// InstallFrom is `ota-agent install PATH`: a full payload (.tar.gz exactly as the server
// sends it, statements inline; `ota-release bundle` writes one) or a directory of binaries
// named <app>_<version> with their .release statements, verified like a download and
// installed through the same machine (from staging), slots, records and hooks. Apps the
// payload does not name are kept. Nothing is asked of the server.
func (a *Agent) InstallFrom(ctx context.Context, path string) (*Result, error) {
	var res *Result
	err := a.withDB(ctx, func(db *store.DB) error {
		body, size, isDir, err := offlinePayload(path)
		if err != nil {
			return err
		}
		c, err := a.current(db)
		if err != nil {
			body.Close()
			return err
		}
		j, err := a.newJob(db, c, store.Journal{})
		if err != nil {
			body.Close()
			return err
		}
		j.mode, j.offline = protocol.ModeFull, true
		if isDir {
			j.offlineDir = path
		}
		j.resp = &http.Response{StatusCode: http.StatusOK, Body: body, ContentLength: size, Header: http.Header{"Content-Encoding": {"gzip"}}}
		a.log.Info("installing offline", "from", path)
		res, err = j.finish(ctx, Receive)
		rec := store.CheckRecord{Time: a.now(db), Result: ResultFailed, Bytes: j.bytes}
		if res != nil {
			rec.Result = res.Result
		}
		if err != nil {
			rec.Error = "offline install of " + path + ": " + err.Error()
		}
		db.RecordCheck(rec)
		return err
	})
	if res == nil && err != nil {
		res = failed(err)
	}
	return res, err
}

// offlinePayload opens a .tar.gz; a directory is read by receiveDir instead.
func offlinePayload(path string) (io.ReadCloser, int64, bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, false, fmt.Errorf("%w: offline install: %v", ErrConfig, err)
	}
	if fi.IsDir() {
		return io.NopCloser(strings.NewReader("")), 0, true, nil
	}
	f, err := os.Open(path)
	return f, fi.Size(), false, err
}

// receiveDir stages a directory's <app>_<version> binaries as a payload's members would be,
// with the statements of the .release files beside them (none: unsigned). A binary is a
// regular file with a .release beside it, or named <app>_<version> with a version that starts
// with a digit (v1.2 too); anything else there (notes, checksums, patches) is ignored and
// logged.
func (a *Agent) receiveDir(dir string, st *installer.Staging) (*packaging.Details, map[string]packaging.Digests, int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, 0, err
	}
	var d packaging.Details
	got := map[string]packaging.Digests{}
	var total int64
	for _, en := range entries {
		name := en.Name()
		_, serr := os.Stat(filepath.Join(dir, name+".release"))
		signed := serr == nil
		if !en.Type().IsRegular() || strings.HasSuffix(name, ".release") || !signed && !binaryName(name) {
			if !strings.HasSuffix(name, ".release") {
				a.log.Info("offline install: ignored, not a binary (<app>_<version>) or its .release", "file", filepath.Join(dir, name))
			}
			continue
		}
		if !signed && len(a.keys) > 0 {
			return nil, nil, total, fmt.Errorf("%w: %s: no .release beside it; an unsigned binary needs trust.allow_unsigned (without trust.keys)", ErrRejected, filepath.Join(dir, name))
		}
		app, version := splitMember(name)
		e := packaging.Entry{LatestVersion: version, StatusCode: 200, URL: "offline:" + name}
		if signed {
			f, err := os.Open(filepath.Join(dir, name+".release"))
			if err != nil {
				return nil, nil, total, err
			}
			rf, err := packaging.ParseReleaseFile(f)
			f.Close()
			if err != nil {
				return nil, nil, total, fmt.Errorf("%w: %s.release: %v", ErrRejected, name, err)
			}
			app, version = rf.App, rf.Version
			e = rf.Entry("offline:" + name)
		}
		if app+"_"+version != name || packaging.ValidFileName(name) != nil {
			return nil, nil, total, fmt.Errorf("%w: %s: not <app>_<version> of its statement", ErrRejected, name)
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, total, err
		}
		dg, err := st.WriteFile(incoming(name), f)
		f.Close()
		if err != nil {
			return nil, nil, total, err
		}
		got[name], total = dg, total+dg.Size
		d.Set(app, e)
	}
	if len(d.Apps) == 0 {
		return nil, nil, 0, fmt.Errorf("%w: offline install: %s holds no <app>_<version> binaries", ErrConfig, dir)
	}
	return &d, got, total, nil
}

// binaryName: <app>_<version>, the version starting with a digit (or v and a digit).
func binaryName(name string) bool {
	app, version := splitMember(name)
	version = strings.TrimPrefix(version, "v")
	return app != "" && version != "" && version[0] >= '0' && version[0] <= '9' && packaging.ValidFileName(name) == nil &&
		!strings.HasSuffix(name, packaging.ChunkSuffix) && !strings.HasSuffix(name, packaging.BlockPatchSuffix) && !strings.Contains(name, ".from-")
}

// splitMember splits <app>_<version> at the last "_" (app names hold "_": os_armv8_1.1.0).
func splitMember(name string) (app, version string) {
	i := strings.LastIndexByte(name, '_')
	if i <= 0 {
		return name, ""
	}
	return name[:i], name[i+1:]
}
