package packaging

import (
	"errors"
	"time"

	"github.com/ota-agent/ota-agent/packaging/ramp"
)

// Phase is what the statement's phased rollout says to the device with point p at now
// (package ramp: the statement signs the ramp and the halt, so no mirror can change them).
func (c Class) Phase(p int64, now time.Time) (ramp.Phase, error) {
	return ramp.Decide(c.Ramp, c.Halted, p, now)
}

// validRollout checks a statement's ramp fields: only in v2 statements, well-formed.
func (c Class) validRollout() error {
	switch {
	case c.Ramp == "" && c.Halted == 0:
		return nil
	case c.V != 2 || c.Halted < 0:
		return errors.New("a ramp or a halt needs a v2 statement (and a halt time after 1970)")
	case c.Ramp != "":
		_, err := ramp.Parse(c.Ramp)
		return err
	}
	return nil
}
