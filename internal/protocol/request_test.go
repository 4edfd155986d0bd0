package protocol

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ota-agent/ota-agent/internal/config"
	"github.com/ota-agent/ota-agent/internal/fault"
	"github.com/ota-agent/ota-agent/store"
)

func client(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg := &config.Config{}
	cfg.Server.URL, cfg.Server.Payload = srv.URL+"/package", "auto"
	return &Client{Cfg: cfg, HTTP: srv.Client(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// Each answer the endpoint can give is classed for the exit code, with what to do.
func TestAskClassesAnswers(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		status int
		header map[string]string
		body   string
		want   error
		msg    string
		after  time.Duration
	}{
		{"304", 304, nil, "", nil, "", 0},
		{"503 with Retry-After", 503, map[string]string{"Retry-After": "120"}, "", fault.ErrUnavailable, "503", 120 * time.Second},
		{"captive portal", 200, map[string]string{"Content-Type": "text/html"}, "<html>log in</html>", fault.ErrUnavailable, "answered text/html", 0},
		{"nothing released", 404, nil, `{"error": "No deployment package found"}`, nil, "check device.cpu_arch", 0},
		{"facts refused", 400, nil, `{"error": "Missing cpuArch query param"}`, nil, "refused the device facts", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var inm string
			cl := client(t, func(w http.ResponseWriter, r *http.Request) {
				inm = r.Header.Get("If-None-Match")
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			})
			ans, err := cl.Ask(ctx, "cpuarch=armv8", "aa,bb")
			if inm != "aa,bb" {
				t.Errorf("If-None-Match sent as %q", inm)
			}
			if c.msg == "" {
				if err != nil || ans.Status != c.status {
					t.Fatalf("%+v %v", ans, err)
				}
				ans.Resp.Body.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.msg) || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v with %q", err, c.want, c.msg)
			}
			var re *RetryError
			if c.after > 0 && (!errors.As(err, &re) || re.After != c.after) {
				t.Fatalf("Retry-After not carried: %v", err)
			}
		})
	}
}

// In auto mode a 405 to a full payload request switches to metadata for that server, for
// good; a dry run does not record it.
func TestFetchAnswerLearnsMetadataMode(t *testing.T) {
	cl := client(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.RawQuery, "payloadtype=metadataonly") {
			w.WriteHeader(405)
			io.WriteString(w, `{"error": "'Full Payload' not available in this environment"}`)
			return
		}
		w.WriteHeader(304)
	})
	db, err := store.OpenTemp()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f := Facts{"cpuarch": "armv8", "os": "prod"}
	ans, mode, err := cl.FetchAnswer(context.Background(), db, f, "", ModeFull, true)
	if err != nil || mode != ModeMetadata || ans.Status != 304 {
		t.Fatalf("dry run: %v %s %v", ans, mode, err)
	}
	if cl.PayloadMode(db) != ModeFull {
		t.Fatal("a dry run recorded the mode")
	}
	if _, _, err := cl.FetchAnswer(context.Background(), db, f, "", ModeFull, false); err != nil {
		t.Fatal(err)
	}
	if cl.PayloadMode(db) != ModeMetadata {
		t.Fatal("the metadata mode was not recorded")
	}
}
