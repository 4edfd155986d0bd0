package delivery

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ota-agent/ota-agent/installer"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/packaging"
)

// ReceiveDir stages a directory's <app>_<version> binaries as a payload's members would be,
// with the statements of the .release files beside them (none: unsigned). A binary is a
// regular file with a .release beside it, or named <app>_<version> with a version that starts
// with a digit (v1.2 too); anything else there (notes, checksums, patches) is ignored and
// logged.
func (a *Fetcher) ReceiveDir(dir string, st *installer.Staging) (*packaging.Details, map[string]packaging.Digests, int64, error) {
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
		if !signed && a.keyed {
			return nil, nil, total, fmt.Errorf("%w: %s: no .release beside it; an unsigned binary needs trust.allow_unsigned (without trust.keys)", fault.ErrRejected, filepath.Join(dir, name))
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
				return nil, nil, total, fmt.Errorf("%w: %s.release: %v", fault.ErrRejected, name, err)
			}
			app, version = rf.App, rf.Version
			e = rf.Entry("offline:" + name)
		}
		if app+"_"+version != name || packaging.ValidFileName(name) != nil {
			return nil, nil, total, fmt.Errorf("%w: %s: not <app>_<version> of its statement", fault.ErrRejected, name)
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, total, err
		}
		var dg packaging.Digests
		if a.isOS(app) {
			fi, serr := f.Stat()
			if err = serr; err == nil {
				dg, err = a.putOS(name, Progress{SHA256: e.SHA256, MD5: e.MD5, Size: fi.Size()}, f, 0)
			}
		} else {
			dg, err = st.WriteFile(incoming(name), f)
		}
		f.Close()
		if err != nil {
			return nil, nil, total, err
		}
		got[name], total = dg, total+dg.Size
		d.Set(app, e)
	}
	if len(d.Apps) == 0 {
		return nil, nil, 0, fmt.Errorf("%w: offline install: %s holds no <app>_<version> binaries", fault.ErrConfig, dir)
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
