package update

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/internal/protocol"
	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/store"
)

// InstallFrom is `ota-agent install PATH`: a full payload (.tar.gz exactly as the server
// sends it, statements inline; `ota-release bundle` writes one) or a directory of binaries
// named <app>_<version> with their .release statements, verified like a download and
// installed through the same machine (from staging), slots, records and hooks. Apps the
// payload does not name are kept. Nothing is asked of the server.
func (a *Engine) InstallFrom(ctx context.Context, db *store.DB, path string) (*result.Result, error) {
	var res *result.Result
	err := func() error {
		body, size, isDir, err := offlinePayload(path)
		if err != nil {
			return err
		}
		c, err := a.Current(db)
		if err != nil {
			body.Close()
			return err
		}
		j, err := a.newJob(db, c, store.Journal{})
		if err != nil {
			body.Close()
			return err
		}
		j.Mode, j.Offline = protocol.ModeFull, true
		if isDir {
			j.OfflineDir = path
		}
		j.resp = &http.Response{StatusCode: http.StatusOK, Body: body, ContentLength: size, Header: http.Header{"Content-Encoding": {"gzip"}}}
		a.Log.Info("installing offline", "from", path)
		res, err = j.finish(ctx, Receive)
		rec := store.CheckRecord{Time: a.now(db), Result: result.FailedResult, Bytes: j.Bytes}
		if res != nil {
			rec.Result = res.Result
		}
		if err != nil {
			rec.Error = "offline install of " + path + ": " + err.Error()
		}
		if rerr := db.RecordCheck(rec); rerr != nil {
			a.Log.Warn("could not record the offline install in the database", "err", rerr)
		}
		return err
	}()
	if res == nil && err != nil {
		res = result.Failed(err)
	}
	return res, err
}

// offlinePayload opens a .tar.gz; a directory is read by delivery.Fetcher.ReceiveDir instead.
func offlinePayload(path string) (io.ReadCloser, int64, bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, false, fmt.Errorf("%w: offline install: %v", fault.ErrConfig, err)
	}
	if fi.IsDir() {
		return io.NopCloser(strings.NewReader("")), 0, true, nil
	}
	f, err := os.Open(path)
	return f, fi.Size(), false, err
}
