package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/transport"
	"github.com/ota-agent/ota-agent/store"
)

// Reporter posts a device's reports to report.url.
type Reporter struct {
	URL       string
	TokenFile string // a bearer token ("" = none)
	HTTP      *http.Client
	Device    string // Device's answer
	Agent     string // ota-agent/<version>
	MaxEvents int    // report.max_events
	Log       *slog.Logger
	Now       func() time.Time
	Step      func(string) // crash tests: report-recorded, report-posted
}

// Posting: at most batchEvents events and maxBatches posts a flush; a failed post waits
// from backoffBase, doubling, up to backoffCap (half of it random) before the next try.
const (
	batchEvents = 100
	maxBatches  = 10
	backoffBase = time.Minute
	backoffCap  = 6 * time.Hour
)

// Flush posts what the outbox holds, oldest first, until it is empty, a post fails (the
// outbox keeps it; the next flush after the backoff tries again), or ctx ends. A batch the
// receiver refuses as malformed (400, 413, 422) is dropped and counted, so one bad event
// cannot stop every later one.
func (r *Reporter) Flush(ctx context.Context, db *store.DB) error {
	for range maxBatches {
		meta, items, err := db.Outbox(batchEvents)
		if err != nil || len(items) == 0 && meta.Dropped == 0 || r.Now().Before(meta.NextTry) {
			return err
		}
		b := Batch{V: 1, Device: r.Device, Agent: r.Agent, Sent: r.Now(), Dropped: meta.Dropped, Events: []json.RawMessage{}}
		var last uint64
		for _, q := range items {
			b.Events, last = append(b.Events, q.Body), q.Seq
		}
		status, err := r.post(ctx, b)
		switch {
		case err == nil:
			r.step("report-posted") // crash tests: the receiver has them, the outbox does not know
			err = db.Posted(last, meta.Dropped)
		case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusUnprocessableEntity:
			r.Log.Warn("device reports: the receiver refused a batch; dropped", "events", len(items), "err", err)
			err = db.Posted(last, -int64(len(items))) // counted as dropped in the next batch
		default:
			wait := min(backoffBase<<min(meta.Failures, 16), backoffCap)
			wait = wait/2 + rand.N(wait/2+1)
			if ferr := db.PostFailed(r.Now().Add(wait)); ferr != nil {
				return errors.Join(err, ferr)
			}
			return fmt.Errorf("%w (%d events kept; next try in %v)", err, len(items), wait.Round(time.Second))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// post sends one batch; status is the receiver's answer (0: none).
func (r *Reporter) post(ctx context.Context, b Batch) (int, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.TokenFile != "" {
		tok, err := os.ReadFile(r.TokenFile)
		if err != nil {
			return 0, fmt.Errorf("report.token_file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := r.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("posting device reports to %s: %w", transport.Redact(r.URL), err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, transport.MaxErrorBody))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("posting device reports to %s: %s", transport.Redact(r.URL), resp.Status)
	}
	return resp.StatusCode, nil
}
