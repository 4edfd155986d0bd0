package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// script is a runner whose checks return what the test says, and records when they ran.
type script struct {
	mu       sync.Mutex
	at       []time.Duration // when each check started, from the start
	start    time.Time
	outcomes []Outcome
	block    chan struct{} // a check waits on it when set
}

func (s *script) runner() *Runner {
	return &Runner{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: time.Hour, Now: time.Now,
		Check: func(ctx context.Context, status func(string)) Outcome {
			s.mu.Lock()
			n := len(s.at)
			s.at = append(s.at, time.Since(s.start))
			block := s.block
			s.mu.Unlock()
			if block != nil {
				<-block
			}
			if n < len(s.outcomes) {
				return s.outcomes[n]
			}
			return Outcome{}
		}}
}

func (s *script) times() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.at...)
}

// The schedule in fake time: a check at start, the next after poll.interval, a failure
// backed off (not a poll.interval), a staged generation's window woken for, a phased
// rollout's turn checked at (not at the next poll), and systemd told each step.
func TestLoopSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{start: time.Now(), outcomes: []Outcome{{}, {Err: errors.New("network down")}, {Wake: time.Now().Add(90 * time.Minute)},
			{Turn: time.Now().Add(110 * time.Minute)}}}
		var mu sync.Mutex
		var notes []string
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, Options{Load: func() (*Runner, error) { return s.runner(), nil }, BackoffBase: time.Minute,
				Notify: func(n string) { mu.Lock(); notes = append(notes, n); mu.Unlock() }})
		}()
		time.Sleep(4 * time.Hour)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		at := s.times()
		if len(at) < 4 || at[0] != 0 || at[1] != time.Hour || at[2]-at[1] > time.Minute || at[2]-at[1] < 30*time.Second {
			t.Fatalf("checks at %v", at)
		}
		if at[3] != 90*time.Minute {
			t.Fatalf("the staged window was not woken for: checks at %v", at)
		}
		if len(at) < 5 || at[4] != 110*time.Minute {
			t.Fatalf("the rollout's turn was not checked at: checks at %v", at)
		}
		all := strings.Join(notes, "\n")
		for _, want := range []string{"READY=1", "STATUS=idle, next check", "STATUS=failed: network down, retry in", "STATUS=staged, installs at", "STATUS=deferred by a phased rollout, next check", "STOPPING=1"} {
			if !strings.Contains(all, want) {
				t.Errorf("systemd was not told %q:\n%s", want, all)
			}
		}
	})
}

// A check asked for while one runs is not dropped: another follows the running one at once.
func TestCheckNowDuringACheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{start: time.Now(), block: make(chan struct{})}
		now := make(chan struct{})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, Options{Load: func() (*Runner, error) { return s.runner(), nil }, CheckNow: now, Notify: func(string) {}})
		}()
		synctest.Wait() // the first check runs, blocked
		now <- struct{}{}
		time.Sleep(time.Minute)
		s.mu.Lock()
		block := s.block
		s.block = nil
		s.mu.Unlock()
		close(block)
		synctest.Wait()
		if at := s.times(); len(at) != 2 || at[1] != time.Minute {
			t.Fatalf("checks at %v, want the second right after the first", at)
		}
		cancel()
		<-done
	})
}
