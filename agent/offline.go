package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/store"
)

// InstallFrom is `ota-agent install PATH`: a full payload (.tar.gz exactly as the server
// sends it, statements inline; `ota-release bundle` writes one) or a directory of binaries
// named <app>_<version> with their .release statements, verified like a download and
// installed through the same machine (from staging), slots, records and hooks. Apps the
// payload does not name are kept. Nothing is asked of the server.
func (a *Agent) InstallFrom(ctx context.Context, path string) (res *Result, err error) {
	unlock, err := a.Lock()
	if err != nil {
		return failed(err), err
	}
	defer unlock()
	db, err := a.openRecovered()
	if err != nil {
		return failed(err), err
	}
	defer db.Close()
	body, size, err := offlinePayload(path)
	if err != nil {
		return failed(err), err
	}
	c, err := a.current(db)
	if err != nil {
		body.Close()
		return failed(err), err
	}
	j, err := a.newJob(db, c)
	if err != nil {
		body.Close()
		return failed(err), err
	}
	j.mode, j.offline = modeFull, true
	j.resp = &http.Response{StatusCode: http.StatusOK, Body: body, ContentLength: size, Header: http.Header{"Content-Encoding": {"gzip"}}}
	a.log.Info("installing offline", "from", path)
	res, err = j.finish(ctx, Staging)
	if res == nil {
		res = failed(err)
	}
	rec := store.CheckRecord{Time: a.now(db), Result: res.Result, Bytes: res.Bytes}
	if err != nil {
		rec.Error = "offline install of " + path + ": " + err.Error()
	}
	db.RecordCheck(rec)
	return res, err
}

// offlinePayload opens a .tar.gz, or streams a directory as one.
func offlinePayload(path string) (io.ReadCloser, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: offline install: %v", ErrConfig, err)
	}
	if !fi.IsDir() {
		f, err := os.Open(path)
		return f, fi.Size(), err
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, 0, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".release") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, 0, fmt.Errorf("%w: offline install: %s holds no <app>_<version> binaries", ErrConfig, path)
	}
	sort.Strings(names)
	r, w := io.Pipe()
	go func() { w.CloseWithError(writeDirPayload(w, path, names)) }()
	return r, -1, nil
}

// writeDirPayload writes the directory's binaries as a full payload: each member, then
// package_details.json with the statements of the .release files beside them (none: unsigned).
func writeDirPayload(w io.Writer, dir string, names []string) error {
	pw := packaging.NewPayloadWriter(w, time.Now())
	var d packaging.Details
	for _, name := range names {
		app, version := splitMember(name)
		e := packaging.Entry{LatestVersion: version, StatusCode: 200, URL: "offline:" + name}
		if raw, err := os.ReadFile(filepath.Join(dir, name+".release")); err == nil {
			rf, err := packaging.ParseReleaseFile(strings.NewReader(string(raw)))
			if err != nil {
				return fmt.Errorf("%s.release: %w", name, err)
			}
			app, version = rf.App, rf.Version
			e = packaging.Entry{LatestVersion: version, StatusCode: 200, URL: "offline:" + name, MD5: rf.MD5, SHA256: rf.SHA256, Size: rf.Size, Serial: rf.Serial, Sig: rf.Sig, KeyID: rf.KeyID}
		}
		if app+"_"+version != name {
			return fmt.Errorf("%s: its statement is for %s_%s", name, app, version)
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		fi, _ := f.Stat()
		err = pw.Add(name, fi.Size(), f)
		f.Close()
		if err != nil {
			return err
		}
		d.Set(app, e)
	}
	return pw.Close(d.Marshal())
}

// splitMember splits <app>_<version> at the last "_" (app names hold "_": os_armv8_1.1.0).
func splitMember(name string) (app, version string) {
	i := strings.LastIndexByte(name, '_')
	if i <= 0 {
		return name, ""
	}
	return name[:i], name[i+1:]
}
