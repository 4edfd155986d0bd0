package publish

import (
	"context"
	"errors"
	"fmt"
)

// Result is what an execution did.
type Result struct {
	Plan     *Plan `json:"plan"`
	Done     int   `json:"done"`     // steps completed
	Uploaded int64 `json:"uploaded"` // bytes
}

// errStopped: the test build's fault hook ended a run after a step.
var errStopped = errors.New("stopped by the test's fault hook")

// Progress hears of each step when it is done.
type Progress func(done int, s Step)

// Apply runs the plan's steps in their order (objects, each read back; the trust
// documents; the rows; deletions of rows, then objects), stopping at the first error: what
// ran is complete, and a run again converges from there.
func (d *Deployment) Apply(ctx context.Context, p *Plan, progress Progress) (*Result, error) {
	return d.apply(ctx, p, 0, progress)
}

// apply is Apply; stopAfter > 0 (the tests' fault hook, unreachable from the commands) ends
// the run after that many steps.
func (d *Deployment) apply(ctx context.Context, p *Plan, stopAfter int, progress Progress) (*Result, error) {
	res := &Result{Plan: p}
	for i, s := range p.Steps {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("publish interrupted before step %d: %w", i+1, err)
		}
		var err error
		switch {
		case s.Kind == "row" && s.Action == Delete:
			err = d.DeleteItem(ctx, s.item)
		case s.Kind == "row":
			err = d.PutItem(ctx, s.item)
		case s.Action == Delete:
			err = d.Delete(ctx, s.Name)
		default:
			err = d.Put(ctx, s.Name, s.file.Path, s.file.Size, s.file.MD5)
			if err == nil {
				res.Uploaded += s.Size
			}
		}
		if err != nil {
			return res, fmt.Errorf("step %d (%s %s %s): %w; the steps before it are done, nothing after it: run publish again to converge", i+1, s.Action, s.Kind, s.Name, err)
		}
		res.Done++
		if progress != nil {
			progress(res.Done, s)
		}
		if stopAfter > 0 && res.Done == stopAfter {
			return res, errStopped
		}
	}
	return res, nil
}
