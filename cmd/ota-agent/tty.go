package main

import (
	"io"
	"os"
	"sync"
)

// tty is stderr on a terminal: one progress line at the bottom that log lines never
// garble (each log line clears it, is written, and the progress line is drawn again).
type tty struct {
	mu   sync.Mutex
	w    io.Writer
	line string
}

var ttys sync.Map // *os.File → *tty

// ttyOf returns the terminal behind w, or nil when w is not one.
func ttyOf(w io.Writer) *tty {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	t, _ := ttys.LoadOrStore(f, &tty{w: f})
	return t.(*tty)
}

// status replaces the progress line ("" removes it).
func (t *tty) status(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.line = s
	io.WriteString(t.w, "\r\033[K"+s)
}

// Write is a log line: above the progress line.
func (t *tty) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		io.WriteString(t.w, "\r\033[K")
	}
	n, err := t.w.Write(p)
	if t.line != "" {
		io.WriteString(t.w, t.line)
	}
	return n, err
}
