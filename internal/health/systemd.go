package health

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/ota-agent/ota-agent/internal/dbus"
)

// systemd is the agent's line to the service manager (apps.<name>.units, health.units):
// systemd's D-Bus API over its private socket (root, no dbus-daemon needed), else the system
// bus, spoken by internal/dbus.
type systemd struct {
	log    *slog.Logger
	c      *dbus.Conn
	socket string
	paths  map[string]string // unit → object path
}

const (
	sdDest    = "org.freedesktop.systemd1"
	sdManager = sdDest + ".Manager"
	sdProps   = "org.freedesktop.DBus.Properties"
)

// Where systemd answers: its private socket (root, no dbus-daemon needed); the system bus
// only when that socket is missing or not ours to use (early in boot systemd may not be on
// the bus yet, and a call to it there waits for its activation).
var systemdSockets = []struct {
	path  string
	hello bool
}{{"/run/systemd/private", false}, {"/run/dbus/system_bus_socket", true}}

// callTimeout bounds each call: systemd answers in milliseconds.
const callTimeout = 30 * time.Second

// connectSystemd reaches systemd within 10 s or says why not.
func connectSystemd(ctx context.Context, log *slog.Logger) (*systemd, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var why []string
	for _, s := range systemdSockets {
		c, err := dbus.Dial(ctx, s.path, s.hello)
		if err == nil {
			return &systemd{log: log, c: c, socket: s.path, paths: map[string]string{}}, nil
		}
		why = append(why, fmt.Sprintf("%s: %v", s.path, err))
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			break
		}
		log.Info("systemd: no private socket; using the system bus", "error", err)
	}
	return nil, fmt.Errorf("cannot reach systemd over D-Bus (%s); is the agent running under systemd as root?", strings.Join(why, "; "))
}

func (s *systemd) Close() { s.c.Close() }

func (s *systemd) call(ctx context.Context, path, iface, method string, args ...string) (any, error) {
	v, err := s.try(ctx, path, iface, method, args...)
	if errors.Is(err, errNoAnswer) {
		// A connection systemd stopped serving: once more on a new one.
		s.log.Warn("systemd did not answer; reconnecting", "method", method, "socket", s.socket)
		if fresh, cerr := connectSystemd(ctx, s.log); cerr == nil {
			s.c.Close()
			s.c, s.socket = fresh.c, fresh.socket
			v, err = s.try(ctx, path, iface, method, args...)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("systemd: %s.%s answered nothing", iface, method)
	}
	return v[0], nil
}

var errNoAnswer = errors.New("systemd did not answer")

func (s *systemd) try(ctx context.Context, path, iface, method string, args ...string) ([]any, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	v, err := s.c.Call(cctx, sdDest, path, iface, method, args...)
	if err != nil && ctx.Err() == nil && cctx.Err() != nil {
		return nil, fmt.Errorf("%w: %s within %v on %s", errNoAnswer, method, callTimeout, s.socket)
	}
	return v, err
}

// path is the unit's object path (LoadUnit loads it when it is not).
func (s *systemd) path(ctx context.Context, u string) (string, error) {
	if p, ok := s.paths[u]; ok {
		return p, nil
	}
	v, err := s.call(ctx, "/org/freedesktop/systemd1", sdManager, "LoadUnit", u)
	if err != nil {
		return "", fmt.Errorf("%s: %v", u, err)
	}
	p, _ := v.(string)
	s.paths[u] = p
	return p, nil
}

func (s *systemd) prop(ctx context.Context, u, iface, name string) (any, error) {
	p, err := s.path(ctx, u)
	if err != nil {
		return nil, err
	}
	v, err := s.call(ctx, p, sdProps, "Get", sdDest+"."+iface, name)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v", u, name, err)
	}
	return v, nil
}

// restart restarts each unit and waits for its job to finish: an error names the unit and
// why the job could not be queued, or the unit's state when it failed.
func (s *systemd) restart(ctx context.Context, units []string) error {
	for _, u := range units {
		job, err := s.call(ctx, "/org/freedesktop/systemd1", sdManager, "RestartUnit", u, "replace")
		if err != nil {
			return fmt.Errorf("restart %s: %v", u, err)
		}
		path, ok := job.(string)
		if !ok {
			return fmt.Errorf("restart %s: systemd answered %T, not a job's object path", u, job)
		}
		if err := s.waitJob(ctx, path); err != nil {
			return fmt.Errorf("restart %s: %v", u, err)
		}
		if st, err := s.state(ctx, u); err != nil {
			return err
		} else if st.active == "failed" {
			return fmt.Errorf("restart %s: the unit failed%s", u, s.result(ctx, u))
		}
	}
	return nil
}

// jobGone are the errors systemd answers about a job object it has forgotten.
var jobGone = map[string]bool{"org.freedesktop.DBus.Error.UnknownObject": true, "org.freedesktop.systemd1.NoSuchJob": true}

// waitJob polls a job until systemd has forgotten it (it is done, whatever its result; the
// unit's state tells how it went). Any other error (access denied, a broken connection)
// is an error, not "done".
func (s *systemd) waitJob(ctx context.Context, job string) error {
	for {
		_, err := s.call(ctx, job, sdProps, "Get", sdDest+".Job", "State")
		var e *dbus.Error
		if errors.As(err, &e) && jobGone[e.Name] {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
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
		v, err := s.prop(ctx, u, "Unit", name)
		if err != nil {
			return st, err
		}
		*dst, _ = v.(string)
	}
	if v, err := s.prop(ctx, u, "Unit", "InvocationID"); err == nil {
		if b, ok := v.([]byte); ok {
			st.invocation = fmt.Sprintf("%x", b)
		}
	}
	if strings.HasSuffix(u, ".service") {
		if v, err := s.prop(ctx, u, "Service", "NRestarts"); err == nil {
			st.restarts, _ = v.(uint32)
		}
	}
	return st, nil
}

// result is " (Result=<why>)" of a service that stopped, for messages.
func (s *systemd) result(ctx context.Context, u string) string {
	if !strings.HasSuffix(u, ".service") {
		return ""
	}
	if v, err := s.prop(ctx, u, "Service", "Result"); err == nil {
		return fmt.Sprintf(" (Result=%v)", v)
	}
	return ""
}
