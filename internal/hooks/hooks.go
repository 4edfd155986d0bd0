// Package hooks runs the operator's shell hooks: bounded in time and in output, ended with
// their whole process group.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// A hook's output is kept only as a tail for the log (a hook printing without end must not
// grow the agent); a hook that outlives its timeout is ended with its whole process group:
// TERM, then KILL after hookGrace.
const (
	hookTail  = 4 << 10
	hookGrace = 5 * time.Second
)

// Run runs a configured command (hooks.<name>) through /bin/sh with env added to the
// agent's and a timeout (0: 2 minutes); "" is no hook. Its output is logged (a tail of it),
// and named in the error when it fails.
func Run(ctx context.Context, log *slog.Logger, timeout time.Duration, name, command string, env []string) error {
	if command == "" {
		return nil
	}
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &tailWriter{max: hookTail}
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = hookGrace // a background child holding the output pipe does not hold us
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("hooks.%s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		pg := -cmd.Process.Pid
		syscall.Kill(pg, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(hookGrace):
			syscall.Kill(pg, syscall.SIGKILL)
			<-done
		}
		syscall.Kill(pg, syscall.SIGKILL) // whatever of the group ignored TERM
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("hooks.%s timed out after %v (its process group was ended)%s", name, timeout, outputText(out.tail(300)))
		}
		return fmt.Errorf("hooks.%s: interrupted: %w", name, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("hooks.%s: %s%s", name, exitText(err), outputText(out.tail(300)))
	}
	log.Info("hook ran", "hook", name, "output", out.tail(300), "output_bytes", out.n)
	return nil
}

// exitText says how a hook ended: "exited with status 7", "killed by signal 9".
func exitText(err error) string {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err.Error()
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with status %d", ee.ExitCode())
}

// outputText is a hook's output for a message ("" when it printed nothing).
func outputText(tail string) string {
	if tail == "" {
		return ""
	}
	return ": " + tail
}

// tailWriter keeps the last max bytes written to it and counts them all.
type tailWriter struct {
	max int
	buf []byte
	n   int64
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if len(p) >= w.max {
		w.buf = append(w.buf[:0], p[len(p)-w.max:]...)
		return len(p), nil
	}
	if over := len(w.buf) + len(p) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// tail is the last n bytes of output, trimmed, marked when cut.
func (w *tailWriter) tail(n int) string {
	s, cut := strings.TrimSpace(string(w.buf)), w.n > int64(len(w.buf))
	if len(s) > n {
		s, cut = s[len(s)-n:], true
	}
	if cut {
		s = "…" + s
	}
	return s
}
