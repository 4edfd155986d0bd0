package hooks

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// A hook's failure says how it ended and what it printed last, without dangling separators;
// no command is no hook.
func TestRunSaysHowAHookEnded(t *testing.T) {
	ctx := context.Background()
	if err := Run(ctx, quiet, 0, "health", "", nil); err != nil {
		t.Fatalf("no hook: %v", err)
	}
	if err := Run(ctx, quiet, 0, "health", "test \"$X\" = 1", []string{"X=1"}); err != nil {
		t.Fatalf("env not passed: %v", err)
	}
	err := Run(ctx, quiet, 0, "health", "exit 7", nil)
	if err == nil || err.Error() != "hooks.health: exited with status 7" {
		t.Fatalf("exit 7: %v", err)
	}
	err = Run(ctx, quiet, 0, "pre_install", "echo disk full >&2; exit 3", nil)
	if err == nil || err.Error() != "hooks.pre_install: exited with status 3: disk full" {
		t.Fatalf("exit 3 with output: %v", err)
	}
	err = Run(ctx, quiet, 0, "health", "kill -9 $$", nil)
	if err == nil || !strings.Contains(err.Error(), "killed by signal killed") {
		t.Fatalf("killed: %v", err)
	}
}

// A hook that outlives its timeout is ended with its process group (a child in the
// background included); a cancelled context says so.
func TestRunEndsWhatOutlivesItsTimeout(t *testing.T) {
	start := time.Now()
	err := Run(context.Background(), quiet, 200*time.Millisecond, "health", "sleep 30 & sleep 30", nil)
	if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Fatalf("timeout: %v", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatal("the process group was not ended")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, quiet, 0, "post_commit", "sleep 30", nil); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("cancelled: %v", err)
	}
}

// Only the tail of a hook's output is kept, marked when cut.
func TestTailWriter(t *testing.T) {
	w := &tailWriter{max: 8}
	io.WriteString(w, "0123456789")
	io.WriteString(w, "ab")
	if got := w.tail(100); got != "…456789ab" || w.n != 12 {
		t.Fatalf("tail %q, n %d", got, w.n)
	}
}
