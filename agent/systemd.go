package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// systemd is the agent's line to the service manager (apps.<name>.units, health.units):
// go-systemd's D-Bus client, over systemd's private socket (root, no dbus-daemon needed) or
// else the system bus.
type systemd struct {
	conn  *sdbus.Conn
	close context.CancelFunc
}

// connectSystemd reaches systemd within 10 s or says why not. The connection lives as long
// as ctx (godbus closes it when its context ends), so the timeout only covers connecting.
func connectSystemd(ctx context.Context) (*systemd, error) {
	ctx, cancel := context.WithCancel(ctx)
	late := time.AfterFunc(10*time.Second, cancel)
	c, err := sdbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		var err2 error
		if c, err2 = sdbus.NewSystemConnectionContext(ctx); err2 != nil {
			cancel()
			return nil, fmt.Errorf("cannot reach systemd over D-Bus (/run/systemd/private: %v; system bus: %v); is the agent running under systemd as root?", err, err2)
		}
	}
	if !late.Stop() {
		c.Close()
		cancel()
		return nil, errors.New("cannot reach systemd over D-Bus: no answer within 10 s")
	}
	return &systemd{c, cancel}, nil
}

func (s *systemd) Close() {
	s.conn.Close()
	s.close()
}

// restart restarts each unit and waits for its job: an error names the unit and the job's
// result (failed, timeout, dependency, ...) or why it could not be queued.
func (s *systemd) restart(ctx context.Context, units []string) error {
	for _, u := range units {
		done := make(chan string, 1)
		if _, err := s.conn.RestartUnitContext(ctx, u, "replace", done); err != nil {
			return fmt.Errorf("restart %s: %v", u, err)
		}
		select {
		case r := <-done:
			if r != "done" {
				return fmt.Errorf("restart %s: the job ended %q%s", u, r, s.result(ctx, u))
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// unitState is what the trial watches of a unit.
type unitState struct {
	load, active, sub string
	invocation        string // changes at every start
	restarts          uint32 // NRestarts: automatic restarts (services)
}

func (s *systemd) state(ctx context.Context, u string) (unitState, error) {
	var st unitState
	for name, dst := range map[string]*string{"LoadState": &st.load, "ActiveState": &st.active, "SubState": &st.sub} {
		p, err := s.conn.GetUnitPropertyContext(ctx, u, name)
		if err != nil {
			return st, fmt.Errorf("%s: %v", u, err)
		}
		*dst, _ = p.Value.Value().(string)
	}
	if p, err := s.conn.GetUnitPropertyContext(ctx, u, "InvocationID"); err == nil {
		if b, ok := p.Value.Value().([]byte); ok {
			st.invocation = fmt.Sprintf("%x", b)
		}
	}
	if strings.HasSuffix(u, ".service") {
		if p, err := s.conn.GetServicePropertyContext(ctx, u, "NRestarts"); err == nil {
			st.restarts, _ = p.Value.Value().(uint32)
		}
	}
	return st, nil
}

// result is ", Result=<why>" of a service that stopped, for messages.
func (s *systemd) result(ctx context.Context, u string) string {
	if !strings.HasSuffix(u, ".service") {
		return ""
	}
	p, err := s.conn.GetServicePropertyContext(ctx, u, "Result")
	if err != nil {
		return ""
	}
	return fmt.Sprintf(" (Result=%v)", p.Value.Value())
}
