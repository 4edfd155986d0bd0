package agent

import (
	"context"

	"github.com/ota-agent/ota-agent/internal/result"
	"github.com/ota-agent/ota-agent/store"
)

// InstallFrom is `ota-agent install PATH` (update.Engine.InstallFrom) under the state
// directory's lock.
func (a *Agent) InstallFrom(ctx context.Context, path string) (*Result, error) {
	var res *Result
	err := a.withDB(ctx, func(db *store.DB) error {
		var err error
		res, err = a.Engine.InstallFrom(ctx, db, path)
		return err
	})
	if res == nil && err != nil {
		res = result.Failed(err)
	}
	return res, err
}
